//! Side-by-side allocator benchmark in the lab (not a test): purelb-rs's allocator against MetalLB's
//! controller (v0.15.3, built by `lab/metallb/build.sh`) on the same lab API server, in the same run,
//! driven by one client harness. Rounds alternate purelb-rs, MetalLB, purelb-rs, MetalLB; each allocator
//! runs alone while measured (the other is stopped) and every section has a fresh namespace:
//! (a) Services created one after another, create → ingress p50/p90/p99/max;
//! (b) a burst created 64 at a time: time to all allocated, create → ingress p50/p99, CPU and peak RSS;
//! (c) a backlog created while the allocator is stopped: time from its start to all allocated, CPU and
//!     peak RSS (start-up included); then RSS holding the backlog and holding `BENCH_HOLD` Services;
//! (e) the allocator's API requests per Service by verb and resource, from the API server's own
//!     `apiserver_request_total`.
//! Prints each round, then medians over the rounds and the ratio purelb-rs / MetalLB per figure.
//! Run: `cargo build --release --bins && cargo bench -p purelb-lab --bench side_by_side`.
//! Knobs: BENCH_ROUNDS (2), BENCH_SEQUENTIAL (200), BENCH_BURST (1000), BENCH_HOLD (10000), BENCH_ONLY
//! (`purelb-rs` or `MetalLB`: that one alone, e.g. while working on one figure; no ratios then).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, ListParams};
use purelb_core::api::{LOAD_BALANCER_CLASS, annotations};
use purelb_lab::{Child, ControlPlane, TestNamespace, wait_for};
use support::{IngressSeen, Requests, cpu_seconds, delta, knob, percentile, request_totals, status_mb};

/// MetalLB's namespace, as its manifests install it.
const METALLB_NS: &str = "metallb-system";
/// The class MetalLB is started with (`--lb-class`), so that neither allocator sees the other's Services.
const METALLB_CLASS: &str = "metallb.io/metallb";
/// 198.19.0.0/16: the benchmarking range (RFC 2544); only ever an API value here, never a destination.
const POOL: &str = "198.19.0.0/16";
/// Creates in flight for bursts, backlogs and the hold.
const IN_FLIGHT: usize = 64;
/// How long the allocators get to allocate everything of one section.
const ALLOCATED_TIMEOUT: Duration = Duration::from_secs(900);
/// Quiet time before reading a resident set (lets a Go GC cycle or a flush of writes finish).
const SETTLE: Duration = Duration::from_secs(2);

// === impl Contender ===

/// One of the two allocators: how to start it and what its Services look like.
#[derive(Clone, Copy, PartialEq)]
enum Contender {
    PurelbRs,
    MetalLb,
}

/// What starting a contender needs, prepared once.
struct Setup {
    purelb_kubeconfig: PathBuf,
    metallb_kubeconfig: PathBuf,
    metallb_dir: PathBuf,
}

impl Contender {
    fn name(self) -> &'static str {
        match self {
            Contender::PurelbRs => "purelb-rs",
            Contender::MetalLb => "MetalLB",
        }
    }

    /// A LoadBalancer Service only this contender acts on. Without node ports: the default range has
    /// 2,768 of them, fewer than the Services the bench holds.
    fn service(self, name: &str) -> Service {
        let (annotations, class): (&[(&str, &str)], &str) = match self {
            Contender::PurelbRs => (&[(annotations::SERVICE_GROUP, "bench")], LOAD_BALANCER_CLASS),
            Contender::MetalLb => (&[], METALLB_CLASS),
        };
        let spec = format!("  loadBalancerClass: {class}\n  allocateLoadBalancerNodePorts: false\n");
        lb_service(name, 80, annotations, &spec)
    }

    /// Starts the allocator as its own ServiceAccount, with the settings its manifests ship (purelb-rs:
    /// leader election with the default Lease timings, one identity across restarts so it takes its
    /// released Lease at once; MetalLB: webhooks and certificate rotation off, no memberlist secret,
    /// which only its speakers read).
    fn start(self, lab: &ControlPlane, setup: &Setup) -> Child {
        let port = free_port();
        match self {
            Contender::PurelbRs => {
                let args: Vec<String> = vec![
                    format!("--namespace={NS}"),
                    "--identity=side-by-side".into(),
                    format!("--admin-addr=127.0.0.1:{port}"),
                    "--ignore-classless".into(),
                ];
                let bin = purelb_lab::binary("purelb-allocator").expect("purelb-allocator binary");
                lab.spawn(&bin, &args, &setup.purelb_kubeconfig, "purelb-allocator").expect("spawn allocator")
            }
            Contender::MetalLb => {
                let args: Vec<String> = vec![
                    format!("--namespace={METALLB_NS}"),
                    format!("--port={port}"),
                    "--log-level=info".into(),
                    "--webhook-mode=disabled".into(),
                    "--disable-cert-rotation".into(),
                    format!("--lb-class={METALLB_CLASS}"),
                ];
                lab.spawn(
                    &setup.metallb_dir.join("controller"),
                    &args,
                    &setup.metallb_kubeconfig,
                    "metallb-controller",
                )
                .expect("spawn MetalLB's controller")
            }
        }
    }
}

