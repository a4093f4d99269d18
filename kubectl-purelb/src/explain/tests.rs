//! Tests of `explain` on the seed's examples and on the failures it must name.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::style::bold;
use crate::testing::*;
use purelb_core::allocate::Reason;

/// The seed's world: groups default, localaddr and virtualsub; three live nodes on 192.0.2.0/24 and
/// 172.30.250.0/24, one dead.
fn world() -> Snapshot {
    let mut s = snapshot();
    s.groups.push(group(
        "purelb-system",
        "default",
        &[("172.30.250.0/24", "172.30.250.53-172.30.250.99")],
        &[],
    ));
    s.groups.push(group("purelb-system", "localaddr", &[("192.0.2.0/24", "192.0.2.200-192.0.2.220")], &[]));
    s.groups.push(yaml(
        "apiVersion: purelb.io/v1\nkind: ServiceGroup\nmetadata: {name: virtualsub, namespace: default}\nspec:\n  local:\n    v4pools:\n    - subnet: '172.31.1.0/24'\n      pool: '172.31.1.0/24'\n      aggregation: '/32'\n",
    ));
    for n in ["node1", "node2", "node3"] {
        s.leases.push(lease(n, "eth1", "192.0.2.0/24,172.30.250.0/24", 1, 10));
        s.nodes.push(node(n, &[]));
    }
    s.leases.push(lease("node4", "eth1", "192.0.2.0/24", 100, 10));
    s
}

fn explained(s: &Snapshot, ns: &str, name: &str) -> Explanation {
    let svc = find_target(s, Some(&ServiceKey::new(ns, name))).unwrap();
    explain(s, svc)
}

#[test]
fn echoserver_default_group_lowest_free_local_and_elected() {
    let mut s = world();
    let mut svc = allocated("test", "echoserver-service", "default", &["172.30.250.53"]);
    svc.metadata.annotations.as_mut().unwrap().remove("purelb.io/service-group");
    let winner =
        purelb_core::announce::elect("172.30.250.53".parse().unwrap(), &node_facts_of(&s)).winner.unwrap();
    svc.metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert("purelb.io/announcing-IPv4".into(), format!("{winner}, eth1"));
    set_condition(
        &mut svc,
        "purelb.io/Allocated",
        "True",
        "Allocated",
        "172.30.250.53 from pool default (172.30.250.53-172.30.250.99; lowest free address)",
    );
    s.services.push(svc.clone());
    // What the agents would write (core's report), written as they would.
    let expected = explained(&s, "test", "echoserver-service").agents_should_report.announced.unwrap();
    assert_eq!((expected.status.as_str(), expected.reason.as_str()), ("True", "Announced"));
    assert_eq!(expected.message, format!("172.30.250.53 on {winner}/eth1"));
    set_condition(&mut svc, "purelb.io/Announced", &expected.status, &expected.reason, &expected.message);
    s.services.pop();
    s.services.push(svc);
    let e = explained(&s, "test", "echoserver-service");
    assert!(e.ours);
    assert_eq!((e.group.name.as_str(), e.group.source.as_str()), ("default", "default"));
    assert!(e.group.why.contains("no purelb.io/service-group annotation"));
    assert_eq!(e.replay.reason, Reason::Allocated);
    let a = &e.addresses[0];
    assert_eq!((a.address.as_str(), a.how.as_str()), ("172.30.250.53", "lowestFree"));
    assert_eq!(a.pool.as_deref(), Some("172.30.250.53-172.30.250.99"));
    assert!(a.local);
    assert_eq!(a.winner.as_deref(), Some(winner.as_str()));
    assert_eq!(a.announced_by, [format!("{winner} on eth1 as 172.30.250.53/24")]);
    let cands = a.election.as_ref().unwrap();
    assert_eq!(cands.iter().filter(|c| c.eligible).count(), 3);
    let dead = cands.iter().find(|c| c.node == "node4").unwrap();
    assert!(!dead.eligible && dead.why.contains("Lease is not current"));
    assert!(e.disagreements.is_empty(), "{:?}", e.disagreements);
    let text = render(&e);
    assert!(text.contains(&format!("winner: {}", bold(&winner))), "{text}");
}

