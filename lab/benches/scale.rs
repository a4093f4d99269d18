//! Scale benchmark in the lab (not a test): a network of `SCALE_NODES` nodes (100) without BGP, an agent
//! on every node, the allocator, and `SCALE_SERVICES` Services (10,000) of three kinds: local (one
//! elected node's eth0), routed with `externalTrafficPolicy: Cluster` (kube-lb0 of every node) and routed
//! with `Local` (kube-lb0 of the nodes in its EndpointSlice, two per Service), 3 : 5 : 2, none with node
//! ports (`allocateLoadBalancerNodePorts: false`: the API server has only 2,768). Mostly IPv6 (a /24 LAN has
//! room for few local IPv4 addresses), with an IPv4 share of each kind.
//!
//! Measures, in order:
//! - building the network and starting the agents (time; memory the machine gave them);
//! - steady-state API writes per node per second with no Service, and the agents' idle CPU;
//! - a burst of every Service (64 creates in flight): all created, all allocated, every address on
//!   exactly the right nodes and interfaces and nowhere else (converged), agent CPU per Service event;
//! - holding them: agent RSS (min/median/max), the allocator's and the API server's; API writes per node
//!   per second;
//! - one change at a time: a new routed Service (→ on every node), an ETP Local Service's endpoint moved
//!   to another node (→ off the old node, on the new one); time to converge and the agents' CPU per change;
//! - abrupt loss of the node holding most local addresses (link cut + SIGKILL) → each of its local
//!   addresses on exactly one other node;
//! - agent restart on a node holding every routed address: SIGTERM (everything withdrawn), then a new
//!   process → kube-lb0 whole again, from the process's start.
//!
//! Correctness is checked, not timed: the bench fails when the data plane never matches the expectation
//! within its bound. Run: `cargo build --release --bins && cargo bench -p purelb-lab --bench scale`.
//! Knobs: SCALE_NODES (100), SCALE_SERVICES (10000), SCALE_CHANGES (10), SCALE_QUIET_SECS (30).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use purelb_core::api::annotations;
use purelb_lab::{ControlPlane, KUBE_LB0, LAN_INTERFACE, Network, NetworkConfig, TestNamespace};
use support::{
    IngressSeen, Requests, agent_metric, cpu_seconds, delta, knob, percentile, request_totals, status_mb,
};

/// Creates in flight in the burst.
const IN_FLIGHT: usize = 64;
/// How long the data plane gets to match the expectation after a step.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(900);
/// The IPv4 share: local addresses (192.0.2.200-239, 40) and routed ones (203.0.113.0/24, 200 of 256).
const LOCAL_V4: usize = 40;
const ROUTED_V4: usize = 200;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Local,
    Routed,
    RoutedEtpLocal,
}

/// One Service of the bench: what it is and where its address must be.
#[derive(Clone, Debug)]
struct Planned {
    name: String,
    kind: Kind,
    v6: bool,
    /// For [`Kind::RoutedEtpLocal`]: the nodes (indices into the network's nodes) with an endpoint.
    endpoints: Vec<usize>,
}

/// Where an address must be: exactly one node's eth0 (any node), every node's kube-lb0, or exactly these
/// nodes' kube-lb0.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Want {
    OneLan,
    Every,
    Exactly(BTreeSet<usize>),
}

fn plan(services: usize, nodes: usize) -> Vec<Planned> {
    let (mut local_v4, mut routed_v4) = (0, 0);
    (0..services)
        .map(|i| {
            // 3 local : 5 routed : 2 routed ETP Local (each of those takes one of the 2,768 node ports
            // for its health check).
            let kind = match i % 10 {
                0..=2 => Kind::Local,
                3..=7 => Kind::Routed,
                _ => Kind::RoutedEtpLocal,
            };
            let v6 = match kind {
                Kind::Local if local_v4 < LOCAL_V4 => {
                    local_v4 += 1;
                    false
                }
                Kind::Routed | Kind::RoutedEtpLocal if routed_v4 < ROUTED_V4 => {
                    routed_v4 += 1;
                    false
                }
                _ => true,
            };
            let endpoints = if kind == Kind::RoutedEtpLocal {
                let a = (i * 7) % nodes;
                BTreeSet::from([a, (a + 1 + i % 3) % nodes]).into_iter().collect()
            } else {
                Vec::new()
            };
            Planned { name: format!("s{i}"), kind, v6, endpoints }
        })
        .collect()
}