/// Installs both: purelb-rs from deploy/ plus a ServiceGroup `bench`, MetalLB's CRDs (config/crd/bases),
/// namespace, the controller's ServiceAccount and RBAC from its release manifest, and an IPAddressPool.
async fn install_both(lab: &ControlPlane, client: &kube::Client) -> Setup {
    install(lab).await;
    create_group(client, NS, &group("bench", Some((POOL, POOL, "/32")), None)).await;
    let purelb_kubeconfig =
        lab.service_account_kubeconfig(NS, "purelb-allocator").await.expect("allocator token");

    let root = purelb_lab::workspace_root();
    let out = std::process::Command::new("bash")
        .arg(root.join("lab/metallb/build.sh"))
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("running lab/metallb/build.sh");
    assert!(out.status.success(), "lab/metallb/build.sh failed (it needs Go and the Go module proxy once)");
    let metallb_dir = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    for entry in std::fs::read_dir(metallb_dir.join("crds")).unwrap() {
        lab.apply_file(&entry.unwrap().path()).await.expect("applying MetalLB's CRDs");
    }
    lab.apply_yaml(
        &format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {METALLB_NS}\n"),
        "metallb-ns",
    )
    .await
    .unwrap();
    // The controller's ServiceAccount, Role, ClusterRole and their bindings, as MetalLB releases them.
    let manifest = std::fs::read_to_string(metallb_dir.join("metallb-native.yaml")).unwrap();
    let wanted = [
        ("ServiceAccount", "controller"),
        ("Role", "controller"),
        ("RoleBinding", "controller"),
        ("ClusterRole", "metallb-system:controller"),
        ("ClusterRoleBinding", "metallb-system:controller"),
    ];
    let rbac: Vec<&str> = manifest
        .split("\n---\n")
        .filter(|doc| {
            let v: serde_json::Value = serde_saphyr::from_str(doc).unwrap_or_default();
            let (kind, name) =
                (v["kind"].as_str().unwrap_or(""), v["metadata"]["name"].as_str().unwrap_or(""));
            wanted.contains(&(kind, name))
        })
        .collect();
    assert_eq!(
        rbac.len(),
        wanted.len(),
        "MetalLB's manifest no longer holds the controller's RBAC as expected"
    );
    lab.apply_yaml(&rbac.join("\n---\n"), "metallb-native.yaml (controller RBAC)").await.unwrap();
    // The CRD is established a moment after it is created.
    let pool = format!(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: bench\n  namespace: {METALLB_NS}\nspec:\n  addresses:\n  - {POOL}\n"
    );
    wait_for("MetalLB's IPAddressPool accepted", Duration::from_secs(60), || {
        let pool = pool.clone();
        async move { lab.apply_yaml(&pool, "ipaddresspool").await.map_err(|e| e.to_string()) }
    })
    .await
    .unwrap();
    let metallb_kubeconfig =
        lab.service_account_kubeconfig(METALLB_NS, "controller").await.expect("MetalLB controller token");
    Setup { purelb_kubeconfig, metallb_kubeconfig, metallb_dir }
}

