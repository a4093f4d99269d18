//! Failover as the client sees it: the client behind the router sends a request every 10 ms (each on a
//! new connection, 1 s timeout) to a local and a routed address while a fault happens, and every
//! request is counted:
//! (a) SIGTERM of the local address's holder: handed over make-before-break, nothing failed but a
//!     connection open at the instant the address moved (it is reset: `split_by_moves`);
//! (b) the holder's cable pulled and its agent SIGKILLed: the local address is unanswered for less than
//!     [`LOST_NODE_BOUND`], the routed one fails only for less than [`ROUTED_LOST_NODE_BOUND`] (BFD drops
//!     the lost node's next hop; the count and the outages are printed);
//! (c) a rolling restart of every agent: routed 0 failed, local as (a);
//! (c') a graceful node shutdown (the kubelet's Ready "node is shutting down", then SIGTERM): the
//!     node's local address moves and its routes are withdrawn before its agent stops: local as (a),
//!     routed likewise (only a connection the router had hashed onto the node, open when its route
//!     went, is reset);
//! (d) kube-apiserver paused for 30 s: 0 failed, local and routed (fail-static).
//! And what a stopping agent leaves: routed addresses stay for the next agent on a restart, and go on
//! an uninstall (the DaemonSet deleted).
//!
//! One lab and one 2-node data path (allocator, agents, kube-proxy, client) serve the file; the tests
//! take turns (they stop agents and the API server). Needs what data_path.rs needs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::failover::*;
use common::traffic::*;
use common::*;
use k8s_openapi::api::apps::v1::DaemonSet;
use kube::api::{Api, DeleteParams};
use purelb_lab::{ControlPlane, shared};
use tokio::sync::{Mutex, MutexGuard, OnceCell};

static DATA_PATH: OnceCell<Mutex<DataPath>> = OnceCell::const_new();

/// The file's data path, for one test at a time.
async fn data_path() -> (&'static ControlPlane, MutexGuard<'static, DataPath>) {
    let lab = shared().await;
    let dp = DATA_PATH
        .get_or_init(|| async {
            let dp = start_data_path(lab, "allocator-dp-failover", &["node1", "node2"]).await;
            // The agents' DaemonSet, as installed: a stopping agent that finds it keeps its routed
            // addresses for the next one (its pods stay Pending: no scheduler; the lab runs the agents).
            apply_agent_daemonset(lab).await;
            Mutex::new(dp)
        })
        .await;
    (lab, dp.lock().await)
}

async fn apply_agent_daemonset(lab: &ControlPlane) {
    let manifest = purelb_lab::workspace_root().join("deploy/agent.yaml");
    lab.apply_file(&manifest).await.unwrap();
}

/// No local request failed but a connection open when the address moved ([`split_by_moves`]).
fn assert_only_moves_failed(dp: &DataPath, o: &Outcome) {
    let (explained, other) = split_by_moves(&dp.net, &o.local);
    eprintln!("local: {} failed requests were open when the address moved (reset)", explained.len());
    assert!(other.is_empty(), "local: failed apart from the move: {other:?}: {}", o.local.summary());
}

fn show(what: &str, o: &Outcome) {
    eprintln!(
        "{what}: local {} -> {} (moved after {:?}): {}\n{what}: routed: {}",
        o.holder_before,
        o.holder_after,
        o.moved_after,
        o.local.summary(),
        o.routed.summary()
    );
    // The first failed requests against the fault's clock: when sent, how long they took, how they failed.
    for (name, report) in [("local", &o.local), ("routed", &o.routed)] {
        for p in report.probes.iter().filter(|p| p.result.is_err()).take(3) {
            let sent = p.sent.as_secs_f64() - o.fault_at.as_secs_f64();
            eprintln!(
                "{what}: {name} request {} sent {sent:+.4} s after the fault, failed after {:?}: {:?}",
                p.seq,
                p.latency,
                p.result.as_ref().err()
            );
        }
    }
}

#[tokio::test]
async fn sigterm_of_the_holder_hands_over_without_a_failed_request() {
    let (lab, mut dp) = data_path().await;
    let t = targets(lab, &dp, "dpf-term", "192.0.2.248-192.0.2.248", "203.0.113.248-203.0.113.248").await;
    let o = apply(lab, &mut dp, &t, Fault::Sigterm).await;
    show("SIGTERM", &o);
    assert_ne!(o.holder_before, o.holder_after, "the address moved");
    assert_only_moves_failed(&dp, &o);
    assert_eq!(o.routed.failed(), 0, "routed: {}", o.routed.summary());
    t.cleanup().await;
}

#[tokio::test]
async fn a_lost_node_leaves_its_local_address_unanswered_within_the_bound() {
    let (lab, mut dp) = data_path().await;
    let t = targets(lab, &dp, "dpf-kill", "192.0.2.249-192.0.2.249", "203.0.113.249-203.0.113.249").await;
    let o = apply(lab, &mut dp, &t, Fault::KillAndCut).await;
    show("SIGKILL + cable cut", &o);
    assert_ne!(o.holder_before, o.holder_after, "the address moved");
    assert!(
        o.local.failed() > 0,
        "a lost node costs requests (else the fault did nothing): {}",
        o.local.summary()
    );
    assert!(
        o.local.longest_outage() < LOST_NODE_BOUND,
        "local outage over {LOST_NODE_BOUND:?}: {}",
        o.local.summary()
    );
    // The routed address loses the node's next hop by BFD (600 ms), not BGP's hold time (3 s): no
    // request sent later than ROUTED_LOST_NODE_BOUND after the cut failed.
    eprintln!(
        "routed: next hop gone after {:?}, last failed request sent {:?} after the cut",
        o.next_hop_gone_after,
        o.routed_failing_for()
    );
    assert!(
        o.routed_failing_for() < ROUTED_LOST_NODE_BOUND,
        "routed requests failed for {:?} after the cut: {}",
        o.routed_failing_for(),
        o.routed.summary()
    );
    // Answered again at the end: the last requests all succeeded.
    let tail = &o.local.probes[o.local.probes.len() - 50..];
    assert!(tail.iter().all(|p| p.result.is_ok()), "local: {}", o.local.summary());
    t.cleanup().await;
}

