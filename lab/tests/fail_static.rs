//! The data plane stays up when the control plane is down (fail-static), proven on a lab of its own
//! (these tests pause, kill and restart its API server and etcd, so they cannot share the process-wide
//! one): every node's addresses and the router's routes are sampled every 50 ms throughout, and every
//! change is counted.
//!
//! - API server paused 10 s and 60 s, killed and restarted, etcd stopped and restarted, an agent
//!   restarted while the API is away: no address added, withdrawn or moved on any node, no route leaves
//!   the router; afterwards no burst of Service writes or events, then none at all for a minute; two
//!   allocator replicas neither exit nor double-allocate.
//! - One node cut off from the API but not from the LAN: the others take its local addresses over
//!   within the Lease bound, and it yields each within 1 s of the new holder's gratuitous ARP / NA; its
//!   routed addresses stay (its BGP session is up); `kubectl purelb status` names it not live, cut off,
//!   fail-static; it rejoins.
//! - A gratuitous ARP from another MAC while every view is current moves nothing.
//! - LAN flaps: link down/up with the agent running and restarted, default route deleted: the node's
//!   local addresses stay local and the router never learns a LAN prefix.
//!
//! The tests run one at a time (each builds its own control plane and network).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::core::v1::{Event, Service};
use kube::Client;
use kube::api::{Api, ListParams};
use purelb_core::api::annotations;
use purelb_core::pool::Subnet;
use purelb_lab::{ControlPlane, Network, NetworkConfig, Sampler, TestNamespace, Timeline, wait_for};
use tokio::sync::Mutex;

static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// Sampling period: the issue asks for at least every 100 ms.
const SAMPLE: Duration = Duration::from_millis(50);
/// The LAN's prefixes: the router must never learn a route inside them.
const LAN_V4: &str = "192.0.2.0/24";
const LAN_V6: &str = "2001:db8:0:1::/64";

struct Lab {
    cp: ControlPlane,
    net: Network,
    agents: Vec<Agent>,
}

async fn lab(prefix: &str) -> Lab {
    let cp = ControlPlane::start().await.expect("control plane");
    install(&cp).await;
    let net = Network::create(&cp, NetworkConfig { nodes: 3, ..Default::default() }).await.expect("network");
    let agents = start_agents(&cp, &net, &["node1", "node2", "node3"]).await;
    eprintln!("{prefix}: lab ready in {}", cp.dir().display());
    Lab { cp, net, agents }
}

/// The addresses the tests place: a local IPv4 and IPv6 address each, a routed /32 and a routed
/// default-aggregation address.
struct Placed {
    _ns: TestNamespace,
    api: Api<Service>,
    local: Vec<String>,
    routed: Vec<String>,
}

