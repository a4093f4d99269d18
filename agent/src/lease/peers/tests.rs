//! Unit tests of the other nodes' Leases as this agent judges them (NodeLeases).
#![allow(clippy::unwrap_used)]

use super::*;
use crate::lease::{LanFacts, format_subnets, lease_name};
use k8s_openapi::api::coordination::v1::LeaseSpec;
use kube::api::ObjectMeta;

fn lease(node: &str, version: &str, subnets: &str) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(lease_name(node)),
            resource_version: Some(version.into()),
            annotations: Some(
                [
                    (SUBNETS_ANNOTATION.to_string(), subnets.to_string()),
                    (INTERFACE_ANNOTATION.to_string(), "eth0".to_string()),
                ]
                .into(),
            ),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(node.into()),
            lease_duration_seconds: Some(4),
            ..Default::default()
        }),
    }
}

fn live(l: &NodeLeases) -> Vec<(String, bool)> {
    l.facts(|_| false, |_| false).into_iter().map(|f| (f.name, f.live)).collect()
}

const S: Duration = Duration::from_secs(1);

fn renewal(at: Instant, version: &str) -> Renewal {
    let lan = LanFacts { interface: "eth0".into(), subnets: parse_subnets("192.0.2.0/24").0 };
    Renewal { at, version: version.into(), lan }
}

#[test]
fn facts_come_from_the_annotations() {
    let t0 = Instant::now();
    let mut l = NodeLeases::new("node1", 4 * S);
    assert!(l.apply(&lease("node2", "1", "192.0.2.0/24"), t0));
    let f = l.facts(|n| n == "node2", |_| false);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].subnets, parse_subnets("192.0.2.0/24").0);
    assert_eq!(f[0].interface, "eth0");
    assert!(f[0].live && f[0].excluded);
    // The same Lease again changes nothing.
    assert!(!l.apply(&lease("node2", "1", "192.0.2.0/24"), t0 + S));
    assert!(l.remove("purelb-node-node2"));
    assert!(l.facts(|_| false, |_| false).is_empty(), "a node without a Lease is not live: it has no facts");
}

#[test]
fn another_node_expires_when_unchanged_for_its_duration_without_events() {
    let t0 = Instant::now();
    let mut l = NodeLeases::new("node1", 4 * S);
    l.set_renewed(Some(renewal(t0, "1")));
    l.apply(&lease("node1", "1", ""), t0);
    l.apply(&lease("node2", "5", ""), t0);
    // Our own Lease keeps changing: our view is fresh.
    l.set_renewed(Some(renewal(t0 + 2 * S, "2")));
    l.apply(&lease("node1", "2", ""), t0 + 2 * S);
    assert!(!l.tick(t0 + 3 * S));
    l.set_renewed(Some(renewal(t0 + 4 * S, "3")));
    l.apply(&lease("node1", "3", ""), t0 + 4 * S);
    assert!(l.tick(t0 + 4 * S), "node2 unchanged for 4 s");
    assert_eq!(live(&l), [("node1".into(), true), ("node2".into(), false)]);
    // A renewal brings it back.
    assert!(l.apply(&lease("node2", "6", ""), t0 + 5 * S));
    assert_eq!(live(&l), [("node1".into(), true), ("node2".into(), true)]);
}

#[test]
fn an_unchanged_lease_is_not_expired_without_proof() {
    // The race a paused API server makes: node2 renewed 1.5 s before node1, then the API stopped.
    // node1 is not yet stale when node2's deadline passes, but no renewal of node1 sent after that
    // deadline has come back, so node2 stays live.
    let t0 = Instant::now();
    let mut l = NodeLeases::new("node1", 4 * S);
    l.apply(&lease("node2", "5", ""), t0);
    l.set_renewed(Some(renewal(t0 + S + S / 2, "1")));
    l.apply(&lease("node1", "1", ""), t0 + S + S / 2);
    for ms in (0..=3000).step_by(250) {
        let now = t0 + 4 * S + Duration::from_millis(ms);
        assert!(!l.tick(now), "nothing flips at {now:?}");
        // Until node1 itself is stale (its own Lease unseen for 4 s, from t0 + 5.5 s).
        if ms < 1500 {
            assert!(l.wants_proof(now), "a renewal would settle it ({ms} ms past the deadline)");
        }
    }
    assert_eq!(live(&l), [("node1".into(), true), ("node2".into(), true)]);
    // The API returns (within the duration): our renewal sent after the deadline is seen, node2's
    // is not: proven expired.
    let now = t0 + 4 * S + S / 2;
    let mut l2 = NodeLeases::new("node1", 4 * S);
    l2.apply(&lease("node2", "5", ""), t0);
    l2.set_renewed(Some(renewal(t0 + S, "1")));
    l2.apply(&lease("node1", "1", ""), t0 + S);
    l2.set_renewed(Some(renewal(now, "2")));
    l2.apply(&lease("node1", "2", ""), now);
    assert!(l2.tick(now));
    assert_eq!(live(&l2), [("node1".into(), true), ("node2".into(), false)]);
    assert!(!l2.wants_proof(now));
}

