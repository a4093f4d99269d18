//! Unit tests of which placements a change of other nodes can reach, and a property test that holds
//! `placement_may_change` against `plan_for_node` itself: whenever a change of other nodes moves an
//! address on a node, the function said it could.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;
use crate::announce::report::{report, reporter};
use crate::announce::{Placement, ServiceFacts, plan_for_node};

const LAN: &str = "192.0.2.0/24";
const OTHER_LAN: &str = "198.51.100.0/24";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn node(name: &str, subnets: &[&str], live: bool) -> NodeFacts {
    NodeFacts {
        name: name.into(),
        subnets: subnets.iter().map(|s| Subnet::parse(s).unwrap()).collect(),
        interface: "eth0".into(),
        live,
        excluded: false,
        shutting_down: false,
    }
}

fn pools() -> Vec<PoolConfig> {
    vec![
        PoolConfig::parse(LAN, "192.0.2.200-192.0.2.220", "default", None).unwrap(),
        PoolConfig::parse("203.0.113.0/24", "203.0.113.0/24", "/32", None).unwrap(),
        PoolConfig::parse("198.51.100.0/24", "198.51.100.0/24", "/32", None).unwrap(),
    ]
}

#[test]
fn an_address_moves_only_when_its_incumbent_changes() {
    let me = node("a", &[LAN], true);
    let before = vec![me.clone(), node("b", &[LAN], true), node("c", &[LAN], true)];
    let mut after = before.clone();
    after[2].live = false;
    let changed = changed_nodes(&before, &after);
    assert_eq!(changed.iter().map(|c| c.name).collect::<Vec<_>>(), ["c"]);
    let local = ip("192.0.2.200");
    let held_by = |n: &str| BTreeSet::from([n.to_string()]);
    assert!(placement_may_change(&me, local, &held_by("c"), &changed, &after, &pools()));
    assert!(!placement_may_change(&me, local, &held_by("b"), &changed, &after, &pools()));
    assert!(!placement_may_change(&me, local, &held_by("a"), &changed, &after, &pools()));
    // Nobody holds it: a fresh election among the nodes of its subnet, c among them.
    assert!(placement_may_change(&me, local, &BTreeSet::new(), &changed, &after, &pools()));
    // Its incumbent is a node that is gone for longer: a fresh election too.
    assert!(placement_may_change(&me, local, &held_by("z"), &changed, &after, &pools()));
}

#[test]
fn a_routed_address_moves_only_when_a_lan_appears_or_goes_over_its_prefix() {
    let me = node("a", &[LAN], true);
    let before = vec![me.clone(), node("b", &[LAN], true)];
    let routed = ip("198.51.100.7");
    let mut dead = before.clone();
    dead[1].live = false;
    let none = BTreeSet::new();
    assert!(!placement_may_change(&me, routed, &none, &changed_nodes(&before, &dead), &dead, &pools()));
    let mut moved = before.clone();
    moved[1].subnets.push(Subnet::parse(OTHER_LAN).unwrap());
    assert!(placement_may_change(&me, routed, &none, &changed_nodes(&before, &moved), &moved, &pools()));
    let elsewhere = ip("203.0.113.9");
    assert!(!placement_may_change(&me, elsewhere, &none, &changed_nodes(&before, &moved), &moved, &pools()));
}

#[test]
fn nothing_changed_moves_nothing() {
    let me = node("a", &[LAN], true);
    let nodes = vec![me.clone(), node("b", &[LAN], true)];
    let changed = changed_nodes(&nodes, &nodes);
    assert!(changed.is_empty());
    assert!(!placement_may_change(&me, ip("192.0.2.200"), &BTreeSet::new(), &changed, &nodes, &pools()));
}

#[test]
fn nodes_that_appear_or_go_are_changes() {
    let a = node("a", &[LAN], true);
    let b = node("b", &[LAN], true);
    let both = [a.clone(), b.clone()];
    let changed = changed_nodes(std::slice::from_ref(&a), &both);
    assert_eq!(changed, [NodeChange { name: "b", before: None, after: Some(&b) }]);
    let changed = changed_nodes(&both, std::slice::from_ref(&a));
    assert_eq!(changed, [NodeChange { name: "b", before: Some(&b), after: None }]);
}

// === property ===

const NAMES: [&str; 5] = ["me", "n1", "n2", "n3", "n4"];
const SUBNETS: [&str; 4] = [LAN, OTHER_LAN, "203.0.113.0/25", "192.0.2.0/25"];
const ADDRESSES: [&str; 5] = ["192.0.2.200", "192.0.2.201", "198.51.100.7", "203.0.113.9", "203.0.113.200"];