fn service_of(p: &Planned) -> Service {
    let group = if p.kind == Kind::Local { "scale-local" } else { "scale-routed" };
    // No node ports: the API server has 2,768 of them (30000-32767), and an address on a node is
    // what this bench measures.
    let mut extra = "  allocateLoadBalancerNodePorts: false\n".to_string();
    if p.v6 {
        extra += "  ipFamilyPolicy: SingleStack\n  ipFamilies: [IPv6]\n";
    }
    if p.kind == Kind::RoutedEtpLocal {
        extra += "  externalTrafficPolicy: Local\n";
    }
    lb_service(&p.name, 80, &[(annotations::SERVICE_GROUP, group)], &extra)
}

/// The EndpointSlice of an ETP Local Service: one ready endpoint on each of `nodes`. Pod addresses are
/// API data only (nothing is ever sent to them).
fn slice_of(p: &Planned, net: &Network, nodes: &[usize]) -> EndpointSlice {
    let family = if p.v6 { "IPv6" } else { "IPv4" };
    let mut text = format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {}-scale\n  labels:\n    kubernetes.io/service-name: {}\naddressType: {family}\nports:\n- port: 8080\n  protocol: TCP\nendpoints:\n",
        p.name, p.name
    );
    for (k, n) in nodes.iter().enumerate() {
        let address =
            if p.v6 { format!("2001:db8:300::{:x}", k + 1) } else { format!("198.51.100.{}", k + 1) };
        text += &format!(
            "- addresses: ['{address}']\n  nodeName: {}\n  conditions:\n    ready: true\n",
            net.nodes()[*n].name()
        );
    }
    yaml(&text)
}

/// Every node's Service addresses (those in `watched`): address → (node index, interface, prefix).
async fn placements(
    net: &Network,
    watched: &HashMap<IpAddr, Want>,
) -> HashMap<IpAddr, Vec<(usize, String, u8)>> {
    let all = futures::future::join_all(net.nodes().iter().map(|n| n.all_placements())).await;
    let mut out: HashMap<IpAddr, Vec<(usize, String, u8)>> = HashMap::new();
    for (i, found) in all.into_iter().enumerate() {
        for (interface, ip, prefix) in found.expect("node addresses") {
            if watched.contains_key(&ip) {
                out.entry(ip).or_default().push((i, interface, prefix));
            }
        }
    }
    out
}

/// How `found` differs from `want`: the number of addresses not where they must be, and one example.
fn mismatches(
    want: &HashMap<IpAddr, Want>,
    found: &HashMap<IpAddr, Vec<(usize, String, u8)>>,
    nodes: usize,
) -> (usize, String) {
    let mut bad = 0;
    let mut example = String::new();
    for (ip, w) in want {
        let at = found.get(ip).map(Vec::as_slice).unwrap_or(&[]);
        let ok = match w {
            Want::OneLan => at.len() == 1 && at[0].1 == LAN_INTERFACE,
            Want::Every => {
                at.len() == nodes
                    && at.iter().all(|(_, i, _)| i == KUBE_LB0)
                    && at.iter().map(|(n, _, _)| *n).collect::<BTreeSet<_>>().len() == nodes
            }
            Want::Exactly(set) => {
                at.iter().all(|(_, i, _)| i == KUBE_LB0)
                    && at.len() == set.len()
                    && at.iter().map(|(n, _, _)| *n).collect::<BTreeSet<_>>() == *set
            }
        };
        if !ok {
            bad += 1;
            if example.is_empty() {
                example = format!("{ip}: want {w:?}, on {at:?}");
            }
        }
    }
    (bad, example)
}