#[test]
fn verdicts_freeze_while_our_own_lease_is_not_seen_changing() {
    let t0 = Instant::now();
    let mut l = NodeLeases::new("node1", 4 * S);
    l.set_renewed(Some(renewal(t0, "1")));
    l.apply(&lease("node1", "1", ""), t0);
    l.apply(&lease("node2", "5", ""), t0);
    // The watch is stuck: neither Lease changes, though our renewals succeed.
    l.set_renewed(Some(renewal(t0 + 4 * S, "0")));
    l.tick(t0 + 5 * S);
    assert_eq!(live(&l), [("node1".into(), true), ("node2".into(), true)]);
}

#[test]
fn this_node_stays_live_when_its_renewals_fail() {
    let t0 = Instant::now();
    let mut l = NodeLeases::new("node1", 4 * S);
    l.apply(&lease("node1", "1", ""), t0);
    l.set_renewed(Some(renewal(t0, "1")));
    assert!(!l.stale(t0 + S));
    // No renewal for a minute: this node is stale, but still live in its own eyes, with the LAN it
    // last published (the silence of the API is no reason to withdraw).
    assert!(!l.tick(t0 + 60 * S));
    assert!(l.stale(t0 + 60 * S));
    let me = l.facts(|_| false, |_| false);
    assert_eq!(me.len(), 1);
    assert!(me[0].live);
    assert_eq!((me[0].interface.as_str(), format_subnets(&me[0].subnets).as_str()), ("eth0", "192.0.2.0/24"));
}

#[test]
fn own_facts_come_from_the_renewal_not_the_watched_lease() {
    let t0 = Instant::now();
    let mut l = NodeLeases::new("node1", 4 * S);
    // The watched copy says no LAN (an old version); the renewer published eth0.
    l.apply(&lease("node1", "1", ""), t0);
    l.set_renewed(Some(renewal(t0, "1")));
    l.apply(&lease("node2", "1", "192.0.2.0/24"), t0);
    let f = l.facts(|_| false, |_| false);
    assert_eq!(f.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["node1", "node2"]);
    assert_eq!(format_subnets(&f[0].subnets), "192.0.2.0/24");
}

#[test]
fn after_a_stale_spell_every_node_gets_a_whole_duration_to_renew() {
    let t0 = Instant::now();
    let mut l = NodeLeases::new("node1", 4 * S);
    l.set_renewed(Some(renewal(t0, "1")));
    l.apply(&lease("node1", "1", ""), t0);
    l.apply(&lease("node2", "5", ""), t0);
    // The API is away for 60 s: nothing changes and nothing expires.
    for t in 1..=60 {
        assert!(!l.tick(t0 + t * S), "nothing flips while stale (t = {t} s)");
    }
    // It returns: our renewal lands and is seen at t0 + 61 s; node2 has not renewed yet.
    l.set_renewed(Some(renewal(t0 + 61 * S, "2")));
    l.apply(&lease("node1", "2", ""), t0 + 61 * S);
    assert!(!l.stale(t0 + 61 * S));
    assert!(!l.tick(t0 + 63 * S), "node2 is not expired 2 s after our view is fresh again");
    assert_eq!(live(&l), [("node1".into(), true), ("node2".into(), true)]);
    // It never renews: a whole duration after the view came back, it expires.
    l.set_renewed(Some(renewal(t0 + 63 * S, "3")));
    l.apply(&lease("node1", "3", ""), t0 + 63 * S);
    l.set_renewed(Some(renewal(t0 + 65 * S, "4")));
    l.apply(&lease("node1", "4", ""), t0 + 65 * S);
    assert!(l.tick(t0 + 65 * S));
    assert_eq!(live(&l), [("node1".into(), true), ("node2".into(), false)]);
}

#[test]
fn a_released_lease_is_not_live_even_when_frozen() {
    let t0 = Instant::now();
    let mut l = NodeLeases::new("node1", 4 * S);
    let mut free = lease("node2", "9", "");
    if let Some(s) = free.spec.as_mut() {
        s.holder_identity = None;
    }
    l.apply(&free, t0);
    assert_eq!(live(&l), [("node2".into(), false)]);
}

#[test]
fn a_relist_drops_leases_that_are_gone() {
    let t0 = Instant::now();
    let mut l = NodeLeases::new("node1", 4 * S);
    l.apply(&lease("node2", "1", ""), t0);
    l.apply(&lease("node3", "1", ""), t0);
    let fresh = [lease("node3", "1", "")];
    assert!(l.replace_all(fresh.iter(), t0 + S));
    assert_eq!(live(&l), [("node3".into(), true)]);
}