async fn place(cp: &ControlPlane, net: &Network, prefix: &str, services: usize) -> Placed {
    let client = cp.admin_client().await.unwrap();
    let ns = TestNamespace::new(&client, prefix).await.unwrap();
    create_group(
        &client,
        ns.name(),
        &group(
            "local",
            Some(("192.0.2.0/24", "192.0.2.200-192.0.2.220", "default")),
            Some(("2001:db8:0:1::/64", "2001:db8:0:1::200-2001:db8:0:1::220", "default")),
        ),
    )
    .await;
    create_group(
        &client,
        ns.name(),
        &group("routed", Some(("198.51.100.0/24", "198.51.100.0/24", "/32")), None),
    )
    .await;
    create_group(
        &client,
        ns.name(),
        &group("agg", Some(("203.0.113.0/24", "203.0.113.0/26", "default")), None),
    )
    .await;
    let api: Api<Service> = Api::namespaced(client.clone(), ns.name());
    let dual = "  ipFamilyPolicy: RequireDualStack\n  ipFamilies: [IPv4, IPv6]\n";
    let (mut local, mut routed) = (Vec::new(), Vec::new());
    for i in 0..services {
        let name = format!("local-{i}");
        create(&api, &lb_service(&name, 80, &[(annotations::SERVICE_GROUP, "local")], dual)).await;
        local.extend(ingress(&wait_ingress(&api, &name, 2).await));
    }
    create(&api, &lb_service("routed", 80, &[(annotations::SERVICE_GROUP, "routed")], "")).await;
    routed.extend(ingress(&wait_ingress(&api, "routed", 1).await));
    create(&api, &lb_service("agg", 80, &[(annotations::SERVICE_GROUP, "agg")], "")).await;
    routed.extend(ingress(&wait_ingress(&api, "agg", 1).await));
    // Steady: one holder per local address, every node for routed ones, the router has the routes.
    for ip in &local {
        wait_single_holder(net, ip).await;
    }
    let every = |len| [("node1", "kube-lb0", len), ("node2", "kube-lb0", len), ("node3", "kube-lb0", len)];
    wait_holders(net, &routed[0], &every(32)).await;
    wait_holders(net, &routed[1], &every(24)).await;
    let want = [format!("{}/32", routed[0]), "203.0.113.0/24".to_string()];
    wait_for("the router has both routed prefixes via 3 nodes", Duration::from_secs(30), || async {
        let routes = net.router_routes().await.map_err(|e| e.to_string())?;
        let ecmp = |dst: &str| routes.iter().any(|r| r.dst == dst && r.nexthops.len() == 3);
        if want.iter().all(|d| ecmp(d)) { Ok(()) } else { Err(format!("{routes:?}")) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    Placed { _ns: ns, api, local, routed }
}

async fn wait_single_holder(net: &Network, ip: &str) -> String {
    wait_for(&format!("{ip} held by exactly one node"), Duration::from_secs(30), || async {
        let h = holders(net, ip).await;
        if h.len() == 1 { Ok(h[0].0.clone()) } else { Err(format!("{h:?}")) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

fn ips(p: &Placed) -> Vec<IpAddr> {
    p.local.iter().chain(&p.routed).map(|s| s.parse().unwrap()).collect()
}

/// The router never learned a route inside the LAN.
fn assert_no_lan_route(t: &Timeline) {
    let lans = [Subnet::parse(LAN_V4).unwrap(), Subnet::parse(LAN_V6).unwrap()];
    assert!(t.router_routes_within(&lans).is_empty(), "the router learnt a LAN prefix:\n{t}");
}

/// The resourceVersions of the test's Services and the number of events (with their counts) in its
/// namespace: what PureLB wrote.
async fn writes(client: &Client, p: &Placed) -> (Vec<String>, i32) {
    let svcs = p.api.list(&ListParams::default()).await.unwrap();
    let versions =
        svcs.items.iter().map(|s| s.metadata.resource_version.clone().unwrap_or_default()).collect();
    let ns = p._ns.name();
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let n =
        events.list(&ListParams::default()).await.unwrap().items.iter().map(|e| e.count.unwrap_or(1)).sum();
    (versions, n)
}

fn sample(net: &Network, p: &Placed, max: Duration) -> (Sampler, Instant) {
    (Sampler::start(net, SAMPLE, ips(p), max).expect("sampler"), Instant::now())
}

fn finish((sampler, began): (Sampler, Instant), what: &str) -> Timeline {
    let t = sampler.stop();
    eprintln!(
        "{what}: {} samples over {:?}, max gap {:?}, max blind gap {:?}, {} changes, {} reported by the kernel",
        t.samples(),
        began.elapsed(),
        t.max_gap(),
        t.max_blind_gap(),
        t.changes(),
        t.kernel_changes()
    );
    // A gap the kernel reported no change in hides nothing; the others must be short.
    assert!(t.max_blind_gap() <= Duration::from_millis(100), "{what}: sampled too slowly:\n{t}");
    assert_no_lan_route(&t);
    t
}

/// Nothing changed: no sample differs, and the kernel reported no change to a watched address or route
/// (so nothing went and came back between two samples either).
fn assert_still(t: &Timeline, what: &str) {
    assert_eq!(t.changes(), 0, "{what}: addresses or routes changed:\n{t}");
    assert_eq!(t.kernel_changes(), 0, "{what}: the kernel reported changes no sample showed:\n{t}");
}

#[tokio::test]
async fn api_outages_move_no_address_and_withdraw_no_route() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut lab = lab("fs-outage").await;
    // Two allocator replicas, as deployed.
    let a1 = start_allocator(&lab.cp, "allocator-fs-1", &[], true).await;
    let a2 = start_allocator(&lab.cp, "allocator-fs-2", &[], false).await;
    let p = place(&lab.cp, &lab.net, "fs-outage", 2).await;
    let client = lab.cp.admin_client().await.unwrap();
    let before = writes(&client, &p).await;

    for pause in [10, 60] {
        let what = format!("kube-apiserver paused {pause} s");
        let s = sample(&lab.net, &p, Duration::from_secs(pause + 30));
        lab.cp.pause_apiserver().unwrap();
        tokio::time::sleep(Duration::from_secs(pause)).await;
        lab.cp.resume_apiserver().unwrap();
        // Resumed: give every agent more than a Lease duration to renew and re-judge.
        tokio::time::sleep(Duration::from_secs(8)).await;
        let t = finish(s, &what);
        assert_still(&t, &what);
    }

    let what = "kube-apiserver killed and restarted";
    let s = sample(&lab.net, &p, Duration::from_secs(90));
    lab.cp.stop_apiserver().await.unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    lab.cp.start_apiserver().await.unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let t = finish(s, what);
    assert_still(&t, what);

    let what = "etcd stopped and restarted";
    let s = sample(&lab.net, &p, Duration::from_secs(90));
    lab.cp.stop_etcd().await.unwrap();
    tokio::time::sleep(Duration::from_secs(15)).await;
    lab.cp.start_etcd().await.unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let t = finish(s, what);
    assert_still(&t, what);

    // An agent restarted while the API is away keeps the addresses tagged as its own until it can
    // read the API; then it keeps them (nothing changed meanwhile).
    let what = "agent restarted while the API server is paused";
    let holder = wait_single_holder(&lab.net, &p.local[0]).await;
    let i = lab.agents.iter().position(|a| a.node == holder).unwrap();
    let kubeconfig = agent_kubeconfig(&lab.cp, &lab.net).await;
    let s = sample(&lab.net, &p, Duration::from_secs(90));
    lab.cp.pause_apiserver().unwrap();
    lab.agents[i].child.kill().unwrap();
    lab.agents[i] = spawn_agent(&lab.cp, &lab.net, &holder, &kubeconfig, &["--log-format=text"]);
    tokio::time::sleep(Duration::from_secs(10)).await;
    lab.cp.resume_apiserver().unwrap();
    wait_agent_ready(&lab.agents[i]).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let t = finish(s, what);
    assert_still(&t, what);

    // No burst of writes after the outages: the Services were not rewritten, and no events beyond the
    // restarted agent's own take-up notes (one AnnouncingLocal/NonLocal per address it announces).
    let after = writes(&client, &p).await;
    assert_eq!(after.0, before.0, "Services were rewritten after the outages");
    let extra = after.1 - before.1;
    assert!(extra <= 8, "{extra} more events after the outages than before");
    // And then a quiet minute: no Service rewritten, no event, by either allocator or any agent.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let minute = writes(&client, &p).await;
    assert_eq!(minute.0, after.0, "Services were rewritten in the minute after the outages");
    assert_eq!(minute.1, after.1, "{} events in the minute after the outages", minute.1 - after.1);
    eprintln!(
        "after every outage: 0 Service writes, {extra} events (the restarted agent's take-ups); then 0 writes and 0 events over 60 s"
    );

    // Both allocators survived every outage (none exited), and they still allocate, once each address.
    assert!(
        a1.child.is_running() && a2.child.is_running(),
        "an allocator exited:\n{}\n{}",
        a1.child.log_tail(30),
        a2.child.log_tail(30)
    );
    create(&p.api, &lb_service("after", 80, &[(annotations::SERVICE_GROUP, "routed")], "")).await;
    let new = ingress(&wait_ingress(&p.api, "after", 1).await);
    let all: Vec<String> =
        p.api.list(&ListParams::default()).await.unwrap().items.iter().flat_map(ingress).collect();
    let distinct: BTreeSet<&String> = all.iter().collect();
    assert_eq!(distinct.len(), all.len(), "two Services hold one address: {all:?}");
    assert!(!p.local.contains(&new[0]) && !p.routed.contains(&new[0]));
    for a in lab.agents.drain(..) {
        a.child.terminate().await.ok();
    }
}

/// The local addresses `node` holds now.
async fn held_by(net: &Network, p: &Placed, node: &str) -> Vec<String> {
    let mut out = Vec::new();
    for ip in &p.local {
        if holders(net, ip).await.iter().any(|(n, _, _)| n == node) {
            out.push(ip.clone());
        }
    }
    out
}

#[tokio::test]
async fn a_node_cut_off_from_the_api_yields_its_local_addresses_within_a_second() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut lab = lab("fs-cut").await;
    let _allocator = start_allocator(&lab.cp, "allocator-fs-cut", &[], true).await;
    let p = place(&lab.cp, &lab.net, "fs-cut", 3).await;
    let cut = wait_single_holder(&lab.net, &p.local[0]).await;
    let theirs = held_by(&lab.net, &p, &cut).await;
    eprintln!("{cut} holds {theirs:?}; cutting its path to the API server");

    let s = sample(&lab.net, &p, Duration::from_secs(120));
    let t0 = Instant::now();
    lab.net.cut_api(&cut, true);
    // The others see its Lease expire and take each address over; it yields each.
    for ip in &theirs {
        wait_for(&format!("{ip} held by one node other than {cut}"), Duration::from_secs(15), || async {
            let h = holders(&lab.net, ip).await;
            if h.len() == 1 && h[0].0 != cut { Ok(()) } else { Err(format!("{h:?}")) }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }
    let moved_after = t0.elapsed();
    // `kubectl purelb status` names the cut-off node as not live, and says why and what it does.
    let status = plugin_status(&lab.cp);
    let nodes = status["nodes"].as_array().expect("status nodes");
    let node =
        nodes.iter().find(|n| n["name"] == cut.as_str()).unwrap_or_else(|| panic!("{cut} not in {status}"));
    assert_eq!(node["live"], false, "status says {cut} is live while cut off: {node}");
    let why = node["why"].as_str().unwrap_or_default();
    assert!(why.contains("cut off from the API server") && why.contains("fail-static"), "{cut}: {why}");
    for other in nodes.iter().filter(|n| n["name"] != cut.as_str()) {
        assert_eq!(other["live"], true, "status: {other}");
    }
    // Cut off for a while longer: nothing moves back, its routed addresses stay (BGP is up).
    tokio::time::sleep(Duration::from_secs(6)).await;
    for ip in &p.routed {
        let h = holders(&lab.net, ip).await;
        assert!(h.iter().any(|(n, i, _)| *n == cut && i == "kube-lb0"), "{cut} dropped routed {ip}: {h:?}");
    }
    let i = lab.agents.iter().position(|a| a.node == cut).unwrap();
    assert!(
        lab.agents[i].child.is_running(),
        "the cut-off agent exited:\n{}",
        lab.agents[i].child.log_tail(40)
    );
    let log = std::fs::read_to_string(lab.agents[i].child.log_path()).unwrap();
    assert!(
        log.contains("yielding it"),
        "the cut-off agent never yielded:\n{}",
        lab.agents[i].child.log_tail(40)
    );
    let during = finish(s, "one node cut off from the API");
    eprintln!("{cut}'s local addresses all moved {moved_after:?} after the cut\n{during}");
    assert!(moved_after < Duration::from_secs(10), "takeover took {moved_after:?} (bound 5 s + sampling)");
    let mut worst = Duration::ZERO;
    for ip in &theirs {
        let both = during.double_holding(ip.parse().unwrap());
        eprintln!("{ip}: held by two nodes for {both:?}");
        worst = worst.max(both);
    }
    assert!(worst <= Duration::from_millis(1000), "two nodes held a local address for {worst:?}:\n{during}");

    // Its API path returns: it rejoins, and in steady state each local address has one holder.
    let s = sample(&lab.net, &p, Duration::from_secs(60));
    lab.net.cut_api(&cut, false);
    tokio::time::sleep(Duration::from_secs(12)).await;
    let rejoin = finish(s, "the cut-off node rejoins");
    for ip in &p.local {
        wait_single_holder(&lab.net, ip).await;
        let both = rejoin.double_holding(ip.parse().unwrap());
        assert!(
            both <= Duration::from_millis(1000),
            "{ip} held by two nodes for {both:?} on rejoin:\n{rejoin}"
        );
    }
    eprintln!("rejoin: {} address changes", rejoin.changes());
    for a in lab.agents.drain(..) {
        a.child.terminate().await.ok();
    }
}

/// `ip <args>` inside `node`'s namespace.
fn ip_in(net: &Network, node: &str, args: &[&str]) {
    let out = net.node(node).unwrap().command("ip").args(args).output().unwrap();
    assert!(out.status.success(), "ip {args:?} in {node}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The node's LAN setup as the lab makes it (addresses survive `link down` for IPv4 only; the default
/// routes and the IPv6 address do not).
fn restore_lan(net: &Network, node: &str) {
    let n = net.node(node).unwrap();
    let v6 = format!("{}/64", n.ipv6());
    let _ = n.command("ip").args(["-6", "addr", "add", &v6, "dev", "eth0", "nodad"]).output();
    let _ = n.command("ip").args(["-4", "route", "replace", "default", "via", "192.0.2.254"]).output();
    let _ = n.command("ip").args(["-6", "route", "replace", "default", "via", "2001:db8:0:1::fe"]).output();
}

/// No local address ever sat on `kube-lb0` of any node.
fn assert_never_routed_locally(t: &Timeline, p: &Placed) {
    for ip in &p.local {
        let on = t.ever_on_interface(ip.parse().unwrap(), "kube-lb0");
        assert!(on.is_empty(), "local {ip} was put on kube-lb0 of {on:?}:\n{t}");
    }
}

#[tokio::test]
async fn lan_flaps_keep_local_addresses_local_and_never_route_the_lan() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut lab = lab("fs-flap").await;
    let _allocator = start_allocator(&lab.cp, "allocator-fs-flap", &[], true).await;
    let p = place(&lab.cp, &lab.net, "fs-flap", 2).await;

    // 1. The default route deleted on a holder: its Lease keeps the LAN, nothing moves.
    let node = wait_single_holder(&lab.net, &p.local[0]).await;
    let s = sample(&lab.net, &p, Duration::from_secs(60));
    ip_in(&lab.net, &node, &["-4", "route", "del", "default"]);
    ip_in(&lab.net, &node, &["-6", "route", "del", "default"]);
    tokio::time::sleep(Duration::from_secs(8)).await;
    restore_lan(&lab.net, &node);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let t = finish(s, "default route deleted");
    assert_still(&t, &format!("deleting {node}'s default route"));
    let i = lab.agents.iter().position(|a| a.node == node).unwrap();
    let log = std::fs::read_to_string(lab.agents[i].child.log_path()).unwrap();
    assert!(log.contains("keeping the last known LAN"), "{}", lab.agents[i].child.log_tail(30));

    // 2. eth0 down and up with the agent running (the link flap flushes its IPv6 address and routes).
    let kubeconfig = agent_kubeconfig(&lab.cp, &lab.net).await;
    let s = sample(&lab.net, &p, Duration::from_secs(90));
    ip_in(&lab.net, &node, &["link", "set", "eth0", "down"]);
    tokio::time::sleep(Duration::from_secs(8)).await;
    ip_in(&lab.net, &node, &["link", "set", "eth0", "up"]);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let t = finish(s, "eth0 down and up, agent running");
    assert_never_routed_locally(&t, &p);
    for ip in &p.local {
        wait_single_holder(&lab.net, ip).await;
    }

    // 3. The sequence: eth0 down, the agent SIGKILLed, eth0 up, the agent restarted (before
    //    anyone restores the IPv6 address or the default routes).
    let node = wait_single_holder(&lab.net, &p.local[1]).await;
    let i = lab.agents.iter().position(|a| a.node == node).unwrap();
    let s = sample(&lab.net, &p, Duration::from_secs(90));
    ip_in(&lab.net, &node, &["link", "set", "eth0", "down"]);
    lab.agents[i].child.kill().unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    ip_in(&lab.net, &node, &["link", "set", "eth0", "up"]);
    let _ = lab
        .net
        .node(&node)
        .unwrap()
        .command("ip")
        .args(["-4", "route", "replace", "192.0.2.0/24", "dev", "eth0"])
        .output();
    lab.agents[i] = spawn_agent(&lab.cp, &lab.net, &node, &kubeconfig, &["--log-format=text"]);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let t = finish(s, "eth0 down, agent killed, eth0 up, agent restarted");
    assert_never_routed_locally(&t, &p);
    let log = std::fs::read_to_string(lab.agents[i].child.log_path()).unwrap();
    assert!(
        log.contains("starting from the LAN this node's Lease names"),
        "the restarted agent did not start from its Lease's LAN:\n{}",
        lab.agents[i].child.log_tail(40)
    );
    restore_lan(&lab.net, &node);
    for ip in &p.local {
        wait_single_holder(&lab.net, ip).await;
    }
    for a in lab.agents.drain(..) {
        a.child.terminate().await.ok();
    }
}

#[tokio::test]
async fn an_agent_with_a_current_view_keeps_a_local_address_another_mac_announces() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut lab = lab("fs-garp").await;
    let _allocator = start_allocator(&lab.cp, "allocator-fs-garp", &[], true).await;
    let p = place(&lab.cp, &lab.net, "fs-garp", 1).await;
    let v4 = p.local.iter().find(|ip| ip.parse::<IpAddr>().unwrap().is_ipv4()).unwrap().clone();
    let holder = wait_single_holder(&lab.net, &v4).await;

    // Another MAC on the LAN (the control plane's host) sends gratuitous ARP for the address while every
    // agent sees the API: a conflict with no stale view behind it. Yielding on it is what let two nodes
    // converging on a new election give an address up to each other and leave it on none.
    let s = sample(&lab.net, &p, Duration::from_secs(30));
    let cp = lab.net.control_plane_netns().to_string();
    let script = format!(
        "sysctl -q -w net.ipv4.ip_nonlocal_bind=1 && arping -q -U -c 2 -I {} -s {v4} {v4}",
        purelb_lab::LAN_INTERFACE
    );
    let out =
        std::process::Command::new("ip").args(["netns", "exec", &cp, "sh", "-c", &script]).output().unwrap();
    assert!(out.status.success(), "arping from {cp}: {}", String::from_utf8_lossy(&out.stderr));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let what = "a gratuitous ARP from another MAC, every view current";
    let t = finish(s, what);
    assert_still(&t, what);
    assert_eq!(holders(&lab.net, &v4).await.len(), 1);
    let i = lab.agents.iter().position(|a| a.node == holder).unwrap();
    let log = std::fs::read_to_string(lab.agents[i].child.log_path()).unwrap();
    assert!(
        log.contains("the election decides and this node keeps it"),
        "{holder} did not see the conflict:\n{}",
        lab.agents[i].child.log_tail(30)
    );
    assert!(!log.contains("yielding it"), "{holder} yielded:\n{}", lab.agents[i].child.log_tail(30));
    for a in lab.agents.drain(..) {
        a.child.terminate().await.ok();
    }
}

/// `kubectl purelb status -o json` as the lab's admin.
fn plugin_status(cp: &ControlPlane) -> serde_json::Value {
    let bin = purelb_lab::binary("kubectl-purelb").expect("kubectl-purelb binary (cargo build --bins)");
    let out = std::process::Command::new(bin)
        .args(["status", "-o", "json"])
        .env("KUBECONFIG", cp.admin_kubeconfig())
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "kubectl purelb status: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}
