//! Allocator benchmark in the lab (not a test): create → ingress latency for Services created one after
//! another, and for a burst of 1,000 created 64 at a time (latency and throughput). Prints p50/p99.
//! Run: `cargo build --release --bins && cargo bench -p purelb-lab --bench allocator`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::api::Api;
use purelb_core::api::annotations;
use purelb_lab::{ControlPlane, TestNamespace};
use support::{IngressSeen, report};

/// The bench's Services take no node ports: the lab API server has only 2,768, and a burst may be larger.
const NO_NODE_PORTS: &str = "  allocateLoadBalancerNodePorts: false\n";

#[tokio::main]
async fn main() {
    let sequential: usize =
        std::env::var("BENCH_SEQUENTIAL").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let burst: usize = std::env::var("BENCH_BURST").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let lab = ControlPlane::start().await.expect("lab");
    let alloc = start_allocator(&lab, "bench", &["--log-format=text"], true).await;
    let client = lab.admin_client().await.unwrap();
    let ns = TestNamespace::new(&client, "bench").await.unwrap();
    // 198.19.0.0/16: the benchmarking range (RFC 2544); only ever an API value here, never a destination.
    let g = group("bench", Some(("198.19.0.0/16", "198.19.0.0/16", "/32")), None);
    create_group(&client, ns.name(), &g).await;
    let api: Api<Service> = Api::namespaced(client.clone(), ns.name());
    let seen = IngressSeen::start(client.clone(), ns.name());
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut lat = Vec::new();
    for i in 0..sequential {
        let name = format!("seq-{i}");
        let svc = lb_service(&name, 80, &[(annotations::SERVICE_GROUP, "bench")], NO_NODE_PORTS);
        let t0 = Instant::now();
        create(&api, &svc).await;
        lat.push(seen.when(&name).await - t0);
    }
    report(&format!("allocator/sequential create->ingress (x{sequential})"), lat);

    let names: Vec<String> = (0..burst).map(|i| format!("burst-{i}")).collect();
    let started: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let t0 = Instant::now();
    futures::stream::iter(names.clone())
        .map(|name| {
            let (api, started) = (api.clone(), started.clone());
            async move {
                let svc = lb_service(&name, 80, &[(annotations::SERVICE_GROUP, "bench")], NO_NODE_PORTS);
                started.lock().unwrap().insert(name, Instant::now());
                create(&api, &svc).await;
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    let created = t0.elapsed();
    seen.wait_all(&names).await;
    let total = t0.elapsed();
    let seen_map = seen.snapshot();
    let started = started.lock().unwrap().clone();
    let lat: Vec<Duration> = names.iter().map(|n| seen_map[n] - started[n]).collect();
    report(&format!("allocator/burst create->ingress (x{burst}, 64 in flight)"), lat);
    println!(
        "allocator/burst throughput: {burst} Services allocated in {:.2} s = {:.0} Services/s (creating them alone took {:.2} s)",
        total.as_secs_f64(),
        burst as f64 / total.as_secs_f64(),
        created.as_secs_f64()
    );

    // The allocator's own rate: 1,000 Services created while it is stopped, then allocated from a start.
    alloc.child.terminate().await.ok();
    let backlog: Vec<String> = (0..burst).map(|i| format!("backlog-{i}")).collect();
    futures::stream::iter(backlog.clone())
        .map(|name| {
            let api = api.clone();
            async move {
                create(&api, &lb_service(&name, 80, &[(annotations::SERVICE_GROUP, "bench")], NO_NODE_PORTS))
                    .await
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    let t0 = Instant::now();
    let alloc = start_allocator(&lab, "bench-2", &["--log-format=text"], false).await;
    seen.wait_all(&backlog).await;
    let total = t0.elapsed();
    println!(
        "allocator/backlog: {burst} pending Services allocated {:.2} s after the allocator started = {:.0} Services/s (start-up, index rebuild of {} Services and leader election included)",
        total.as_secs_f64(),
        burst as f64 / total.as_secs_f64(),
        sequential + burst
    );
    // CPU the allocator itself used for the backlog (utime + stime, in clock ticks of 10 ms).
    let cpu = std::fs::read_to_string(format!("/proc/{}/stat", alloc.child.pid()))
        .ok()
        .and_then(|s| {
            let f: Vec<u64> =
                s.rsplit_once(')')?.1.split_whitespace().filter_map(|x| x.parse().ok()).collect();
            Some((f.get(10)? + f.get(11)?) * 10)
        })
        .unwrap_or_default();
    println!(
        "allocator/backlog cpu: the allocator used {cpu} ms of CPU for {burst} Services ({:.2} ms each); the rest is the API server",
        cpu as f64 / burst as f64
    );
    let status = |field: &str| {
        std::fs::read_to_string(format!("/proc/{}/status", alloc.child.pid()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(field))
                    .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
            })
            .unwrap_or_default()
    };
    // The sequential ones, the burst and the backlog.
    let holding = sequential + 2 * burst;
    println!("allocator/memory: VmRSS {} kB holding {holding} Services", status("VmRSS"));
    // Once the backlog's writes and events are out: what holding them costs, and the peak on the way.
    tokio::time::sleep(Duration::from_secs(15)).await;
    println!(
        "allocator/memory: 15 s later VmRSS {} kB holding {holding} Services (peak VmHWM {} kB; of the RSS, {} kB anonymous, {} kB the executable's and other files' pages)",
        status("VmRSS"),
        status("VmHWM"),
        status("RssAnon"),
        status("RssFile")
    );
    alloc.child.terminate().await.ok();
}
