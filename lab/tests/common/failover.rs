//! Failover as the client sees it: faults applied to a running [`DataPath`] while the client sends a
//! request every 10 ms to a local and a routed address, and what it got back. Shared by the
//! `data_path_failover` tests (which assert) and the `failover` bench (which repeats and counts).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams};
use purelb_lab::{
    ControlPlane, Failure, LabPod, Network, Probe, ProbeConfig, ProbeReport, TestNamespace, wait_for,
};

use super::traffic::{DataPath, at, echo_service, elected, run_pods, wait_endpoints, wait_settled};
use super::{
    create, create_group, group, holders, ingress, route_nexthops, start_agent, wait_agent_ready,
    wait_ingress, wait_route,
};

/// How long an abruptly lost node may take to lose its local address, client side: the agent's
/// documented bound (Lease 4 s, +250 ms tick and watch latency: under 5 s) plus the client's own
/// retransmission (a SYN lost just before the takeover is retried a second later) and a slow machine.
pub const LOST_NODE_BOUND: Duration = Duration::from_secs(8);

/// How long after an abrupt node loss requests to a routed address may still fail, client side: BFD's
/// detection (200 ms x 3 = 600 ms) plus the router's kernel update and a slow machine. Without BFD the
/// BGP hold time (3 s in the lab) would exceed it.
pub const ROUTED_LOST_NODE_BOUND: Duration = Duration::from_secs(2);

/// What a fault is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// SIGTERM of the agent on the local address's holder, then that agent started again.
    Sigterm,
    /// The holder's LAN cable pulled and its agent SIGKILLed; measured until the address moved (the
    /// node and its agent come back afterwards, outside the measurement).
    KillAndCut,
    /// Every agent, one after the other: SIGTERM, start again, ready.
    RollingRestart,
    /// kube-apiserver paused (SIGSTOP) this long, then resumed.
    ApiPause(Duration),
    /// A graceful node shutdown of the local address's holder, as the kubelet runs one: its Node's
    /// Ready condition says "node is shutting down", then (once its addresses moved) its agent gets
    /// SIGTERM; the node comes back afterwards, outside the measurement.
    NodeShutdown,
}

/// One namespace with two echo pods (one per node), a local and a routed Service for them.
pub struct Targets {
    pub ns: TestNamespace,
    pub local: String,
    pub routed: String,
    pub pods: Vec<LabPod>,
}

impl Targets {
    /// `(local, routed)` on port 80.
    pub fn addresses(&self) -> [SocketAddr; 2] {
        [at(&self.local, 80), at(&self.routed, 80)]
    }

    pub async fn cleanup(self) {
        for pod in self.pods {
            pod.delete().await.unwrap();
        }
        self.ns.cleanup().await.unwrap();
    }
}

/// Creates the namespace `prefix-…`, its pods, groups `<prefix>-local` (`local_pool` on the LAN) and
/// `<prefix>-routed` (`routed_pool` as /32s) and Services, and waits until both addresses answer
/// steadily.
pub async fn targets(
    lab: &ControlPlane,
    dp: &DataPath,
    prefix: &str,
    local_pool: &str,
    routed_pool: &str,
) -> Targets {
    let client = lab.admin_client().await.unwrap();
    let ns = TestNamespace::new(&client, prefix).await.unwrap();
    let nodes: Vec<&str> = dp.agents.iter().map(|a| a.node.as_str()).collect();
    let pods = run_pods(lab, &dp.net, &client, ns.name(), "echo", &nodes).await;
    // Group names are cluster-wide for the allocator (a name in two namespaces is DuplicateServiceGroup),
    // so each caller's are its own: a test that failed and left its namespace behind cannot take the
    // next test's addresses away.
    let (local_group, routed_group) = (format!("{prefix}-local"), format!("{prefix}-routed"));
    create_group(
        &client,
        ns.name(),
        &group(&local_group, Some(("192.0.2.0/24", local_pool, "default")), None),
    )
    .await;
    create_group(
        &client,
        ns.name(),
        &group(&routed_group, Some(("203.0.113.0/24", routed_pool, "/32")), None),
    )
    .await;
    let api: Api<Service> = Api::namespaced(client.clone(), ns.name());
    create(&api, &echo_service("local", 80, &local_group, "echo", &[], "")).await;
    create(&api, &echo_service("routed", 80, &routed_group, "echo", &[], "")).await;
    let local = ingress(&wait_ingress(&api, "local", 1).await)[0].clone();
    let routed = ingress(&wait_ingress(&api, "routed", 1).await)[0].clone();
    let all: Vec<&LabPod> = pods.iter().collect();
    wait_endpoints(&client, ns.name(), "local", &all, false).await;
    wait_endpoints(&client, ns.name(), "routed", &all, false).await;
    elected(&dp.net, &local).await;
    for to in [at(&local, 80), at(&routed, 80)] {
        wait_settled(&dp.client, to).await;
    }
    Targets { ns, local, routed, pods }
}

