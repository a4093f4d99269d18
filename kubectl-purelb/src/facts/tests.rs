//! Tests of the object → core-input conversions.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;

use super::*;
use crate::testing::*;
use purelb_core::announce::EXCLUDE_LABEL;

#[test]
fn the_index_is_rebuilt_oldest_first_and_the_newer_claimant_is_in_conflict() {
    let g = group("ns", "web", &[("192.0.2.0/24", "192.0.2.10-192.0.2.19")], &[]);
    let mut old = allocated("a", "old", "web", &["192.0.2.10"]);
    old.metadata.creation_timestamp = Some(yaml("'2020-01-01T00:00:00Z'"));
    let new = allocated("a", "new", "web", &["192.0.2.10"]);
    let (index, conflicts) = rebuild_index(&[g], &[new, old], true, None);
    assert_eq!(
        index.held(&ServiceKey::new("a", "old")).unwrap().addresses,
        ["192.0.2.10".parse::<IpAddr>().unwrap()]
    );
    assert!(index.held(&ServiceKey::new("a", "new")).is_none());
    assert_eq!(conflicts.keys().cloned().collect::<Vec<_>>(), [ServiceKey::new("a", "new")]);
}

#[test]
fn skip_leaves_a_service_out_of_the_index() {
    let g = group("ns", "web", &[("192.0.2.0/24", "192.0.2.10-192.0.2.19")], &[]);
    let s = allocated("a", "x", "web", &["192.0.2.10"]);
    let (index, _) = rebuild_index(&[g], &[s], true, Some(&ServiceKey::new("a", "x")));
    assert_eq!(index.addresses().count(), 0);
}

#[test]
fn node_liveness_comes_from_renew_time_plus_duration() {
    let leases = [
        lease("n1", "eth0", "192.0.2.0/24,2001:db8::/64", 5, 10),
        lease("n2", "eth0", "192.0.2.0/24,bogus", 11, 10),
    ];
    let nodes = [node("n1", &[]), node("n2", &[]), node("n3", &[(EXCLUDE_LABEL, "")])];
    let (facts, reports) = node_facts(&nodes, &leases, &[], now());
    let live: Vec<(&str, bool, bool)> = facts.iter().map(|f| (f.name.as_str(), f.live, f.excluded)).collect();
    assert_eq!(live, [("n1", true, false), ("n2", false, false), ("n3", false, true)]);
    assert_eq!(facts[0].subnets.len(), 2);
    assert!(reports[0].why.contains("current until 2030-01-01T00:00:05Z"), "{}", reports[0].why);
    assert!(reports[1].why.contains("expired at 2029-12-31T23:59:59Z"), "{}", reports[1].why);
    assert_eq!(reports[1].lease.as_ref().unwrap().bad_subnets, ["bogus"]);
    assert!(reports[2].why.contains("no Lease purelb-node-n3"));
}

#[test]
fn declared_nodes_take_the_place_of_node_and_lease() {
    let declared = [DeclaredNode {
        name: "n1".into(),
        interface: "eth1".into(),
        subnets: vec!["198.51.100.0/24".into()],
        live: false,
        excluded: true,
        shutting_down: false,
    }];
    let (facts, reports) =
        node_facts(&[node("n1", &[])], &[lease("n1", "eth0", "192.0.2.0/24", 0, 10)], &declared, now());
    assert_eq!(facts.len(), 1);
    assert_eq!((facts[0].interface.as_str(), facts[0].live, facts[0].excluded), ("eth1", false, true));
    assert!(reports[0].why.contains("declared not live"));
}

#[test]
fn lbnodeagent_named_default_wins() {
    let a: LBNodeAgent = yaml(
        "apiVersion: purelb.io/v1\nkind: LBNodeAgent\nmetadata: {name: a, namespace: purelb-system}\nspec:\n  local: {extlbint: lb-a}\n",
    );
    let d: LBNodeAgent = yaml(
        "apiVersion: purelb.io/v1\nkind: LBNodeAgent\nmetadata: {name: default, namespace: purelb-system}\nspec:\n  local: {extlbint: lb-d}\n",
    );
    let s = LbnaSettings::select(&[a.clone(), d], "purelb-system");
    assert_eq!((s.from.as_deref(), s.extlbint.as_str()), (Some("purelb-system/default"), "lb-d"));
    assert_eq!(LbnaSettings::select(&[a], "elsewhere").extlbint, "kube-lb0");
}

#[test]
fn lbnodeagent_is_read_by_the_agents_rule() {
    let padded: LBNodeAgent = yaml(
        "apiVersion: purelb.io/v1\nkind: LBNodeAgent\nmetadata: {name: default, namespace: purelb-system}\nspec:\n  local: {localint: ' eth1 ', extlbint: ' lb-d '}\n",
    );
    let s = LbnaSettings::select(&[padded], "purelb-system");
    assert_eq!((s.localint.as_str(), s.extlbint.as_str(), s.problem), ("^(?:eth1)$", "lb-d", None));
    let broken: LBNodeAgent = yaml(
        "apiVersion: purelb.io/v1\nkind: LBNodeAgent\nmetadata: {name: default, namespace: purelb-system}\nspec:\n  local: {localint: 'eth(', extlbint: lb-d}\n",
    );
    let s = LbnaSettings::select(&[broken], "purelb-system");
    assert_eq!(s.from.as_deref(), Some("purelb-system/default"));
    assert_eq!(s.extlbint, "kube-lb0", "an unusable LBNodeAgent is not applied");
    assert!(s.problem.as_deref().is_some_and(|p| p.contains("keep the settings they had")), "{s:?}");
}