/// Polls until every address in `want` is exactly where it must be; returns when it first was, and the
/// longest single poll (the resolution of that time).
async fn converge(net: &Network, want: &HashMap<IpAddr, Want>, what: &str) -> (Instant, Duration) {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    let mut longest = Duration::ZERO;
    let mut last_report = Instant::now();
    loop {
        let t = Instant::now();
        let found = placements(net, want).await;
        longest = longest.max(t.elapsed());
        let (bad, example) = mismatches(want, &found, net.nodes().len());
        if bad == 0 {
            return (t, longest);
        }
        if last_report.elapsed() > Duration::from_secs(15) {
            println!("  … {what}: {bad} of {} addresses not yet right (e.g. {example})", want.len());
            last_report = Instant::now();
        }
        assert!(Instant::now() < deadline, "{what}: {bad} addresses never converged, e.g. {example}");
        // A few addresses: poll often, for the time of one change; many: leave the CPU to the agents.
        let pause = if want.len() <= 16 { 5 } else { 100 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// Writes (every verb but GET, LIST and WATCH) in `window`.
fn writes(window: &Requests) -> f64 {
    window.iter().filter(|(k, _)| !is_read(k)).map(|(_, v)| v).sum()
}

/// Whether a "VERB resource" key of [`Requests`] is a read.
fn is_read(key: &str) -> bool {
    ["GET ", "LIST ", "WATCH "].iter().any(|v| key.starts_with(v))
}

/// Counts API requests over `secs` of quiet: (writes per second, the window's writes by verb/resource).
async fn quiet_writes(client: &kube::Client, secs: u64) -> (f64, Vec<(String, f64)>) {
    let before = request_totals(client).await;
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let window = delta(&request_totals(client).await, &before);
    let by: Vec<(String, f64)> =
        window.iter().filter(|(k, v)| !is_read(k) && **v > 0.0).map(|(k, v)| (k.clone(), *v)).collect();
    (writes(&window) / secs as f64, by)
}

fn agents_cpu(agents: &[Agent]) -> f64 {
    agents.iter().map(|a| cpu_seconds(a.child.pid())).sum()
}

/// (min, median, max) of the agents' `field` (VmRSS, VmHWM) in MB.
fn agents_mb(agents: &[Agent], field: &str) -> (f64, f64, f64) {
    let mut v: Vec<f64> = agents.iter().map(|a| status_mb(a.child.pid(), field)).collect();
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

fn mem_available_mb() -> f64 {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kb: f64 = info
        .lines()
        .find(|l| l.starts_with("MemAvailable:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

fn figure(name: &str, value: impl std::fmt::Display) {
    println!("scale/{name}: {value}");
}

/// Prints the lines of an agent's log tail that contain any of `needles`, to say where a figure's time
/// went (the log lines carry their wall-clock time; `began` is the step's).
fn show_log(what: &str, began: k8s_openapi::jiff::Timestamp, log: &str, needles: &[&str]) {
    println!("scale/log {what}: step began {began}");
    for line in log.lines().filter(|l| needles.iter().any(|n| l.contains(n))).take(40) {
        println!("scale/log {what}: {line}");
    }
}

#[tokio::main]
async fn main() {
    let nodes = knob("SCALE_NODES", 100);
    let services = knob("SCALE_SERVICES", 10_000);
    let changes = knob("SCALE_CHANGES", 10).max(1);
    let quiet = knob("SCALE_QUIET_SECS", 30) as u64;
    println!("scale: {nodes} nodes, {services} Services, {changes} changes of each kind");

    let lab = ControlPlane::start().await.expect("lab");
    let client = lab.admin_client().await.unwrap();
    let alloc = start_allocator(&lab, "scale-allocator", &["--log-format=text"], true).await;
    let (mem0, t0) = (mem_available_mb(), Instant::now());
    let net = Network::create(&lab, NetworkConfig { nodes, bgp: false, ..Default::default() })
        .await
        .expect("network");
    figure("network built (s)", format!("{:.1}", t0.elapsed().as_secs_f64()));
    let mem_net = mem_available_mb();
    figure("memory the network took (MB)", format!("{:.0}", mem0 - mem_net));
    // The Node objects' writes settle first; what remains is the allocator's election and the API
    // server's own bookkeeping.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (bg_writes, _) = quiet_writes(&client, quiet).await;
    figure("API writes per second with no agent (background)", format!("{bg_writes:.2}"));

    // One kubeconfig for every agent (the ServiceAccount's token), then every agent at once.
    let kubeconfig = agent_kubeconfig(&lab, &net).await;
    let t0 = Instant::now();
    let mut agents: Vec<Agent> = net
        .nodes()
        .iter()
        .map(|n| spawn_agent(&lab, &net, n.name(), &kubeconfig, &["--log-format=text"]))
        .collect();
    futures::future::join_all(agents.iter().map(wait_agent_ready)).await;
    figure("agents started, every one ready (s)", format!("{:.1}", t0.elapsed().as_secs_f64()));
    tokio::time::sleep(Duration::from_secs(5)).await;
    figure("memory the agents took, idle (MB)", format!("{:.0}", mem_net - mem_available_mb()));
    let (lo, med, hi) = agents_mb(&agents, "VmRSS");
    figure("agent RSS idle, min/median/max (MB)", format!("{lo:.1} / {med:.1} / {hi:.1}"));
    let cpu0 = agents_cpu(&agents);
    let (w, by) = quiet_writes(&client, quiet).await;
    let idle_cpu = (agents_cpu(&agents) - cpu0) / quiet as f64 / nodes as f64;
    figure(
        "steady API writes per node per second, no Service",
        format!("{:.3} ({by:?})", (w - bg_writes) / nodes as f64),
    );
    figure("agent CPU idle (% of a core per agent)", format!("{:.2}", idle_cpu * 100.0));

    // The burst.
    let ns = TestNamespace::new(&client, "scale").await.unwrap();
    create_group(
        &client,
        ns.name(),
        &group(
            "scale-local",
            Some(("192.0.2.0/24", "192.0.2.200-192.0.2.239", "default")),
            Some(("2001:db8:0:1::/64", "2001:db8:0:1::1:0/112", "default")),
        ),
    )
    .await;
    create_group(
        &client,
        ns.name(),
        &group(
            "scale-routed",
            Some(("203.0.113.0/24", "203.0.113.0/24", "/32")),
            Some(("2001:db8:100::/112", "2001:db8:100::/112", "/128")),
        ),
    )
    .await;
    let planned = plan(services, nodes);
    let api: Api<Service> = Api::namespaced(client.clone(), ns.name());
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), ns.name());
    // Slices first, so that ETP Local Services go straight to their nodes.
    futures::stream::iter(planned.iter().filter(|p| p.kind == Kind::RoutedEtpLocal))
        .map(|p| {
            let (slices, slice) = (slices.clone(), slice_of(p, &net, &p.endpoints));
            async move { slices.create(&PostParams::default(), &slice).await.unwrap() }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<_>>()
        .await;
    let seen = IngressSeen::start(client.clone(), ns.name());
    let names: Vec<String> = planned.iter().map(|p| p.name.clone()).collect();
    let (cpu0, api0) = (agents_cpu(&agents), request_totals(&client).await);
    let t0 = Instant::now();
    futures::stream::iter(planned.iter().map(service_of))
        .map(|svc| {
            let api = api.clone();
            async move { create(&api, &svc).await }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<_>>()
        .await;
    figure("burst: every Service created (s)", format!("{:.1}", t0.elapsed().as_secs_f64()));
    if let Err(missing) = seen.try_wait_all(&names, Duration::from_secs(300)).await {
        // Say why before failing: what the Services without an address show, and the allocator's log.
        let listed = api.list(&ListParams::default()).await.unwrap();
        let mut reasons: HashMap<String, usize> = HashMap::new();
        for svc in listed.items.iter().filter(|s| ingress(s).is_empty()) {
            let reason = allocated_condition(svc).map_or("no condition".to_string(), |c| c.reason);
            *reasons.entry(reason).or_default() += 1;
        }
        panic!(
            "{missing} Services had no address 300 s after the creates; their Allocated reasons: {reasons:?}\n--- allocator log ---\n{}",
            alloc.child.log_tail(40)
        );
    }
    figure("burst: every Service allocated (s)", format!("{:.1}", t0.elapsed().as_secs_f64()));
    let listed = api.list(&ListParams::default()).await.unwrap();
    let by_name: HashMap<String, &Planned> = planned.iter().map(|p| (p.name.clone(), p)).collect();
    let mut want: HashMap<IpAddr, Want> = HashMap::new();
    let mut ip_of: HashMap<String, IpAddr> = HashMap::new();
    for svc in &listed.items {
        let p = by_name[&svc.name_any()];
        let ips = ingress(svc);
        assert_eq!(ips.len(), 1, "{}: one address, got {ips:?}", p.name);
        let ip: IpAddr = ips[0].parse().unwrap();
        assert!(ip_of.insert(p.name.clone(), ip).is_none());
        let w = match p.kind {
            Kind::Local => Want::OneLan,
            Kind::Routed => Want::Every,
            Kind::RoutedEtpLocal => Want::Exactly(p.endpoints.iter().copied().collect()),
        };
        assert!(want.insert(ip, w).is_none(), "{ip} handed to two Services");
    }
    let (at, poll) = converge(&net, &want, "burst").await;
    let burst_api = delta(&request_totals(&client).await, &api0);
    let burst_cpu = agents_cpu(&agents) - cpu0;
    figure(
        "burst: every address on exactly the right nodes (s)",
        format!("{:.1} (poll resolution {:.2} s)", (at - t0).as_secs_f64(), poll.as_secs_f64()),
    );
    figure(
        "burst: agent CPU per Service per agent (ms)",
        format!("{:.3}", burst_cpu * 1e3 / services as f64 / nodes as f64),
    );
    figure(
        "burst: API writes per Service, all clients (harness's creates included)",
        format!("{:.2}", writes(&burst_api) / services as f64),
    );
    for (k, v) in burst_api.iter().filter(|(k, v)| !is_read(k) && **v >= 1.0) {
        figure(&format!("burst: API {k} per Service"), format!("{:.2}", v / services as f64));
    }
    let addresses: usize = placements(&net, &want).await.values().map(Vec::len).sum();
    figure("addresses placed on all nodes together", addresses);

    // The agents' events drain at --event-qps (one AnnouncingNonLocal per routed Service per node):
    // what is held is measured once they have, so that "steady" is steady.
    let t_drain = Instant::now();
    let sum = |metric: &str| -> f64 {
        let each = net.nodes().iter().zip(&agents).map(|(n, a)| agent_metric(n, &a.admin, metric));
        each.map(|v| v.unwrap_or_else(|| panic!("an agent's {metric} could not be read"))).sum()
    };
    while sum("purelb_agent_events_waiting") > 0.0 {
        assert!(t_drain.elapsed() < Duration::from_secs(1800), "the agents' events never drained");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    figure(
        "burst: the agents' events drained, after the data plane converged (s)",
        format!("{:.0}", at.elapsed().as_secs_f64()),
    );
    figure(
        "burst: events published / dropped (queue full), all agents",
        format!(
            "{:.0} / {:.0}",
            sum("purelb_agent_events_total{result=\"published\"}"),
            sum("purelb_agent_events_total{result=\"dropped\"}")
        ),
    );

    // Holding them.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (lo, med, hi) = agents_mb(&agents, "VmRSS");
    figure(
        &format!("agent RSS holding {services}, min/median/max (MB)"),
        format!("{lo:.1} / {med:.1} / {hi:.1}"),
    );
    let (_, _, peak) = agents_mb(&agents, "VmHWM");
    figure("agent peak RSS, max over agents (MB)", format!("{peak:.1}"));
    figure(
        &format!("allocator RSS holding {services} (MB)"),
        format!("{:.1}", status_mb(alloc.child.pid(), "VmRSS")),
    );
    figure(
        &format!("API server RSS holding {services} with {nodes} agents (MB)"),
        format!("{:.0}", status_mb(lab.apiserver().pid(), "VmRSS")),
    );
    let cpu0 = agents_cpu(&agents);
    let (w, by) = quiet_writes(&client, quiet).await;
    figure(
        &format!("steady API writes per node per second, holding {services}"),
        format!("{:.3} ({by:?})", (w - bg_writes) / nodes as f64),
    );
    figure(
        &format!("agent CPU holding {services} (% of a core per agent)"),
        format!("{:.2}", (agents_cpu(&agents) - cpu0) / quiet as f64 / nodes as f64 * 100.0),
    );

    // One change at a time.
    let (mut created, mut moved) = (Vec::new(), Vec::new());
    let cpu0 = agents_cpu(&agents);
    for k in 0..changes {
        let p = Planned { name: format!("extra-{k}"), kind: Kind::Routed, v6: true, endpoints: Vec::new() };
        let t0 = Instant::now();
        create(&api, &service_of(&p)).await;
        let ip: IpAddr = ingress(&wait_ingress(&api, &p.name, 1).await)[0].parse().unwrap();
        let one = HashMap::from([(ip, Want::Every)]);
        created.push(converge(&net, &one, "a new routed Service").await.0 - t0);
        want.insert(ip, Want::Every);
    }
    let etp: Vec<&Planned> =
        planned.iter().filter(|p| p.kind == Kind::RoutedEtpLocal).take(changes).collect();
    for p in &etp {
        let ip = ip_of[&p.name];
        let from = p.endpoints[0];
        let to = (0..nodes).find(|n| !p.endpoints.contains(n)).unwrap();
        let mut now: Vec<usize> = p.endpoints.iter().copied().filter(|n| *n != from).collect();
        now.push(to);
        let slice = slice_of(p, &net, &now);
        let t0 = Instant::now();
        slices
            .patch(
                &format!("{}-scale", p.name),
                &PatchParams::apply("scale-bench").force(),
                &Patch::Apply(&slice),
            )
            .await
            .unwrap();
        let one = HashMap::from([(ip, Want::Exactly(now.iter().copied().collect()))]);
        moved.push(converge(&net, &one, "an ETP Local endpoint moved").await.0 - t0);
        want.insert(ip, Want::Exactly(now.into_iter().collect()));
    }
    let change_cpu = (agents_cpu(&agents) - cpu0) / (created.len() + moved.len()) as f64 / nodes as f64;
    for (name, mut v) in [
        ("a new routed Service -> on every node", created),
        ("an ETP Local endpoint moved -> off the old node, on the new", moved),
    ] {
        v.sort();
        figure(
            &format!("one change: {name} (ms)"),
            format!("n={} p50={:.0} max={:.0}", v.len(), percentile(&v, 0.5), percentile(&v, 1.0)),
        );
    }
    figure("one change: agent CPU per change per agent (ms)", format!("{:.3}", change_cpu * 1e3));
    let (_, poll) = converge(&net, &want, "after the changes").await;
    figure("one poll of every node's addresses (s)", format!("{:.2}", poll.as_secs_f64()));

    // Abrupt loss of the node holding most local addresses.
    let found = placements(&net, &want).await;
    let mut local_on: HashMap<usize, Vec<IpAddr>> = HashMap::new();
    for (ip, w) in &want {
        if *w == Want::OneLan {
            local_on.entry(found[ip][0].0).or_default().push(*ip);
        }
    }
    let (&lost, lost_ips) = local_on.iter().max_by_key(|(_, v)| v.len()).unwrap();
    let lost_ips = lost_ips.clone();
    let lost_name = net.nodes()[lost].name().to_string();
    let t0 = Instant::now();
    let began = k8s_openapi::jiff::Timestamp::now();
    net.nodes()[lost].set_link(false).await.unwrap();
    agents[lost].child.kill().unwrap();
    let elsewhere = |found: &HashMap<IpAddr, Vec<(usize, String, u8)>>| {
        lost_ips.iter().all(|ip| {
            let at = found.get(ip).map(Vec::as_slice).unwrap_or(&[]);
            let others: Vec<_> = at.iter().filter(|(n, _, _)| *n != lost).collect();
            others.len() == 1 && others[0].1 == LAN_INTERFACE
        })
    };
    let lost_watch: HashMap<IpAddr, Want> = lost_ips.iter().map(|ip| (*ip, Want::OneLan)).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    let took = loop {
        let t = Instant::now();
        if elsewhere(&placements(&net, &lost_watch).await) {
            break t - t0;
        }
        assert!(Instant::now() < deadline, "{lost_name}'s local addresses never moved");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    figure(
        &format!("node loss: {} local addresses of {lost_name} each on one other node (s)", lost_ips.len()),
        format!("{:.2}", took.as_secs_f64()),
    );
    let witness = (lost + 1) % nodes;
    show_log(
        &format!("node loss, seen by {}", net.nodes()[witness].name()),
        began,
        &agents[witness].child.log_tail(400),
        &["liveness", "renew", "stale", "static", "incomplete", "took", "yield"],
    );
    net.nodes()[lost].set_link(true).await.unwrap();
    agents[lost] = spawn_agent(&lab, &net, &lost_name, &kubeconfig, &["--log-format=text"]);
    wait_agent_ready(&agents[lost]).await;

    // Agent restart on a node holding every routed address.
    let r = (lost + 1) % nodes;
    let node = &net.nodes()[r];
    let on_lb0 = || async {
        node.all_placements()
            .await
            .unwrap()
            .iter()
            .filter(|(i, ip, _)| i == KUBE_LB0 && want.contains_key(ip))
            .count()
    };
    let held = on_lb0().await;
    let t_term = Instant::now();
    let began = k8s_openapi::jiff::Timestamp::now();
    let status = agents[r].child.terminate().await.unwrap();
    let left = on_lb0().await;
    figure("agent restart: SIGTERM to exit (s)", format!("{:.2} ({status})", t_term.elapsed().as_secs_f64()));
    assert_eq!(
        left,
        0,
        "SIGTERM withdraws every routed address (no DaemonSet in the lab)\n--- agent log ---\n{}",
        agents[r].child.log_tail(30)
    );
    show_log("agent restart, the stopping agent", began, &agents[r].child.log_tail(60), &[""]);
    let began = k8s_openapi::jiff::Timestamp::now();
    agents[r] = spawn_agent(&lab, &net, node.name(), &kubeconfig, &["--log-format=text"]);
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(300);
    while on_lb0().await < held {
        assert!(Instant::now() < deadline, "the restarted agent never converged");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    figure(
        &format!(
            "agent restart: {held} addresses back on kube-lb0 of {} from process start (s)",
            node.name()
        ),
        format!("{:.2}", t0.elapsed().as_secs_f64()),
    );
    show_log(
        "agent restart, the new agent",
        began,
        &agents[r].child.log_tail(400),
        &["starting", "listed", "first reconcile", "renew", "incomplete"],
    );
    for a in agents {
        a.child.terminate().await.ok();
    }
}
