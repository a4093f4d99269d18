//! Failover benchmark in the lab (not a test): the outages a client behind the router sees, request by
//! request (one every 10 ms, each on a new connection, 1 s timeout), for a local and a routed address on a
//! 2-node data path (allocator, agents, kube-proxy, echo pods on both nodes), over RUNS runs (default 10)
//! of each fault: SIGTERM of the local holder, its cable pulled and agent SIGKILLed, a rolling restart of
//! every agent, the API server paused PAUSE_S seconds (default 30). Prints, per fault and address, the
//! longest client-side outage (p50/p99/max) and the failed requests per run; then how many requests per
//! second one client gets through the routed address (offered one every 1 ms: the data path is
//! kube-proxy's and the kernel's, PureLB only places the address).
//! Run: `cargo build --release --bins && cargo bench -p purelb-lab --bench failover` (RUNS=N PAUSE_S=S,
//! FAULTS=Sigterm,KillAndCut,NodeShutdown,RollingRestart,ApiPause for some only).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::time::Duration;

use common::failover::{Fault, apply, targets};
use common::traffic::start_data_path;
use purelb_lab::{ControlPlane, ProbeConfig};
use support::report;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let runs = env("RUNS", 10) as usize;
    let pause = Duration::from_secs(env("PAUSE_S", 30));
    let lab = ControlPlane::start().await.expect("control plane");
    let mut dp = start_data_path(&lab, "allocator-bench-failover", &["node1", "node2"]).await;
    lab.apply_file(&purelb_lab::workspace_root().join("deploy/agent.yaml"))
        .await
        .expect("the agents' DaemonSet");
    let t = targets(&lab, &dp, "bench-fo", "192.0.2.230-192.0.2.230", "203.0.113.230-203.0.113.230").await;

    // FAULTS=Sigterm,KillAndCut,... picks some (default: all five).
    let only = std::env::var("FAULTS").unwrap_or_default();
    let faults = [
        Fault::Sigterm,
        Fault::KillAndCut,
        Fault::NodeShutdown,
        Fault::RollingRestart,
        Fault::ApiPause(pause),
    ];
    for fault in faults
        .into_iter()
        .filter(|f| only.is_empty() || only.split(',').any(|o| format!("{f:?}").starts_with(o)))
    {
        let (mut local, mut routed) = (Vec::new(), Vec::new());
        let (mut local_failed, mut routed_failed) = (Vec::new(), Vec::new());
        let (mut next_hop_gone, mut routed_failing) = (Vec::new(), Vec::new());
        for run in 0..runs {
            let o = apply(&lab, &mut dp, &t, fault).await;
            eprintln!("{fault:?} run {run}: local {}; routed {}", o.local.summary(), o.routed.summary());
            local.push(o.local.longest_outage());
            routed.push(o.routed.longest_outage());
            local_failed.push(o.local.failed());
            routed_failed.push(o.routed.failed());
            next_hop_gone.extend(o.next_hop_gone_after);
            routed_failing.push(o.routed_failing_for());
        }
        report(&format!("{fault:?}: local address, longest outage"), local);
        println!("{fault:?}: local address, failed requests per run: {local_failed:?}");
        report(&format!("{fault:?}: routed address, longest outage"), routed);
        println!("{fault:?}: routed address, failed requests per run: {routed_failed:?}");
        // The client-observed routed outage on a node loss: from the fault to the last failed request
        // sent (half the connections hash to the lost node until the router drops it).
        report(
            &format!("{fault:?}: routed address, from the fault to the last failed request"),
            routed_failing,
        );
        if !next_hop_gone.is_empty() {
            report(
                &format!("{fault:?}: routed address, lost node's next hop gone from the router"),
                next_hop_gone,
            );
        }
    }

    let [_, routed_to] = t.addresses();
    let config = ProbeConfig {
        interval: Duration::from_millis(1),
        max_requests: 100_000,
        max_duration: Duration::from_secs(10),
        ..Default::default()
    };
    let r = dp.client.probe(routed_to, config).unwrap().finish().await.unwrap();
    let answered = r.sent() - r.failed();
    println!(
        "one client through the routed address: {answered} answered of {} offered in 10 s = {:.0} requests/s ({})",
        r.sent(),
        answered as f64 / 10.0,
        r.summary()
    );
    t.cleanup().await;
}
