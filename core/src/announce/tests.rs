//! Unit tests of local/non-local, the election, ETP Local and aggregation.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::*;
use crate::pool::{PoolConfig, Subnet};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn node(name: &str) -> NodeFacts {
    NodeFacts {
        name: name.into(),
        subnets: vec![Subnet::parse("192.0.2.0/24").unwrap(), Subnet::parse("2001:db8:0:1::/64").unwrap()],
        interface: "eth0".into(),
        live: true,
        excluded: false,
        shutting_down: false,
    }
}

fn nodes() -> Vec<NodeFacts> {
    vec![node("node1"), node("node2"), node("node3")]
}

fn pools() -> Vec<PoolConfig> {
    vec![
        PoolConfig::parse("172.31.1.0/24", "172.31.1.0/24", "/32", None).unwrap(),
        PoolConfig::parse("198.51.100.0/24", "198.51.100.0/24", "default", None).unwrap(),
    ]
}

fn svc(addr: &str) -> ServiceFacts {
    ServiceFacts { addresses: vec![ip(addr)], ..Default::default() }
}

fn placements(s: &ServiceFacts, ns: &[NodeFacts]) -> Vec<Placement> {
    ns.iter().map(|n| plan_for_node(&n.name, s, ns, &pools(), "kube-lb0").remove(0).placement).collect()
}

#[test]
fn a_local_address_goes_to_exactly_one_node_the_lowest_hash() {
    let ns = nodes();
    let p = placements(&svc("192.0.2.200"), &ns);
    let winners: Vec<usize> = (0..3).filter(|i| p[*i] != Placement::Absent).collect();
    assert_eq!(winners.len(), 1, "{p:?}");
    let expected = ns.iter().min_by_key(|n| election_hash(&n.name, ip("192.0.2.200"))).unwrap();
    assert_eq!(ns[winners[0]].name, expected.name);
    assert_eq!(p[winners[0]], Placement::Local { interface: "eth0".into(), prefix_len: 24 });
}

#[test]
fn the_election_skips_dead_and_excluded_nodes_and_says_why() {
    let mut ns = nodes();
    let first = elect(ip("192.0.2.200"), &ns).winner.unwrap();
    let i = ns.iter().position(|n| n.name == first).unwrap();
    ns[i].excluded = true;
    let e = elect(ip("192.0.2.200"), &ns);
    assert_ne!(e.winner.as_deref(), Some(first.as_str()));
    let c = e.candidates.iter().find(|c| c.node == first).unwrap();
    assert!(!c.eligible && c.why.contains(EXCLUDE_LABEL), "{c:?}");
    for n in &mut ns {
        n.live = false;
    }
    assert_eq!(elect(ip("192.0.2.200"), &ns).winner, None);
}

#[test]
fn the_hash_is_sha256_of_node_hash_address() {
    // sha256("node1#192.0.2.200"), computed independently with Python's hashlib.
    assert_eq!(
        election_hash("node1", ip("192.0.2.200")),
        "cbd3a6277c28f48b33bd1afbc411e5b4654b5c0f074c755c389696f9eac96dda"
    );
    assert_ne!(election_hash("node1", ip("192.0.2.200")), election_hash("node2", ip("192.0.2.200")));
    assert_eq!(election_hash("a", ip("192.0.2.1")), election_hash("a", ip("192.0.2.1")));
}

#[test]
fn a_non_local_address_goes_on_kube_lb0_of_every_live_node_with_the_aggregation() {
    let mut ns = nodes();
    ns[2].live = false;
    let p = placements(&svc("172.31.1.225"), &ns);
    let on = Placement::NonLocal { interface: "kube-lb0".into(), prefix_len: 32 };
    assert_eq!(p, vec![on.clone(), on, Placement::Absent]);
    let p = placements(&svc("198.51.100.9"), &nodes());
    assert!(p.iter().all(|p| *p == Placement::NonLocal { interface: "kube-lb0".into(), prefix_len: 24 }));
}

