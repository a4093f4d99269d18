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
    ServiceFacts { addresses: vec![ip(addr)], local_traffic_policy: false, endpoint_nodes: BTreeSet::new() }
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
