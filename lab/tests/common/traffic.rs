//! Traffic through PureLB's addresses: a cluster with kube-proxy on every node and a client behind the
//! router ([`DataPath`]), echo pods and Services for them, and what the client's requests tell (who
//! answered, which node they entered by).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};
use purelb_core::api::annotations;
use purelb_lab::{
    ControlPlane, ECHO_PORT, EchoReply, KubeProxies, LabClient, LabPod, Network, ProbeConfig, ProbeReport,
    wait_for,
};

use super::{Cluster, holders, lb_service, start_cluster};

/// Starts PureLB's cluster on `nodes` (the allocator as `identity`), kube-proxy on every node and the
/// client behind the router.
pub async fn start_data_path(lab: &ControlPlane, identity: &str, nodes: &[&str]) -> DataPath {
    let began = Instant::now();
    let cluster = start_cluster(lab, identity, nodes).await;
    let proxies = cluster.net.start_kube_proxies(lab).await.expect("kube-proxy on every node");
    let client = cluster.net.add_client().await.expect("client behind the router");
    eprintln!("cluster (network, agents, kube-proxies, client) ready in {:?}", began.elapsed());
    DataPath { cluster, client, proxies }
}

/// PureLB's cluster plus kube-proxy on every node and a client behind the router.
pub struct DataPath {
    pub cluster: Cluster,
    pub client: LabClient,
    pub proxies: KubeProxies,
}

impl std::ops::Deref for DataPath {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        &self.cluster
    }
}

/// The node(s) holding `ip` on eth0, once exactly one does.
pub async fn elected(net: &Network, ip: &str) -> String {
    wait_for(&format!("{ip} on exactly one node's eth0"), Duration::from_secs(30), || async {
        let held = holders(net, ip).await;
        match held.as_slice() {
            [(node, interface, _)] if interface == "eth0" => Ok(node.clone()),
            _ => Err(format!("held by {held:?}")),
        }
    })
    .await
    .unwrap()
}

/// The ready endpoint addresses of the Service's EndpointSlices, sorted.
pub async fn ready_endpoints(slices: &Api<EndpointSlice>, service: &str) -> Vec<String> {
    let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
    let mut addresses: Vec<String> = slices
        .list(&lp)
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .flat_map(|s| s.endpoints.unwrap_or_default())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
        .flat_map(|e| e.addresses)
        .collect();
    addresses.sort();
    addresses
}

/// The MAC the router has for `ip` in its neighbour table, if any.
pub fn router_neighbour(net: &Network, ip: &str) -> Option<String> {
    let out = std::process::Command::new("ip")
        .args(["-n", net.router_netns(), "-j", "neigh", "show", ip])
        .output()
        .expect("ip neigh");
    let entries: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    entries.get(0)?.get("lladdr")?.as_str().map(str::to_owned)
}

/// Runs an echo pod labelled `app=<app>` and `node=<node>` on each of `nodes`, named `<app>-<node>`.
pub async fn run_pods(
    lab: &ControlPlane,
    net: &Network,
    client: &kube::Client,
    ns: &str,
    app: &str,
    nodes: &[&str],
) -> Vec<LabPod> {
    let mut pods = Vec::new();
    for node in nodes {
        let name = format!("{app}-{node}");
        let labels = [("app", app), ("node", node)];
        pods.push(net.run_pod(lab, client, ns, &name, node, &labels).await.expect("pod"));
    }
    pods
}

/// A LoadBalancer Service of `group` on `port` for the echo pods labelled `app=<app>`, with more
/// annotations and spec lines.
pub fn echo_service(
    name: &str,
    port: i32,
    group: &str,
    app: &str,
    annotations: &[(&str, &str)],
    spec: &str,
) -> Service {
    let mut all = vec![(annotations::SERVICE_GROUP, group)];
    all.extend_from_slice(annotations);
    let spec = format!("    targetPort: {ECHO_PORT}\n  selector:\n    app: {app}\n{spec}");
    lb_service(name, port, &all, &spec)
}

pub const DUAL_STACK: &str = "  ipFamilyPolicy: RequireDualStack\n  ipFamilies: [IPv4, IPv6]\n";

/// Waits until the Service's EndpointSlices hold exactly `pods` as ready endpoints (`v6`: their IPv6
/// addresses too).
pub async fn wait_endpoints(client: &kube::Client, ns: &str, service: &str, pods: &[&LabPod], v6: bool) {
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    let mut want: Vec<String> = pods.iter().map(|p| p.ipv4().to_string()).collect();
    if v6 {
        want.extend(pods.iter().map(|p| p.ipv6().to_string()));
    }
    want.sort();
    wait_for(&format!("{service}'s ready endpoints to be {want:?}"), Duration::from_secs(30), || async {
        let got = ready_endpoints(&slices, service).await;
        if got == want { Ok(()) } else { Err(format!("ready endpoints {got:?}")) }
    })
    .await
    .unwrap();
}

/// The first answer from `to`: kube-proxy needs up to a second or so to program a new Service.
pub async fn first_answer(c: &LabClient, to: SocketAddr) -> EchoReply {
    wait_for(&format!("an echo pod answering the client at {to}"), Duration::from_secs(30), || {
        c.http_get(to, Duration::from_secs(1))
    })
    .await
    .unwrap()
}

/// Waits until 20 requests in a row to `to` are answered: every node that carries the address has
/// kube-proxy's rules for it (a node that has the address but not yet the rules refuses).
pub async fn wait_settled(c: &LabClient, to: SocketAddr) {
    first_answer(c, to).await;
    wait_for(&format!("20 requests in a row to {to} answered"), Duration::from_secs(30), || async {
        let report = probe(c, to, 20).await;
        if report.failed() == 0 { Ok(()) } else { Err(report.summary()) }
    })
    .await
    .unwrap();
}

/// Waits until nothing answers at `to` any more: 20 requests in a row fail (kube-proxy takes up to a
/// second or so to drop a deleted Service's rules).
pub async fn wait_unanswered(c: &LabClient, to: SocketAddr) -> ProbeReport {
    let quick = ProbeConfig { max_requests: 20, timeout: Duration::from_millis(300), ..Default::default() };
    wait_for(&format!("20 requests in a row to {to} unanswered"), Duration::from_secs(30), || async {
        let report = c.probe(to, quick.clone()).unwrap().finish().await.unwrap();
        if report.failed() == report.sent() { Ok(report) } else { Err(report.summary()) }
    })
    .await
    .unwrap()
}

/// `count` requests to `to`, every one on a new connection, 10 ms apart.
pub async fn probe(c: &LabClient, to: SocketAddr, count: usize) -> ProbeReport {
    let config =
        ProbeConfig { max_requests: count, max_duration: Duration::from_secs(30), ..Default::default() };
    c.probe(to, config).unwrap().finish().await.unwrap()
}

/// The nodes the requests entered the cluster by, from the source addresses the pods saw (kube-proxy
/// masquerades to the entry node's address).
pub fn entry_nodes(net: &Network, report: &ProbeReport) -> BTreeSet<String> {
    report
        .clients_seen()
        .into_iter()
        .map(|ip| {
            net.node_with_address(ip).map_or_else(|| format!("not a node: {ip}"), |n| n.name().to_owned())
        })
        .collect()
}

pub fn names(pods: &[&LabPod]) -> BTreeSet<String> {
    pods.iter().map(|p| p.name().to_owned()).collect()
}

pub fn at(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse::<IpAddr>().unwrap(), port)
}