fn node_facts_of(s: &Snapshot) -> Vec<purelb_core::announce::NodeFacts> {
    crate::facts::node_facts(&s.nodes, &s.leases, &s.declared_nodes, s.now).0
}

#[test]
fn servicetest_names_its_annotated_group() {
    let mut s = world();
    s.services.push(allocated("servicetest", "servicetest", "localaddr", &["192.0.2.200"]));
    let e = explained(&s, "servicetest", "servicetest");
    assert_eq!((e.group.name.as_str(), e.group.source.as_str()), ("localaddr", "annotation"));
    assert!(e.group.why.contains("annotation purelb.io/service-group: localaddr"));
    assert_eq!(e.addresses[0].how, "lowestFree");
    assert!(e.addresses[0].local);
    assert!(
        e.disagreements.iter().any(|d| d.contains("purelb.io/announcing-IPv4 should be")
            && d.contains("but no agent has written it")),
        "a local address no agent reported is named: {:?}",
        e.disagreements
    );
}

#[test]
fn specificaddress_is_requested_and_routed_from_every_live_node() {
    let mut s = world();
    let mut svc = allocated("servicetest", "specificaddress", "virtualsub", &["172.31.1.225"]);
    svc.spec.as_mut().unwrap().load_balancer_ip = Some("172.31.1.225".into());
    s.services.push(svc);
    let e = explained(&s, "servicetest", "specificaddress");
    let a = &e.addresses[0];
    assert_eq!((a.how.as_str(), a.why.as_str()), ("requested", "requested by spec.loadBalancerIP"));
    assert!(!a.local);
    assert_eq!(
        a.announced_by,
        [
            "node1 on kube-lb0 as 172.31.1.225/32",
            "node2 on kube-lb0 as 172.31.1.225/32",
            "node3 on kube-lb0 as 172.31.1.225/32"
        ]
    );
    let dead = a.per_node.iter().find(|p| p.node == "node4").unwrap();
    assert_eq!(dead.placement, "absent");
    assert!(dead.reasons.iter().any(|r| r.contains("node4 is not live")), "{:?}", dead.reasons);
}

#[test]
fn endpoints_with_local_policy_is_announced_only_where_endpoints_are() {
    let mut s = world();
    let svc = allocated("servicetest", "endpoints", "virtualsub", &["172.31.1.0"]);
    let mut svc = svc;
    svc.spec.as_mut().unwrap().external_traffic_policy = Some("Local".into());
    s.services.push(svc);
    s.slices.push(slice("servicetest", "endpoints", &["node2"]));
    let e = explained(&s, "servicetest", "endpoints");
    assert_eq!(e.endpoint_nodes.as_deref(), Some(&["node2".to_string()][..]));
    let a = &e.addresses[0];
    assert_eq!(a.how, "lowestFree");
    assert_eq!(a.announced_by, ["node2 on kube-lb0 as 172.31.1.0/32"]);
    let n1 = a.per_node.iter().find(|p| p.node == "node1").unwrap();
    assert!(n1.reasons.iter().any(|r| r.contains("has no ready endpoint")));
}

#[test]
fn a_pending_service_names_the_reason_and_the_fix() {
    let mut s = world();
    let mut svc = service("ns", "lost", &[("purelb.io/service-group", "nope")], "");
    set_condition(
        &mut svc,
        "purelb.io/Allocated",
        "False",
        "NoServiceGroup",
        "no ServiceGroup is named \"nope\"; create it",
    );
    s.services.push(svc);
    let e = explained(&s, "ns", "lost");
    let p = e.pending.as_ref().unwrap();
    assert_eq!(p.reason, "NoServiceGroup");
    assert!(p.fix.contains("sg create"));
    assert_eq!(e.replay.reason, Reason::NoServiceGroup);
    assert!(e.disagreements.is_empty(), "{:?}", e.disagreements);
    assert_eq!(e.group.state, "missing");
    let text = render(&e);
    assert!(text.contains("NoServiceGroup") && text.contains("to fix:"), "{text}");
}