fn arb_node(name: &'static str) -> impl Strategy<Value = NodeFacts> {
    // Kept out (excluded, shutting down) now and then, so that most nodes can route.
    let rarely = || proptest::bool::weighted(0.15);
    (proptest::sample::subsequence(SUBNETS.to_vec(), 0..=2), any::<bool>(), rarely(), rarely()).prop_map(
        move |(subnets, live, excluded, shutting_down)| NodeFacts {
            excluded,
            shutting_down,
            ..node(name, &subnets, live)
        },
    )
}

/// Before and after: `me` and up to four other nodes; each other one is, after, the same as before,
/// the same with its Lease's liveness flipped, replaced by other facts, or gone (or there only after);
/// the address; its incumbents; whether the Service asks for ETP Local (with an endpoint on `me`).
#[allow(clippy::type_complexity)]
fn arb_case() -> impl Strategy<Value = (Vec<NodeFacts>, Vec<NodeFacts>, IpAddr, BTreeSet<String>, bool)> {
    let other = (proptest::option::of(arb_node("x")), 0..4u8, arb_node("x"));
    (
        arb_node("me"),
        proptest::collection::vec(other, 4),
        proptest::sample::select(ADDRESSES.to_vec()),
        proptest::sample::subsequence(NAMES.to_vec(), 0..=2),
        any::<bool>(),
    )
        .prop_map(|(me, others, address, incumbents, etp_local)| {
            let (mut before, mut after) = (vec![me.clone()], vec![me]);
            for (i, (was, how, other)) in others.into_iter().enumerate() {
                let name = |n: NodeFacts| NodeFacts { name: NAMES[i + 1].to_string(), ..n };
                let now = match (how, &was) {
                    (0, _) => was.clone(),
                    (1, Some(w)) => Some(NodeFacts { live: !w.live, ..w.clone() }),
                    (2, _) => None,
                    _ => Some(other),
                };
                before.extend(was.map(name));
                after.extend(now.map(name));
            }
            (before, after, ip(address), incumbents.into_iter().map(String::from).collect(), etp_local)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_placement_that_moves_was_said_to_be_able_to(
        (before, after, address, incumbents, etp_local) in arb_case()
    ) {
        let svc = ServiceFacts {
            addresses: vec![address],
            local_traffic_policy: etp_local,
            endpoint_nodes: BTreeSet::from(["me".to_string()]),
            incumbents: BTreeMap::from([(address, incumbents.clone())]),
        };
        let placement = |nodes: &[NodeFacts]| -> Placement {
            plan_for_node("me", &svc, nodes, &pools(), "kube-lb0").remove(0).placement
        };
        let changed = changed_nodes(&before, &after);
        let said = placement_may_change(&after[0], address, &incumbents, &changed, &after, &pools());
        prop_assert!(
            said || placement(&before) == placement(&after),
            "moved without warning: {:?} -> {:?}\nchanged: {changed:?}",
            placement(&before),
            placement(&after)
        );
    }
}

/// A Service of one or two of the addresses, each with its own incumbents, ETP Local or not, with
/// endpoints on some of the nodes; and the nodes before and after, as [`arb_case`].
#[allow(clippy::type_complexity)]
fn arb_view_case() -> impl Strategy<Value = (Vec<NodeFacts>, Vec<NodeFacts>, ServiceFacts)> {
    (
        arb_case(),
        proptest::sample::subsequence(ADDRESSES.to_vec(), 1..=2),
        proptest::collection::vec(proptest::sample::subsequence(NAMES.to_vec(), 0..=2), 2),
        proptest::sample::subsequence(NAMES.to_vec(), 0..=3),
    )
        .prop_map(|((before, after, _, _, etp_local), addresses, incumbents, endpoints)| {
            let addresses: Vec<IpAddr> = addresses.into_iter().map(ip).collect();
            let incumbents = addresses
                .iter()
                .zip(incumbents)
                .map(|(a, i)| (*a, i.into_iter().map(String::from).collect()))
                .collect();
            let svc = ServiceFacts {
                addresses,
                local_traffic_policy: etp_local,
                endpoint_nodes: endpoints.into_iter().map(String::from).collect(),
                incumbents,
            };
            (before, after, svc)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_view_that_changes_was_said_to_be_able_to((before, after, svc) in arb_view_case()) {
        let view = |nodes: &[NodeFacts]| {
            let placements: Vec<Placement> =
                plan_for_node("me", &svc, nodes, &pools(), "kube-lb0").into_iter().map(|p| p.placement).collect();
            let report = (reporter(&svc, nodes).as_deref() == Some("me"))
                .then(|| report(&svc, nodes, &pools(), "kube-lb0"));
            (placements, report)
        };
        let was_reporter = view(&before).1.is_some();
        let changed = changed_nodes(&before, &after);
        let said = view_may_change(&after[0], &svc, was_reporter, &changed, &before, &after, &pools());
        prop_assert!(
            said || view(&before) == view(&after),
            "changed without warning:\n{:?}\n->\n{:?}\nchanged: {changed:?}\nservice: {svc:?}",
            view(&before),
            view(&after)
        );
    }
}
