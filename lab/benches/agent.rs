//! Node-agent benchmark in the lab (not a test): create → address on the winner's interface, delete →
//! gone everywhere, graceful handover (SIGTERM winner → address on the new winner), abrupt loss (link
//! cut + SIGKILL → new winner), and agent restart with 1,000 addresses → kernel state converged.
//! Prints p50/p99. Run: `cargo build --release --bins && cargo bench -p purelb-lab --bench agent`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams};
use purelb_core::api::annotations;
use purelb_lab::{ControlPlane, Network, NetworkConfig, TestNamespace};
use support::{IngressSeen, agent_metric, report, status_mb};

/// Polls (every 1 ms, at most 60 s) until `done` holds for the nodes' addresses of `ip`.
async fn until(net: &Network, ip: &str, done: impl Fn(&[(String, String, u8)]) -> bool) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if done(&holders(net, ip).await) {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "{ip}: no convergence within 60 s");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn start_agents(lab: &ControlPlane, net: &Network) -> Vec<Agent> {
    let mut v = Vec::new();
    for n in ["node1", "node2", "node3"] {
        v.push(start_agent(lab, net, n, &["--log-format=text"]).await);
    }
    for a in &v {
        wait_agent_ready(a).await;
    }
    v
}

/// Whether to run `section` (latency, failover, restart): all unless BENCH_ONLY lists some.
fn wanted(section: &str) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |only| only.split(',').any(|s| s.trim() == section))
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let lab = ControlPlane::start().await.expect("lab");
    let _alloc = start_allocator(&lab, "bench-allocator", &["--log-format=text"], true).await;
    let net = Network::create(&lab, NetworkConfig { nodes: 3, ..Default::default() }).await.expect("network");
    let mut agents = start_agents(&lab, &net).await;
    let client = lab.admin_client().await.unwrap();
    let ns = TestNamespace::new(&client, "bench").await.unwrap();
    create_group(
        &client,
        ns.name(),
        &group("b-local", Some(("192.0.2.0/24", "192.0.2.200-192.0.2.220", "default")), None),
    )
    .await;
    create_group(
        &client,
        ns.name(),
        &group("b-routed", Some(("198.19.0.0/16", "198.19.0.0/16", "/32")), None),
    )
    .await;
    let api: Api<Service> = Api::namespaced(client.clone(), ns.name());

    // create → on the winner's eth0; delete → gone everywhere.
    if wanted("latency") {
        let (mut up, mut down, mut up_routed) = (Vec::new(), Vec::new(), Vec::new());
        // When a watch first showed each Service with an ingress: the allocator's share of `up`.
        let seen = IngressSeen::start(client.clone(), ns.name());
        let mut allocated = Vec::new();
        // Each Service is deleted before the next is created, so the allocator hands out the pool's first
        // address every time: polling the kernel for it directly keeps API polling out of the measurement.
        let (local_ip, routed_ip) = ("192.0.2.200", "198.19.0.0");
        for i in 0..rounds {
            let name = format!("local-{i}");
            let t0 = Instant::now();
            create(&api, &lb_service(&name, 80, &[(annotations::SERVICE_GROUP, "b-local")], "")).await;
            up.push(until(&net, local_ip, |h| h.len() == 1).await - t0);
            assert_eq!(ingress(&wait_ingress(&api, &name, 1).await), vec![local_ip.to_string()]);
            allocated.push(seen.when(&name).await - t0);
            let t0 = Instant::now();
            api.delete(&name, &DeleteParams::default()).await.unwrap();
            down.push(until(&net, local_ip, |h| h.is_empty()).await - t0);

            let name = format!("routed-{i}");
            let t0 = Instant::now();
            create(&api, &lb_service(&name, 80, &[(annotations::SERVICE_GROUP, "b-routed")], "")).await;
            up_routed.push(until(&net, routed_ip, |h| h.len() == 3).await - t0);
            assert_eq!(ingress(&wait_ingress(&api, &name, 1).await), vec![routed_ip.to_string()]);
            api.delete(&name, &DeleteParams::default()).await.unwrap();
            until(&net, routed_ip, |h| h.is_empty()).await;
        }
        report("agent/create->address on the winner's eth0 (local)", up);
        report("agent/  of which create->ingress seen by a watch (the allocator's part)", allocated);
        report("agent/delete->gone from every node (local)", down);
        report("agent/create->address on kube-lb0 of all 3 nodes (routed)", up_routed);
    }

    // Graceful handover and abrupt loss of the winner of one local address.
    if wanted("failover") {
        create(&api, &lb_service("ha", 80, &[(annotations::SERVICE_GROUP, "b-local")], "")).await;
        let ip = ingress(&wait_ingress(&api, "ha", 1).await)[0].clone();
        let (mut graceful, mut abrupt) = (Vec::new(), Vec::new());
        for round in 0..(rounds / 2).max(3) {
            until(&net, &ip, |h| h.len() == 1).await;
            let old = holders(&net, &ip).await[0].0.clone();
            let i = agents.iter().position(|a| a.node == old).unwrap();
            let cut = round % 2 == 1;
            let t0 = Instant::now();
            if cut {
                net.node(&old).unwrap().set_link(false).await.unwrap();
                agents[i].child.kill().unwrap();
            } else {
                agents[i].child.terminate().await.unwrap();
            }
            let t = until(&net, &ip, |h| h.iter().any(|(n, i, _)| *n != old && i == "eth0")).await - t0;
            if cut {
                abrupt.push(t);
                net.node(&old).unwrap().set_link(true).await.unwrap();
            } else {
                graceful.push(t);
            }
            agents[i] = start_agent(&lab, &net, &old, &["--log-format=text"]).await;
            wait_agent_ready(&agents[i]).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        report("agent/graceful handover (SIGTERM winner -> address on the new winner)", graceful);
        report("agent/abrupt loss (link cut + SIGKILL -> address on the new winner)", abrupt);
    }

    if !wanted("restart") {
        return;
    }
    // Restart with 1,000 routed addresses: withdrawn by SIGTERM, back on kube-lb0 after a new start.
    let n = 1000;
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                create(
                    &api,
                    &lb_service(&format!("many-{i}"), 80, &[(annotations::SERVICE_GROUP, "b-routed")], ""),
                )
                .await
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let node1 = net.node("node1").unwrap();
    // One `ip -o addr` of kube-lb0 per poll (a few ms even with 1,000 addresses), so that polling does not
    // compete with the agent for the CPU.
    let on_node1 = || async {
        let out = node1.command("ip").args(["-o", "-4", "addr", "show", "dev", "kube-lb0"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains(" 198.19.")).count()
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    while on_node1().await < n {
        assert!(Instant::now() < deadline, "1,000 addresses never all reached node1");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Memory holding them, once every agent's events have gone out (2 per second: up to 500 s).
    let quiet = Instant::now() + Duration::from_secs(600);
    while agents
        .iter()
        .zip(net.nodes())
        .any(|(a, node)| agent_metric(node, &a.admin, "purelb_agent_events_waiting").is_none_or(|w| w > 0.0))
    {
        assert!(Instant::now() < quiet, "the agents' events never drained");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let rss: Vec<String> =
        agents.iter().map(|a| format!("{:.1}", status_mb(a.child.pid(), "VmRSS"))).collect();
    println!(
        "agent/memory: VmRSS holding {n} routed Services (every agent announces each), per agent: {} MB",
        rss.join(" / ")
    );
    // The restarts' own bound (the drain above may take most of the first one).
    let deadline = Instant::now() + Duration::from_secs(300);
    // Three restarts: SIGTERM (everything withdrawn), then a new process until all are back.
    let mut restarts = Vec::new();
    for _ in 0..3 {
        agents[0].child.terminate().await.unwrap();
        assert_eq!(on_node1().await, 0, "SIGTERM withdraws everything");
        agents[0] = start_agent(&lab, &net, "node1", &["--log-format=text"]).await;
        // start_agent returns right after the spawn (its token and kubeconfig come first).
        let t0 = Instant::now();
        while on_node1().await < n {
            assert!(Instant::now() < deadline, "the restarted agent never converged");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        restarts.push(t0.elapsed());
        println!(
            "  restarted agent: VmRSS {:.1} MB holding {n} once converged",
            status_mb(agents[0].child.pid(), "VmRSS")
        );
        // Where the time went, from the restarted agent's own log: its start, its six initial lists, its
        // first address (text logs start with an RFC 3339 time).
        let log = std::fs::read_to_string(agents[0].child.log_path()).unwrap_or_default();
        for mark in ["starting", "every watch has listed", "added address", "first reconcile done"] {
            if let Some(line) = log.lines().map(strip_ansi).find(|l| l.contains(mark)) {
                let plain: String = line.chars().take(200).collect();
                println!("  restarted agent: {plain}");
            }
        }
        // Anything that went wrong on the way (a watch error retried, a failed step) explains an outlier.
        for line in
            log.lines().map(strip_ansi).filter(|l| l.contains(" WARN ") || l.contains(" ERROR ")).take(5)
        {
            let plain: String = line.chars().take(300).collect();
            println!("  restarted agent: {plain}");
        }
    }
    report(
        &format!(
            "agent/restart with {n} addresses: all back on kube-lb0 after the process started (start-up, initial lists, Lease included)"
        ),
        restarts,
    );
    for a in agents {
        a.child.terminate().await.ok();
    }
}

/// `line` without terminal colour sequences.
fn strip_ansi(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