#[test]
fn etp_local_announces_only_where_endpoints_are() {
    let mut s = svc("172.31.1.0");
    s.local_traffic_policy = true;
    s.endpoint_nodes = ["node2".to_string()].into();
    let p = placements(&s, &nodes());
    assert_eq!(p[0], Placement::Absent);
    assert_eq!(p[1], Placement::NonLocal { interface: "kube-lb0".into(), prefix_len: 32 });
    assert_eq!(p[2], Placement::Absent);
}

#[test]
fn etp_local_on_a_local_address_is_reset_to_cluster() {
    let mut s = svc("192.0.2.201");
    s.local_traffic_policy = true;
    let ns = nodes();
    let plans: Vec<AddressPlan> =
        ns.iter().map(|n| plan_for_node(&n.name, &s, &ns, &pools(), "kube-lb0").remove(0)).collect();
    assert!(plans.iter().all(|p| p.reset_traffic_policy));
    assert_eq!(plans.iter().filter(|p| p.placement != Placement::Absent).count(), 1, "announced as Cluster");
}

#[test]
fn excluded_nodes_do_not_announce_non_local_addresses() {
    let mut ns = nodes();
    ns[0].excluded = true;
    let plan = plan_for_node("node1", &svc("172.31.1.5"), &ns, &pools(), "kube-lb0").remove(0);
    assert_eq!(plan.placement, Placement::Absent);
    assert!(plan.reasons.iter().any(|r| r.contains(EXCLUDE_LABEL)));
}

#[test]
fn a_node_shutting_down_hands_over_its_local_address_even_as_incumbent_and_routes_nothing() {
    let mut ns = nodes();
    let addr = ip("192.0.2.200");
    let first = elect(addr, &ns).winner.unwrap();
    let i = ns.iter().position(|n| n.name == first).unwrap();
    ns[i].shutting_down = true;
    // The incumbent rule keeps an eligible holder only: a node shutting down is not one.
    let e = elect_keeping(addr, &ns, [&first]);
    assert!(e.winner.is_some() && e.winner.as_deref() != Some(first.as_str()), "{e:?}");
    let c = e.candidates.iter().find(|c| c.node == first).unwrap();
    assert!(!c.eligible && c.why.contains("shutting down"), "{c:?}");
    let plan = plan_for_node(&first, &svc("172.31.1.5"), &ns, &pools(), "kube-lb0").remove(0);
    assert_eq!(plan.placement, Placement::Absent);
    assert!(plan.reasons.iter().any(|r| r.contains(facts::NODE_SHUTTING_DOWN)), "{:?}", plan.reasons);
    // The others still route it.
    let others = ns.iter().filter(|n| n.name != first);
    for n in others {
        let p = plan_for_node(&n.name, &svc("172.31.1.5"), &ns, &pools(), "kube-lb0").remove(0);
        assert!(matches!(p.placement, Placement::NonLocal { .. }), "{}: {p:?}", n.name);
    }
}

#[test]
fn an_address_outside_every_pool_is_announced_as_a_host_route() {
    let (len, why) = aggregation_prefix(ip("203.0.113.5"), &pools());
    assert_eq!(len, 32);
    assert!(why.contains("no pool"));
    assert_eq!(aggregation_prefix(ip("2001:db8:100::1"), &[]).0, 128);
}

#[test]
fn ipv6_local_addresses_are_elected_too() {
    let ns = nodes();
    let p = placements(&svc("2001:db8:0:1::200"), &ns);
    assert_eq!(p.iter().filter(|p| **p != Placement::Absent).count(), 1);
    assert!(p.contains(&Placement::Local { interface: "eth0".into(), prefix_len: 64 }));
}

