//! Fail-static benchmark in the lab (not a test): a node cut off from the API server (its relay path
//! black-holed, its LAN up) while it holds a local address. The others take the address over and send
//! gratuitous ARP; the cut-off node yields when it hears it. Measured per run, polling both nodes every
//! 1 ms: cut → new holder (the Lease bound), new holder → old holder gone (the yield, which is also
//! how long two nodes held the address), and whether anything moved when the path came back (the
//! sticky election). Prints p50/p99 over the runs.
//! Run: `cargo build --release --bins && cargo bench -p purelb-lab --bench fail_static` (RUNS=N).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::core::v1::Service;
use kube::api::Api;
use purelb_core::api::annotations;
use purelb_lab::{ControlPlane, Network, NetworkConfig, TestNamespace};
use support::report;

/// Polls (every 1 ms, at most 30 s) until `done` holds for the holders of `ip`.
async fn until(net: &Network, ip: &str, done: impl Fn(&[(String, String, u8)]) -> bool) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if done(&holders(net, ip).await) {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "{ip}: no convergence within 30 s: {:?}", holders(net, ip).await);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::var("RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let lab = ControlPlane::start().await.expect("control plane");
    let net = Network::create(&lab, NetworkConfig { nodes: 3, ..Default::default() }).await.expect("network");
    let _allocator = start_allocator(&lab, "allocator-bench-fs", &[], true).await;
    let mut agents = Vec::new();
    for n in ["node1", "node2", "node3"] {
        agents.push(start_agent(&lab, &net, n, &["--log-format=text"]).await);
    }
    for a in &agents {
        wait_agent_ready(a).await;
    }
    let client = lab.admin_client().await.unwrap();
    let ns = TestNamespace::new(&client, "bench-fs").await.unwrap();
    create_group(
        &client,
        ns.name(),
        &group("bench-fs", Some(("192.0.2.0/24", "192.0.2.230-192.0.2.239", "default")), None),
    )
    .await;
    let api: Api<Service> = Api::namespaced(client.clone(), ns.name());
    create(&api, &lb_service("svc", 80, &[(annotations::SERVICE_GROUP, "bench-fs")], "")).await;
    let ip = ingress(&wait_ingress(&api, "svc", 1).await)[0].clone();

    let (mut takeover, mut yielded, mut moved_on_rejoin) = (Vec::new(), Vec::new(), 0);
    for run in 0..runs {
        until(&net, &ip, |h| h.len() == 1).await;
        let old = holders(&net, &ip).await[0].0.clone();
        let cut = Instant::now();
        net.cut_api(&old, true);
        let taken = until(&net, &ip, |h| h.iter().any(|(n, _, _)| *n != old)).await;
        let gone = until(&net, &ip, |h| h.iter().all(|(n, _, _)| *n != old)).await;
        let new = holders(&net, &ip).await.first().map(|h| h.0.clone()).unwrap_or_default();
        takeover.push(taken.duration_since(cut));
        yielded.push(gone.saturating_duration_since(taken));
        tokio::time::sleep(Duration::from_secs(2)).await;
        net.cut_api(&old, false);
        // Rejoin: give it two Lease durations, then see whether the address moved back.
        tokio::time::sleep(Duration::from_secs(8)).await;
        let after = holders(&net, &ip).await;
        if after.len() != 1 || after[0].0 != new {
            moved_on_rejoin += 1;
        }
        eprintln!(
            "run {run}: {old} cut off; {new} took {ip} after {:?}; {old} yielded {:?} later; after the rejoin {after:?}",
            takeover[run], yielded[run]
        );
    }
    report("cut off → another node holds the local address", takeover);
    report("new holder → cut-off node gone (two holders)", yielded);
    println!("runs in which the address moved when the cut-off node rejoined: {moved_on_rejoin} of {runs}");
    for a in agents {
        a.child.terminate().await.ok();
    }
    ns.cleanup().await.ok();
}