// === API request accounting ===

/// What the lab does without any allocator: kube-controller-manager's own traffic per second, and the
/// requests the harness (and the API server on its behalf, e.g. ClusterIP bookkeeping) makes per
/// Service it creates.
#[derive(Default)]
struct Baseline {
    per_second: Requests,
    per_created: Requests,
}

impl Baseline {
    /// The allocator's own requests in a window of `secs` during which the harness created `created`
    /// Services, per Service of the section (`per`): the window's delta less the background and less the
    /// harness's creates.
    fn allocator_per_service(&self, window: &Requests, secs: f64, created: usize, per: usize) -> Requests {
        window
            .iter()
            .filter_map(|(k, v)| {
                let bg = self.per_second.get(k).copied().unwrap_or(0.0) * secs;
                let harness = self.per_created.get(k).copied().unwrap_or(0.0) * created as f64;
                let own = (v - bg - harness) / per as f64;
                (own >= 0.005).then(|| (k.clone(), own))
            })
            .collect()
    }
}

// === the harness ===

/// Figures of one contender in one round, in the order they were measured.
#[derive(Default)]
struct Figures(Vec<(String, f64)>);

impl Figures {
    fn put(&mut self, name: impl Into<String>, value: f64) {
        let name = name.into();
        println!("  {name}: {value:.3}");
        self.0.push((name, value));
    }

    /// The section's requests per Service, in total, writes only (every verb but GET, LIST and WATCH),
    /// and by verb and resource.
    fn api(&mut self, section: &str, per_service: &Requests) {
        let read = |k: &str| ["GET ", "LIST ", "WATCH "].iter().any(|v| k.starts_with(v));
        self.put(format!("{section} API requests per Service"), per_service.values().sum());
        let writes = per_service.iter().filter(|(k, _)| !read(k)).map(|(_, v)| v).sum();
        self.put(format!("{section} API writes per Service"), writes);
        for (k, v) in per_service {
            self.put(format!("{section} API {k} per Service"), *v);
        }
    }
}