#[test]
fn a_routed_prefix_that_overlaps_any_nodes_lan_is_refused_with_the_reason() {
    // node3 lost its LAN (a link flap): 192.0.2.201 is not local there, and its default aggregation
    // would announce 192.0.2.0/24 — the other nodes' LAN — on kube-lb0.
    let mut ns = nodes();
    ns[2].subnets.clear();
    ns[2].interface.clear();
    let lan_pool = PoolConfig::parse("192.0.2.0/24", "192.0.2.200-192.0.2.220", "default", None).unwrap();
    let plan = plan_for_node("node3", &svc("192.0.2.201"), &ns, &[lan_pool], "kube-lb0").remove(0);
    assert_eq!(plan.placement, Placement::Absent);
    assert!(
        plan.reasons
            .iter()
            .any(|r| r.contains("192.0.2.0/24") && r.contains("node1") && r.contains("hijack")),
        "{:?}",
        plan.reasons
    );
    // A /32 of the same address overlaps too: it lies in node1's LAN.
    let host = PoolConfig::parse("192.0.2.0/24", "192.0.2.200-192.0.2.220", "/32", None).unwrap();
    let plan = plan_for_node("node3", &svc("192.0.2.201"), &ns, &[host], "kube-lb0").remove(0);
    assert_eq!(plan.placement, Placement::Absent);
    // An address outside every LAN is still routed.
    let plan = plan_for_node("node3", &svc("198.51.100.7"), &ns, &pools(), "kube-lb0").remove(0);
    assert_eq!(plan.placement, Placement::NonLocal { interface: "kube-lb0".into(), prefix_len: 24 });
}

#[test]
fn a_routed_prefix_over_a_connected_subnet_is_refused() {
    let plan = plan_for_node("node1", &svc("198.51.100.7"), &nodes(), &pools(), "kube-lb0").remove(0);
    let connected = [Subnet::parse("198.51.100.128/25").unwrap()];
    let refused = refuse_connected(plan.clone(), &connected);
    assert_eq!(refused.placement, Placement::Absent);
    assert!(refused.reasons.last().unwrap().contains("198.51.100.128/25"), "{:?}", refused.reasons);
    let elsewhere = [Subnet::parse("203.0.113.0/24").unwrap()];
    assert_eq!(refuse_connected(plan.clone(), &elsewhere), plan);
    // Local placements are not routed: left alone.
    let local = plan_for_node("node1", &svc("192.0.2.50"), &nodes(), &pools(), "kube-lb0").remove(0);
    let lan = [Subnet::parse("192.0.2.0/24").unwrap()];
    assert_eq!(refuse_connected(local.clone(), &lan), local);
}

#[test]
fn a_node_without_a_lan_interface_is_said_so() {
    let mut ns = nodes();
    ns[1].subnets.clear();
    ns[1].interface.clear();
    let e = elect(ip("192.0.2.50"), &ns);
    let c = e.candidates.iter().find(|c| c.node == "node2").unwrap();
    assert!(!c.eligible);
    assert_eq!(c.why, "its agent reports no LAN interface");
}

#[test]
fn the_node_that_announces_a_local_address_keeps_it_while_it_is_eligible() {
    let a = ip("192.0.2.50");
    let by_hash = elect(a, &nodes()).winner.unwrap();
    let other = ["node1", "node2", "node3"].into_iter().find(|n| *n != by_hash).unwrap().to_string();
    let mut s = svc("192.0.2.50");
    s.incumbents.insert(a, [other.clone()].into());
    // The incumbent keeps it although another node has the lower hash: a node coming back takes
    // nothing back.
    let winners: Vec<String> = nodes()
        .iter()
        .filter(|n| {
            matches!(
                plan_for_node(&n.name, &s, &nodes(), &pools(), "kube-lb0")[0].placement,
                Placement::Local { .. }
            )
        })
        .map(|n| n.name.clone())
        .collect();
    assert_eq!(winners, std::slice::from_ref(&other));
    let plan = plan_for_node(&other, &s, &nodes(), &pools(), "kube-lb0").remove(0);
    assert!(plan.reasons.iter().any(|r| r.contains("already announces it")), "{:?}", plan.reasons);
    assert!(plan.election.unwrap().kept_by_incumbent);
    // The incumbent stops being live: the hash decides again.
    let mut ns = nodes();
    ns.iter_mut().find(|n| n.name == other).unwrap().live = false;
    let e = elect_keeping(a, &ns, s.incumbents.get(&a).into_iter().flatten());
    assert_eq!(e.winner.as_deref(), Some(by_hash.as_str()));
    assert!(!e.kept_by_incumbent);
    // Two incumbents (reports disagreeing for a moment): the lower hash of the two, for everyone.
    let all: BTreeSet<String> = ["node1".to_string(), "node2".into(), "node3".into()].into();
    let e = elect_keeping(a, &nodes(), &all);
    assert_eq!(e.winner.as_deref(), Some(by_hash.as_str()));
}