#[test]
fn a_pending_service_without_condition_says_what_core_would_do() {
    let mut s = world();
    s.services.push(service("ns", "new", &[("purelb.io/service-group", "localaddr")], ""));
    let e = explained(&s, "ns", "new");
    let p = e.pending.as_ref().unwrap();
    assert_eq!(p.reason, "NotSeen");
    assert!(p.message.contains("would decide Allocated"), "{}", p.message);
    assert_eq!(e.replay.addresses, ["192.0.2.200"]);
}

#[test]
fn sharing_names_the_other_holders_and_their_ports() {
    let mut s = world();
    let mut a = allocated("ns", "a", "localaddr", &["192.0.2.200"]);
    a.metadata.annotations.as_mut().unwrap().insert("purelb.io/allow-shared-ip".into(), "k".into());
    let mut b = allocated("ns", "b", "localaddr", &["192.0.2.200"]);
    b.metadata.annotations.as_mut().unwrap().insert("purelb.io/allow-shared-ip".into(), "k".into());
    b.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].port = 443;
    s.services.extend([a, b]);
    let e = explained(&s, "ns", "b");
    let addr = &e.addresses[0];
    assert_eq!(addr.how, "shared");
    assert_eq!(addr.sharing_key.as_deref(), Some("k"));
    assert_eq!(addr.shared_with[0].service, "ns/a");
    assert_eq!(addr.shared_with[0].ports, ["80/TCP"]);
}

#[test]
fn a_stale_announcing_annotation_is_a_disagreement() {
    let mut s = world();
    let mut svc = allocated("ns", "x", "localaddr", &["192.0.2.200"]);
    svc.metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert("purelb.io/announcing-IPv4".into(), "node4, eth1".into());
    s.services.push(svc);
    let e = explained(&s, "ns", "x");
    assert!(
        e.disagreements
            .iter()
            .any(|d| d.contains("the agents report purelb.io/announcing-IPv4: node4, eth1 but the plan from the Leases read now gives")),
        "{:?}",
        e.disagreements
    );
}

#[test]
fn a_recorded_address_core_would_not_give_is_a_disagreement() {
    let mut s = world();
    let mut svc = allocated("ns", "x", "localaddr", &["192.0.2.200"]);
    set_condition(&mut svc, "purelb.io/Allocated", "True", "Allocated", "ok");
    svc.metadata.annotations.as_mut().unwrap().insert("purelb.io/allocated-from".into(), "default".into());
    s.services.push(svc);
    let e = explained(&s, "ns", "x");
    assert!(
        e.disagreements
            .iter()
            .any(|d| d.contains("allocated-from says default but the addresses belong to group localaddr")),
        "{:?}",
        e.disagreements
    );
}

#[test]
fn an_address_claimed_twice_is_an_address_conflict() {
    let mut s = world();
    let mut old = allocated("ns", "old", "localaddr", &["192.0.2.200"]);
    old.metadata.creation_timestamp = Some(yaml("'2020-01-01T00:00:00Z'"));
    s.services.extend([old, allocated("ns", "new", "localaddr", &["192.0.2.200"])]);
    let e = explained(&s, "ns", "new");
    assert_eq!(e.replay.reason, Reason::AddressConflict);
    assert!(e.replay.message.contains("is also held by ns/old"), "{}", e.replay.message);
}