/// Creates `names` with [`IN_FLIGHT`] creates in flight and returns when each create was sent.
async fn create_all(api: &Api<Service>, who: Contender, names: &[String]) -> HashMap<String, Instant> {
    let started: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    futures::stream::iter(names.to_vec())
        .map(|name| {
            let (api, started) = (api.clone(), started.clone());
            async move {
                let svc = who.service(&name);
                started.lock().unwrap().insert(name, Instant::now());
                create(&api, &svc).await;
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<_>>()
        .await;
    Arc::try_unwrap(started).unwrap().into_inner().unwrap()
}

/// Waits until every one of `names` was seen with an ingress and returns when the last one was. Polls
/// slowly (the watch task records the instants) so that the harness leaves the CPU to the allocator.
async fn all_allocated(seen: &IngressSeen, names: &[String]) -> HashMap<String, Instant> {
    let deadline = Instant::now() + ALLOCATED_TIMEOUT;
    loop {
        let snap = seen.snapshot();
        let missing = names.iter().filter(|n| !snap.contains_key(*n)).count();
        if missing == 0 {
            return snap;
        }
        assert!(Instant::now() < deadline, "{missing} of {} Services got no address in time", names.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn last(seen: &HashMap<String, Instant>, names: &[String]) -> Instant {
    names.iter().map(|n| seen[n]).max().unwrap()
}

/// Starts `who` and waits until it allocated a probe Service in `ns` (both allocators alike: ready means
/// it acts).
async fn start_ready(
    lab: &ControlPlane,
    setup: &Setup,
    who: Contender,
    api: &Api<Service>,
    seen: &IngressSeen,
) -> Child {
    let t0 = Instant::now();
    let child = who.start(lab, setup);
    create(api, &who.service("ready-probe")).await;
    let probe = ["ready-probe".to_string()];
    let deadline = Instant::now() + Duration::from_secs(120);
    while !seen.snapshot().contains_key("ready-probe") {
        assert!(
            child.is_running() && Instant::now() < deadline,
            "{} allocated no probe Service\n--- its log ---\n{}",
            who.name(),
            child.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "  ({} allocated its probe Service {:.2} s after its start)",
        who.name(),
        (last(&seen.snapshot(), &probe) - t0).as_secs_f64()
    );
    child
}

/// Deletes every Service of `ns` (the allocator is stopped by now) and the namespace.
async fn cleanup(client: &kube::Client, ns: TestNamespace) {
    let api: Api<Service> = Api::namespaced(client.clone(), ns.name());
    let now = DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::background() };
    if api.delete_collection(&now, &ListParams::default()).await.is_err() {
        let names: Vec<String> = api
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|s| s.metadata.name)
            .collect();
        futures::stream::iter(names)
            .map(|n| {
                let api = api.clone();
                async move { api.delete(&n, &DeleteParams::background()).await.ok() }
            })
            .buffer_unordered(IN_FLIGHT)
            .collect::<Vec<_>>()
            .await;
    }
    let name = ns.name().to_string();
    let cleaned = ns.cleanup().await;
    if let Err(e) = cleaned {
        println!("  (cleanup of {name}: {e}; waiting on)");
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        wait_for("namespace gone", Duration::from_secs(600), || {
            let (namespaces, name) = (namespaces.clone(), name.clone());
            async move {
                namespaces.get_opt(&name).await.ok().flatten().is_none().then_some(()).ok_or("still there")
            }
        })
        .await
        .unwrap();
    }
    settle_api(client).await;
}

/// Waits (at most 60 s) until kube-controller-manager is done reacting to a cleanup (it deletes the
/// Endpoints of every deleted Service), so that its requests do not land in the next measured window:
/// until one second passes with at most a few resource requests besides its Lease renewals.
async fn settle_api(client: &kube::Client) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut before = request_totals(client).await;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = request_totals(client).await;
        let busy: f64 =
            delta(&after, &before).iter().filter(|(k, _)| !k.contains(" leases.")).map(|(_, v)| v).sum();
        if busy <= 3.0 {
            return;
        }
        before = after;
    }
}

struct Knobs {
    sequential: usize,
    burst: usize,
    hold: usize,
}

/// One contender's turn: (c) backlog and hold, (a) sequential, (b) burst, each with its own namespace
/// and a fresh process. Measures the harness's own per-create requests while the allocator is stopped.
async fn turn(
    lab: &ControlPlane,
    setup: &Setup,
    client: &kube::Client,
    who: Contender,
    k: &Knobs,
    base: &mut Baseline,
) -> Figures {
    let mut fig = Figures::default();
    println!("--- {} ---", who.name());

    // (c) A backlog created while the allocator is stopped, then allocated from its start.
    let ns = TestNamespace::new(client, "sbs-c").await.unwrap();
    let api: Api<Service> = Api::namespaced(client.clone(), ns.name());
    let seen = IngressSeen::start(client.clone(), ns.name());
    let backlog: Vec<String> = (0..k.burst).map(|i| format!("backlog-{i}")).collect();
    let (r0, t0) = (request_totals(client).await, Instant::now());
    create_all(&api, who, &backlog).await;
    let (r1, secs) = (request_totals(client).await, t0.elapsed().as_secs_f64());
    let control = delta(&r1, &r0);
    base.per_created = control
        .iter()
        .map(|(key, v)| {
            (key.clone(), (v - base.per_second.get(key).copied().unwrap_or(0.0) * secs) / k.burst as f64)
        })
        .collect();
    tokio::time::sleep(SETTLE).await;
    let r0 = request_totals(client).await;
    let t0 = Instant::now();
    let child = who.start(lab, setup);
    let snap = all_allocated(&seen, &backlog).await;
    let took = last(&snap, &backlog) - t0;
    let (cpu, hwm) = (cpu_seconds(child.pid()), status_mb(child.pid(), "VmHWM"));
    let window = delta(&request_totals(client).await, &r0);
    fig.put("(c) backlog: start -> all allocated, s", took.as_secs_f64());
    fig.put("(c) backlog: CPU s (start-up included)", cpu);
    fig.put("(c) backlog: peak RSS MB", hwm);
    fig.api("(c)", &base.allocator_per_service(&window, t0.elapsed().as_secs_f64(), 0, k.burst));
    tokio::time::sleep(SETTLE).await;
    fig.put(format!("RSS MB holding {}", k.burst), status_mb(child.pid(), "VmRSS"));
    if k.hold > k.burst {
        let more: Vec<String> = (k.burst..k.hold).map(|i| format!("hold-{i}")).collect();
        let t0 = Instant::now();
        create_all(&api, who, &more).await;
        let snap = all_allocated(&seen, &more).await;
        println!("  ({} more allocated in {:.1} s)", more.len(), (last(&snap, &more) - t0).as_secs_f64());
        tokio::time::sleep(SETTLE).await;
        fig.put(format!("RSS MB holding {}", k.hold), status_mb(child.pid(), "VmRSS"));
    }
    child.terminate().await.ok();
    drop(seen);
    cleanup(client, ns).await;

    // (a) One after another.
    let ns = TestNamespace::new(client, "sbs-a").await.unwrap();
    let api: Api<Service> = Api::namespaced(client.clone(), ns.name());
    let seen = IngressSeen::start(client.clone(), ns.name());
    let child = start_ready(lab, setup, who, &api, &seen).await;
    let mut lat = Vec::new();
    let (r0, t0) = (request_totals(client).await, Instant::now());
    for i in 0..k.sequential {
        let name = format!("seq-{i}");
        let sent = Instant::now();
        create(&api, &who.service(&name)).await;
        lat.push(seen.when(&name).await - sent);
    }
    let window = delta(&request_totals(client).await, &r0);
    lat.sort();
    for (label, p) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)] {
        fig.put(format!("(a) sequential create -> ingress {label} ms"), percentile(&lat, p));
    }
    fig.api(
        "(a)",
        &base.allocator_per_service(&window, t0.elapsed().as_secs_f64(), k.sequential, k.sequential),
    );
    child.terminate().await.ok();
    drop(seen);
    cleanup(client, ns).await;

    // (b) A burst, IN_FLIGHT creates at a time.
    let ns = TestNamespace::new(client, "sbs-b").await.unwrap();
    let api: Api<Service> = Api::namespaced(client.clone(), ns.name());
    let seen = IngressSeen::start(client.clone(), ns.name());
    let child = start_ready(lab, setup, who, &api, &seen).await;
    let names: Vec<String> = (0..k.burst).map(|i| format!("burst-{i}")).collect();
    let cpu0 = cpu_seconds(child.pid());
    let (r0, t0) = (request_totals(client).await, Instant::now());
    let started = create_all(&api, who, &names).await;
    let created = t0.elapsed();
    let snap = all_allocated(&seen, &names).await;
    let took = last(&snap, &names) - t0;
    let cpu = cpu_seconds(child.pid()) - cpu0;
    let window = delta(&request_totals(client).await, &r0);
    let mut lat: Vec<Duration> = names.iter().map(|n| snap[n] - started[n]).collect();
    lat.sort();
    fig.put("(b) burst: all allocated, s", took.as_secs_f64());
    fig.put("(b) burst: creating alone took, s", created.as_secs_f64());
    fig.put("(b) burst create -> ingress p50 ms", percentile(&lat, 0.5));
    fig.put("(b) burst create -> ingress p99 ms", percentile(&lat, 0.99));
    fig.put("(b) burst: CPU s", cpu);
    fig.put("(b) burst: peak RSS MB (since start)", status_mb(child.pid(), "VmHWM"));
    fig.api("(b)", &base.allocator_per_service(&window, t0.elapsed().as_secs_f64(), k.burst, k.burst));
    child.terminate().await.ok();
    drop(seen);
    cleanup(client, ns).await;
    fig
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

#[tokio::main]
async fn main() {
    let rounds = knob("BENCH_ROUNDS", 2);
    let k = Knobs {
        sequential: knob("BENCH_SEQUENTIAL", 200),
        burst: knob("BENCH_BURST", 1000),
        hold: knob("BENCH_HOLD", 10_000),
    };
    let lab = ControlPlane::start().await.expect("lab");
    let client = lab.admin_client().await.unwrap();
    let setup = install_both(&lab, &client).await;

    // kube-controller-manager's own traffic, with neither allocator running.
    let mut base = Baseline::default();
    let (r0, t0) = (request_totals(&client).await, Instant::now());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let secs = t0.elapsed().as_secs_f64();
    base.per_second =
        delta(&request_totals(&client).await, &r0).into_iter().map(|(k, v)| (k, v / secs)).collect();

    println!(
        "side_by_side: {rounds} rounds; sequential {}, burst {}, backlog {}, hold {}; pool {POOL}; purelb-rs as ServiceAccount {NS}/purelb-allocator (deploy/ RBAC), MetalLB v0.15.3 as {METALLB_NS}/controller (its release RBAC), webhooks off, --lb-class={METALLB_CLASS}",
        k.sequential, k.burst, k.burst, k.hold
    );
    let mut all: HashMap<&str, Vec<Figures>> = HashMap::new();
    for round in 1..=rounds {
        for who in [Contender::PurelbRs, Contender::MetalLb] {
            if std::env::var("BENCH_ONLY").is_ok_and(|only| !only.eq_ignore_ascii_case(who.name())) {
                continue;
            }
            println!("=== round {round}/{rounds}: {} ===", who.name());
            let fig = turn(&lab, &setup, &client, who, &k, &mut base).await;
            all.entry(who.name()).or_default().push(fig);
        }
    }

    // Figures in the order of the first round of either, medians over rounds (0 where a round lacked one).
    let mut order: Vec<String> = Vec::new();
    for who in ["purelb-rs", "MetalLB"] {
        for f in all.get(who).into_iter().flatten() {
            for (name, _) in &f.0 {
                if !order.contains(name) {
                    order.push(name.clone());
                }
            }
        }
    }
    // Each section's API lines after its other figures, whichever allocator showed them first.
    let section = |name: &str| name.split(' ').next().unwrap_or("").to_string();
    let sections: Vec<String> = order.iter().map(|n| section(n)).fold(Vec::new(), |mut v, s| {
        if !v.contains(&s) {
            v.push(s);
        }
        v
    });
    order.sort_by_key(|n| {
        // Non-API figures in the order measured, then the totals, then verb by verb.
        let rank = match (n.contains(" API "), n.contains(" API requests ") || n.contains(" API writes ")) {
            (false, _) => 0,
            (true, true) => 1,
            (true, false) => 2,
        };
        let name = if rank == 2 { n.clone() } else { String::new() };
        (sections.iter().position(|s| *s == section(n)).unwrap_or(0), rank, name)
    });
    let med = |who: &str, name: &str| -> f64 {
        median(
            all.get(who)
                .into_iter()
                .flatten()
                .map(|f| f.0.iter().find(|(n, _)| n == name).map(|(_, v)| *v).unwrap_or(0.0))
                .collect(),
        )
    };
    println!();
    println!(
        "side_by_side: medians over {rounds} rounds (ratio = purelb-rs / MetalLB; below 1 is purelb-rs ahead)"
    );
    println!("{:<76} {:>10} {:>10} {:>6}", "figure", "purelb-rs", "MetalLB", "ratio");
    for name in &order {
        let (a, b) = (med("purelb-rs", name), med("MetalLB", name));
        let ratio = if b > 0.0 { format!("{:.2}", a / b) } else { "n/a".into() };
        println!("{name:<76} {a:>10.3} {b:>10.3} {ratio:>6}");
    }
    println!(
        "API requests: apiserver_request_total deltas over each measured window, less kube-controller-manager's background rate (measured for {secs:.0} s with neither allocator running) and, for windows in which the harness created Services, less the harness's own per-create requests (measured while creating the backlog with the allocator stopped); watches count when they end; entries under 0.005 per Service are left out"
    );
}