/// A local address's failed requests, split into those its move explains and the others.
///
/// A connection open at the instant the client's path moves to the new holder (its gratuitous ARP / NA)
/// is reset: its next packets reach a node with no state for the flow (the conntrack entry and the DNAT
/// to a pod are on the old holder), and the pod they reach answers with a reset. A layer-2 handover
/// costs that for every connection open at that instant, whoever announces (keepalived needs conntrackd
/// to avoid it); nothing else may fail, since the handover is make before break. A failure is explained
/// when it is a [`Failure::Reset`] and the nearest answered requests on either side of it entered the
/// cluster by different nodes (every request to a local address enters by its holder; kube-proxy
/// masquerades to the entry node's address). With a request every 10 ms and each taking about a
/// millisecond, about one move in twenty catches one in flight.
pub fn split_by_moves<'a>(net: &Network, report: &'a ProbeReport) -> (Vec<&'a Probe>, Vec<&'a Probe>) {
    let entry = |p: &Probe| {
        p.result.as_ref().ok().map(|r| net.node_with_address(r.client).map(|n| n.name().to_owned()))
    };
    let (mut explained, mut other) = (Vec::new(), Vec::new());
    for (i, p) in report.probes.iter().enumerate() {
        if p.result.is_ok() {
            continue;
        }
        let before = report.probes[..i].iter().rev().find_map(entry);
        let after = report.probes[i + 1..].iter().find_map(entry);
        let moved = matches!((before, after), (Some(Some(b)), Some(Some(a))) if a != b);
        if moved && p.result.as_ref().err() == Some(&Failure::Reset) {
            explained.push(p);
        } else {
            other.push(p);
        }
    }
    (explained, other)
}

/// A routed address's failed requests, split into those the router's route change at `changed` (on
/// the probes' clock, as observed: polled every 10 ms, so up to [`ROUTE_POLL_SLACK`] after the change)
/// explains and the others. The router hashes each connection onto a next hop; when one goes, the
/// connections open on it move to another node, which has no state for them, and are reset (as in
/// [`split_by_moves`]). A failure is explained when it is a [`Failure::Reset`] of a request sent
/// before the change was observed and failed after it could have happened.
pub fn split_by_route_change(report: &ProbeReport, changed: Duration) -> (Vec<&Probe>, Vec<&Probe>) {
    let earliest = changed.saturating_sub(ROUTE_POLL_SLACK);
    report.probes.iter().filter(|p| p.result.is_err()).partition(|p| {
        p.result.as_ref().err() == Some(&Failure::Reset)
            && p.sent <= changed
            && p.sent + p.latency >= earliest
    })
}

/// How long after a route change [`wait_next_hop_gone`] may see it: its 10 ms poll, plus reading the
/// routes (an `ip` process) on a busy machine.
pub const ROUTE_POLL_SLACK: Duration = Duration::from_millis(50);

/// What the client saw during one fault: one report per address, and where the local one went.
#[derive(Debug)]
pub struct Outcome {
    pub local: ProbeReport,
    pub routed: ProbeReport,
    pub holder_before: String,
    pub holder_after: String,
    /// From the fault until the local address was on another node (faults that move it).
    pub moved_after: Option<Duration>,
    /// When the fault began, on the probes' clock ([`purelb_lab::Probe::sent`]).
    pub fault_at: Duration,
    /// From the fault until the router no longer routed the routed address via the lost node
    /// ([`Fault::KillAndCut`], [`Fault::NodeShutdown`]).
    pub next_hop_gone_after: Option<Duration>,
}