#[test]
fn an_unreadable_annotation_keeps_the_address_in_the_allocators_words() {
    let mut s = world();
    let mut svc = allocated("ns", "x", "localaddr", &["192.0.2.200"]);
    svc.metadata.annotations.as_mut().unwrap().insert("purelb.io/addresses".into(), "not-an-address".into());
    s.services.push(svc.clone());
    let e = explained(&s, "ns", "x");
    assert_eq!(e.replay.reason, Reason::InvalidRequest);
    assert_eq!(e.replay.addresses, ["192.0.2.200"]);
    // The allocator's own words, from the same core function on the same index.
    let (mut index, _) = crate::facts::rebuild_index(&s.groups, &s.services, s.classless_ours, None);
    let outcome = purelb_core::allocate::reconcile(&mut index, &svc);
    assert_eq!(e.replay.message, outcome.condition().message);
    assert!(
        e.replay.message.starts_with("keeps 192.0.2.200; the request cannot be read"),
        "{}",
        e.replay.message
    );
}

#[test]
fn an_address_without_the_allocated_by_mark_is_placed_nowhere() {
    let mut s = world();
    let mut svc = allocated("ns", "x", "localaddr", &["192.0.2.200"]);
    svc.metadata.annotations.as_mut().unwrap().remove("purelb.io/allocated-by");
    s.services.push(svc);
    let e = explained(&s, "ns", "x");
    // The agents' rule (core's node_view): no mark, no announcement, on any node.
    assert!(e.addresses[0].per_node.is_empty(), "{:?}", e.addresses[0].per_node);
    assert!(e.addresses[0].announced_by.is_empty());
    assert!(e.notes.iter().any(|n| n.contains("no agent announces these addresses")), "{:?}", e.notes);
    // With the mark the same Service is placed, so the test above is about the mark.
    let marked = explained(&world_with(allocated("ns", "x", "localaddr", &["192.0.2.200"])), "ns", "x");
    assert_eq!(marked.addresses[0].announced_by.len(), 1, "{:?}", marked.addresses[0]);
}

fn world_with(svc: Service) -> Snapshot {
    let mut s = world();
    s.services.push(svc);
    s
}

#[test]
fn not_ours_says_why() {
    let mut s = world();
    s.services.push(service("ns", "other", &[], "  loadBalancerClass: example.com/lb\n"));
    let e = explained(&s, "ns", "other");
    assert!(!e.ours && e.ours_why.contains("example.com/lb"));
    assert!(render(&e).contains("not PureLB's"));
}

#[test]
fn targets_are_found_or_named() {
    let s = world();
    assert!(matches!(find_target(&s, None), Err(ExplainError::NoService)));
    let e = find_target(&s, Some(&ServiceKey::new("a", "b"))).unwrap_err();
    assert_eq!(e.to_string(), "Service a/b not found");
}

#[test]
fn json_and_yaml_carry_the_same_facts() {
    let mut s = world();
    s.services.push(allocated("servicetest", "servicetest", "localaddr", &["192.0.2.200"]));
    let e = explained(&s, "servicetest", "servicetest");
    let json: serde_json::Value = serde_json::to_value(&e).unwrap();
    assert_eq!(json["group"]["name"], "localaddr");
    assert_eq!(json["addresses"][0]["how"], "lowestFree");
    let yaml_text = serde_saphyr::to_string(&e).unwrap();
    let back: serde_json::Value = serde_saphyr::from_str(&yaml_text).unwrap();
    assert_eq!(back["addresses"][0]["address"], "192.0.2.200");
}

#[test]
fn every_reason_has_its_own_advice_and_unknown_codes_get_a_generic_one() {
    for reason in Reason::ALL {
        assert_eq!(Reason::parse(reason.as_str()), Some(reason));
        let advice = fix_for(reason.as_str());
        assert_ne!(advice, "see the message", "{reason} has no advice");
    }
    let distinct: std::collections::BTreeSet<String> =
        Reason::ALL.iter().map(|r| fix_for(r.as_str())).collect();
    assert_eq!(distinct.len(), Reason::ALL.len(), "two reasons share one piece of advice");
    assert_eq!(fix_for("SomethingNew"), "see the message");
    assert_eq!(Reason::parse("SomethingNew"), None);
}