#[tokio::test]
async fn a_graceful_node_shutdown_moves_both_addresses_before_the_agent_stops_without_a_failed_request() {
    let (lab, mut dp) = data_path().await;
    let t = targets(lab, &dp, "dpf-down", "192.0.2.252-192.0.2.252", "203.0.113.252-203.0.113.252").await;
    let o = apply(lab, &mut dp, &t, Fault::NodeShutdown).await;
    show("graceful node shutdown", &o);
    eprintln!("routed: the shut-down node's next hop gone after {:?}", o.next_hop_gone_after);
    assert_ne!(o.holder_before, o.holder_after, "the local address moved");
    let gone = o.next_hop_gone_after.expect("the router stopped routing via the node");
    assert_only_moves_failed(&dp, &o);
    let (explained, other) = split_by_route_change(&o.routed, o.fault_at + gone);
    eprintln!(
        "routed: {} failed requests were open on the node when its route went (reset)",
        explained.len()
    );
    assert!(
        other.is_empty(),
        "routed: failed apart from the route change: {other:?}: {}",
        o.routed.summary()
    );
    t.cleanup().await;
}

#[tokio::test]
async fn a_rolling_restart_of_every_agent_fails_no_request() {
    let (lab, mut dp) = data_path().await;
    let t = targets(lab, &dp, "dpf-roll", "192.0.2.250-192.0.2.250", "203.0.113.250-203.0.113.250").await;
    let o = apply(lab, &mut dp, &t, Fault::RollingRestart).await;
    show("rolling restart", &o);
    assert_only_moves_failed(&dp, &o);
    assert_eq!(o.routed.failed(), 0, "routed: {}", o.routed.summary());
    t.cleanup().await;
}

#[tokio::test]
async fn a_30_second_api_server_pause_fails_no_request() {
    let (lab, mut dp) = data_path().await;
    let t = targets(lab, &dp, "dpf-pause", "192.0.2.251-192.0.2.251", "203.0.113.251-203.0.113.251").await;
    let o = apply(lab, &mut dp, &t, Fault::ApiPause(Duration::from_secs(30))).await;
    show("API server paused 30 s", &o);
    assert_eq!(o.holder_before, o.holder_after, "nothing moved");
    assert_eq!(o.local.failed(), 0, "local: {}", o.local.summary());
    assert_eq!(o.routed.failed(), 0, "routed: {}", o.routed.summary());
    t.cleanup().await;
}

#[tokio::test]
async fn sigterm_withdraws_routed_addresses_only_when_purelb_is_being_uninstalled() {
    let (lab, mut dp) = data_path().await;
    let t = targets(lab, &dp, "dpf-uninst", "192.0.2.253-192.0.2.253", "203.0.113.253-203.0.113.253").await;
    let route = format!("{}/32", t.routed);
    let lan = |n: &str| dp.net.node(n).unwrap().ipv4().to_string();
    let (node1, node2) = (lan("node1"), lan("node2"));
    let i = dp.agents.iter().position(|a| a.node == "node2").unwrap();

    // A restart: the DaemonSet is there, so node2 keeps the routed address and the router its route.
    dp.cluster.agents[i].child.terminate().await.unwrap();
    assert!(
        on_kube_lb0(&dp, &t.routed, "node2").await,
        "a restarting agent left its routed address in place"
    );
    wait_route(&dp.net, &route, &[&node1, &node2]).await;
    let agent = start_agent(lab, &dp.net, "node2", &["--log-format=text"]).await;
    wait_agent_ready(&agent).await;
    dp.cluster.agents[i] = agent;
    assert!(on_kube_lb0(&dp, &t.routed, "node2").await, "the next agent adopted it");

    // An uninstall: the DaemonSet is deleted first, then its pods stop; node2 withdraws.
    let admin = lab.admin_client().await.unwrap();
    let daemonsets: Api<DaemonSet> = Api::namespaced(admin, NS);
    daemonsets.delete("purelb-agent", &DeleteParams::background()).await.unwrap();
    dp.cluster.agents[i].child.terminate().await.unwrap();
    assert!(!on_kube_lb0(&dp, &t.routed, "node2").await, "an agent stopping for an uninstall withdrew it");
    wait_route(&dp.net, &route, &[&node1]).await;

    // Back as found.
    apply_agent_daemonset(lab).await;
    let agent = start_agent(lab, &dp.net, "node2", &["--log-format=text"]).await;
    wait_agent_ready(&agent).await;
    dp.cluster.agents[i] = agent;
    wait_route(&dp.net, &route, &[&node1, &node2]).await;
    t.cleanup().await;
}

async fn on_kube_lb0(dp: &DataPath, ip: &str, node: &str) -> bool {
    holders(&dp.net, ip).await.iter().any(|(n, i, _)| n == node && i == "kube-lb0")
}