impl Outcome {
    /// How long after the fault the last failed request to the routed address was sent (zero when
    /// none failed after it).
    pub fn routed_failing_for(&self) -> Duration {
        self.routed
            .probes
            .iter()
            .filter(|p| p.result.is_err())
            .map(|p| p.sent.saturating_sub(self.fault_at))
            .max()
            .unwrap_or_default()
    }
}

/// Applies `fault` while probing both addresses; returns what the client saw. Leaves every agent
/// running and every node connected, as found.
pub async fn apply(lab: &ControlPlane, dp: &mut DataPath, t: &Targets, fault: Fault) -> Outcome {
    let config =
        ProbeConfig { max_requests: 20_000, max_duration: Duration::from_secs(150), ..Default::default() };
    let [local_to, routed_to] = t.addresses();
    let holder_before = elected(&dp.net, &t.local).await;
    if fault == Fault::KillAndCut {
        // The lost node's own pods stay Ready in their EndpointSlices (no kubelet reports, and a real
        // node controller waits 40 s): what reaches them fails whoever carries the address. The
        // Services select only the other nodes' pods, so what fails is the address's outage.
        only_pods_off(lab, t, &holder_before, dp).await;
    }
    let probing = Instant::now();
    let probers =
        [dp.client.probe(local_to, config.clone()).unwrap(), dp.client.probe(routed_to, config).unwrap()];
    // A second of steady traffic first, so every report starts answered.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let began = Instant::now();
    let fault_at = began - probing;
    let (mut moved_after, mut moved_to, mut next_hop_gone_after) = (None, None, None);
    match fault {
        Fault::Sigterm => {
            let i = index_of(dp, &holder_before);
            dp.cluster.agents[i].child.terminate().await.unwrap();
            moved_to = Some(wait_moved(dp, &t.local, &holder_before).await);
            moved_after = Some(began.elapsed());
            restart(lab, dp, i).await;
        }
        Fault::KillAndCut => {
            let i = index_of(dp, &holder_before);
            let node = dp.net.node(&holder_before).unwrap();
            node.set_link(false).await.unwrap();
            dp.cluster.agents[i].child.kill().unwrap();
            let (to, after, gone) = wait_node_left(dp, t, &holder_before, node.ipv4().into(), began).await;
            (moved_to, moved_after, next_hop_gone_after) = (Some(to), Some(after), Some(gone));
        }
        Fault::NodeShutdown => {
            let i = index_of(dp, &holder_before);
            let node = dp.net.node(&holder_before).unwrap();
            let client = lab.admin_client().await.unwrap();
            node.set_shutting_down(&client, true).await.unwrap();
            let (to, after, gone) = wait_node_left(dp, t, &holder_before, node.ipv4().into(), began).await;
            (moved_to, moved_after, next_hop_gone_after) = (Some(to), Some(after), Some(gone));
            // The kubelet stops the node-critical pods last: the agent, after its addresses moved.
            dp.cluster.agents[i].child.terminate().await.unwrap();
        }
        Fault::RollingRestart => {
            for i in 0..dp.agents.len() {
                dp.cluster.agents[i].child.terminate().await.unwrap();
                restart(lab, dp, i).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        Fault::ApiPause(pause) => {
            lab.pause_apiserver().unwrap();
            tokio::time::sleep(pause).await;
            lab.resume_apiserver().unwrap();
            // More than a Lease duration for every agent to renew and judge again.
            tokio::time::sleep(Duration::from_secs(6)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let [local, routed] = probers;
    let (local, routed) = (local.stop().await.unwrap(), routed.stop().await.unwrap());
    // A lost node keeps its address (its agent is gone, its cable out): the new holder is the other one.
    let holder_after = match moved_to {
        Some(node) if matches!(fault, Fault::KillAndCut | Fault::NodeShutdown) => node,
        _ => elected(&dp.net, &t.local).await,
    };
    if fault == Fault::NodeShutdown {
        // The node back up: its kubelet posts Ready, its agent starts, and the router routes the
        // routed address via every node again.
        let client = lab.admin_client().await.unwrap();
        dp.net.node(&holder_before).unwrap().set_shutting_down(&client, false).await.unwrap();
        restart(lab, dp, index_of(dp, &holder_before)).await;
        wait_route_via_every_node(dp, t).await;
    }
    if fault == Fault::KillAndCut {
        // Back as found: the cable in, a new agent, the router routing the routed address via every
        // node again (BGP re-established), and both addresses answering.
        dp.net.node(&holder_before).unwrap().set_link(true).await.unwrap();
        restart(lab, dp, index_of(dp, &holder_before)).await;
        wait_route_via_every_node(dp, t).await;
    }
    Outcome { local, routed, holder_before, holder_after, moved_after, fault_at, next_hop_gone_after }
}

/// Waits until the router routes the routed address via every node and both addresses answer steadily.
async fn wait_route_via_every_node(dp: &DataPath, t: &Targets) {
    let hops: Vec<String> = dp.net.nodes().iter().map(|n| n.ipv4().to_string()).collect();
    let hops: Vec<&str> = hops.iter().map(String::as_str).collect();
    wait_route(&dp.net, &format!("{}/32", t.routed), &hops).await;
    for to in t.addresses() {
        wait_settled(&dp.client, to).await;
    }
}

/// Narrows both Services' selectors to the pods not on `node`, and waits until they answer steadily.
async fn only_pods_off(lab: &ControlPlane, t: &Targets, node: &str, dp: &DataPath) {
    let client = lab.admin_client().await.unwrap();
    let api: Api<Service> = Api::namespaced(client.clone(), t.ns.name());
    let others: Vec<&LabPod> = t.pods.iter().filter(|p| p.node() != node).collect();
    let other = others.first().map(|p| p.node().to_owned()).expect("a pod on another node");
    for service in ["local", "routed"] {
        let patch = serde_json::json!({"spec": {"selector": {"app": "echo", "node": other}}});
        api.patch(service, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        wait_endpoints(&client, t.ns.name(), service, &others, false).await;
    }
    for to in t.addresses() {
        wait_settled(&dp.client, to).await;
    }
}

fn index_of(dp: &DataPath, node: &str) -> usize {
    dp.agents.iter().position(|a| a.node == node).unwrap_or_else(|| panic!("no agent on {node}"))
}

/// Starts agent `i` again on its node and waits until it is ready.
async fn restart(lab: &ControlPlane, dp: &mut DataPath, i: usize) {
    let node = dp.agents[i].node.clone();
    let agent = start_agent(lab, &dp.net, &node, &["--log-format=text"]).await;
    wait_agent_ready(&agent).await;
    dp.cluster.agents[i] = agent;
}

/// Waits until the local address moved off `node` and the router no longer routes the routed address
/// via `hop` (the node's address); returns the new holder and both times since `began`.
async fn wait_node_left(
    dp: &DataPath,
    t: &Targets,
    node: &str,
    hop: IpAddr,
    began: Instant,
) -> (String, Duration, Duration) {
    let route = format!("{}/32", t.routed);
    let ((to, moved), gone) = tokio::join!(
        async {
            let to = wait_moved(dp, &t.local, node).await;
            (to, began.elapsed())
        },
        async {
            wait_next_hop_gone(dp, &route, hop).await;
            began.elapsed()
        }
    );
    (to, moved, gone)
}

/// Waits (at most 30 s, polling every 10 ms) until the router's route `dst` no longer has `hop`.
async fn wait_next_hop_gone(dp: &DataPath, dst: &str, hop: IpAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while route_nexthops(&dp.net, dst).await.contains(&hop) {
        assert!(Instant::now() < deadline, "the router still routes {dst} via {hop} after 30 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits (at most 30 s, polling at least every 50 ms) until a node other than `from` holds `ip` on its
/// LAN; returns that node.
async fn wait_moved(dp: &DataPath, ip: &str, from: &str) -> String {
    wait_for(&format!("{ip} to move off {from}"), Duration::from_secs(30), || async {
        let held = holders(&dp.net, ip).await;
        held.into_iter()
            .find(|(node, interface, _)| node != from && interface == "eth0")
            .map(|(node, _, _)| node)
    })
    .await
    .unwrap()
}
