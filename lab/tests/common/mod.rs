//! Helpers shared by the lab's e2e tests: install PureLB's manifests from deploy/, run the allocator and
//! agents as their own ServiceAccounts, build Services and ServiceGroups, read back what PureLB wrote,
//! and read where the lab network's nodes and router put each address.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod failover;
pub mod traffic;

use std::net::{IpAddr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use purelb_core::api::{ServiceGroup, conditions};
use purelb_lab::{Child, ControlPlane, wait_for};

pub const NS: &str = "purelb-system";

/// Applies deploy/'s namespace, CRDs, allocator and agent RBAC and the FlowSchema that gives their Lease
/// requests the leader-election priority level (idempotent: server-side apply).
pub async fn install(lab: &ControlPlane) {
    let root = purelb_lab::workspace_root();
    for f in [
        "deploy/namespace.yaml",
        "deploy/crds.yaml",
        "deploy/allocator-rbac.yaml",
        "deploy/agent-rbac.yaml",
        "deploy/flowcontrol.yaml",
    ] {
        lab.apply_file(&root.join(f)).await.unwrap_or_else(|e| panic!("applying {f}: {e}"));
    }
}

/// A free loopback port for an admin server.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running allocator and where its admin server listens.
pub struct Allocator {
    pub child: Child,
    pub admin: String,
}

/// Starts `purelb-allocator` authenticated as the `purelb-allocator` ServiceAccount (so deploy/'s RBAC is
/// what it runs with), with fast lease timings, and waits for `/readyz` when `wait_ready`.
pub async fn start_allocator(
    lab: &ControlPlane,
    identity: &str,
    extra: &[&str],
    wait_ready: bool,
) -> Allocator {
    install(lab).await;
    let kubeconfig = lab.service_account_kubeconfig(NS, "purelb-allocator").await.expect("allocator token");
    let port = free_port();
    let mut args: Vec<String> = vec![
        format!("--namespace={NS}"),
        format!("--identity={identity}"),
        format!("--admin-addr=127.0.0.1:{port}"),
        "--lease-duration=3".into(),
        "--lease-renew-ms=500".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let bin = purelb_lab::binary("purelb-allocator").expect("purelb-allocator binary");
    let child = lab.spawn(&bin, &args, &kubeconfig, identity).expect("spawn allocator");
    let admin = format!("127.0.0.1:{port}");
    if wait_ready {
        wait_ready_at(&admin, &child).await;
    }
    Allocator { child, admin }
}

/// Waits until the allocator at `admin` answers /readyz with 200.
pub async fn wait_ready_at(admin: &str, child: &Child) {
    let admin = admin.to_string();
    wait_for("allocator /readyz", Duration::from_secs(60), || {
        let admin = admin.clone();
        async move { (http_get(&admin, "/readyz").await.map(|(code, _)| code) == Some(200)).then_some(()) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n--- allocator log ---\n{}", child.log_tail(40)));
}

/// A minimal HTTP/1.0 GET on loopback: (status code, body).
pub async fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes()).await.ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((code, body))
}

/// Parses one YAML object.
pub fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("bad test YAML: {e}\n{text}"))
}

/// A LoadBalancer Service on port `port` with extra annotation/spec YAML lines.
pub fn lb_service(name: &str, port: i32, annotations: &[(&str, &str)], spec_extra: &str) -> Service {
    let mut svc: Service = yaml(&format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  type: LoadBalancer\n  ports:\n  - port: {port}\n    protocol: TCP\n{spec_extra}"
    ));
    if !annotations.is_empty() {
        svc.metadata.annotations =
            Some(annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    }
    svc
}

/// A ServiceGroup with one v4 pool (and optionally one v6 pool).
pub fn group(name: &str, v4: Option<(&str, &str, &str)>, v6: Option<(&str, &str, &str)>) -> ServiceGroup {
    let mut text =
        format!("apiVersion: purelb.io/v1\nkind: ServiceGroup\nmetadata:\n  name: {name}\nspec:\n  local:\n");
    if let Some((subnet, pool, agg)) = v4 {
        text += &format!(
            "    v4pools:\n    - subnet: '{subnet}'\n      pool: '{pool}'\n      aggregation: '{agg}'\n"
        );
    }
    if let Some((subnet, pool, agg)) = v6 {
        text += &format!(
            "    v6pools:\n    - subnet: '{subnet}'\n      pool: '{pool}'\n      aggregation: '{agg}'\n"
        );
    }
    yaml(&text)
}

pub async fn create_group(client: &Client, ns: &str, g: &ServiceGroup) {
    Api::<ServiceGroup>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), g)
        .await
        .unwrap_or_else(|e| panic!("creating ServiceGroup: {e}"));
}

pub async fn create(api: &Api<Service>, svc: &Service) -> Service {
    api.create(&PostParams::default(), svc).await.unwrap_or_else(|e| panic!("creating Service: {e}"))
}

pub fn ingress(svc: &Service) -> Vec<String> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref())
        .map(|i| i.iter().filter_map(|i| i.ip.clone()).collect())
        .unwrap_or_default()
}

pub fn allocated_condition(svc: &Service) -> Option<Condition> {
    svc.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == conditions::ALLOCATED).cloned()
}

/// Waits until the Service shows `n` ingress addresses; returns it.
pub async fn wait_ingress(api: &Api<Service>, name: &str, n: usize) -> Service {
    let name = name.to_string();
    wait_for(&format!("{n} ingress address(es) on Service {name}"), Duration::from_secs(30), || {
        let (api, name) = (api.clone(), name.clone());
        async move { api.get_opt(&name).await.ok().flatten().filter(|s| ingress(s).len() == n) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Waits until the `purelb.io/Allocated` condition has `reason`; returns the Service.
pub async fn wait_reason(api: &Api<Service>, name: &str, reason: &str) -> Service {
    let (name, reason) = (name.to_string(), reason.to_string());
    wait_for(&format!("condition reason {reason} on Service {name}"), Duration::from_secs(30), || {
        let (api, name, reason) = (api.clone(), name.clone(), reason.clone());
        async move {
            api.get_opt(&name)
                .await
                .ok()
                .flatten()
                .filter(|s| allocated_condition(s).is_some_and(|c| c.reason == reason))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// (type, reason, message, reporting component) of every event about the Service `name`.
pub async fn events(client: &Client, ns: &str, name: &str) -> Vec<(String, String, String, String)> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().fields(&format!("involvedObject.name={name},involvedObject.kind=Service"));
    api.list(&lp)
        .await
        .map(|l| {
            l.items
                .into_iter()
                .map(|e| {
                    let component = e
                        .source
                        .as_ref()
                        .and_then(|s| s.component.clone())
                        .filter(|c| !c.is_empty())
                        .or(e.reporting_component.clone())
                        .unwrap_or_default();
                    (
                        e.type_.unwrap_or_default(),
                        e.reason.unwrap_or_default(),
                        e.message.unwrap_or_default(),
                        component,
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// How many times an event with `reason` was recorded about the Service `name`: repeats of one event are
/// one Event object with a count, so this sums the counts.
pub async fn occurrences(client: &Client, ns: &str, name: &str, reason: &str) -> i32 {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().fields(&format!("involvedObject.name={name},involvedObject.kind=Service"));
    let items = api.list(&lp).await.map(|l| l.items).unwrap_or_default();
    items
        .iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .map(|e| e.series.as_ref().and_then(|s| s.count).or(e.count).unwrap_or(1).max(1))
        .sum()
}

/// Waits for an event with `reason` and `message` on the Service; returns all its events.
pub async fn wait_event(
    client: &Client,
    ns: &str,
    name: &str,
    reason: &str,
    message: &str,
) -> Vec<(String, String, String, String)> {
    let what = format!("event {reason} {message:?} on Service {ns}/{name}");
    wait_for(&what, Duration::from_secs(30), || async {
        let evs = events(client, ns, name).await;
        evs.iter().any(|(_, r, m, _)| r == reason && m == message).then_some(evs)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Runs the lab's kubectl with the admin kubeconfig; panics with its output when it fails.
pub fn kubectl(lab: &ControlPlane, args: &[&str]) -> String {
    let out = lab.kubectl_command().args(args).output().expect("running kubectl");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "kubectl {args:?} failed:\n{text}");
    text
}

/// Like [`kubectl`] but returns (success, output) instead of panicking.
pub fn kubectl_try(lab: &ControlPlane, args: &[&str]) -> (bool, String) {
    let out = lab.kubectl_command().args(args).output().expect("running kubectl");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

pub fn example(name: &str) -> PathBuf {
    purelb_lab::workspace_root().join("examples").join(name)
}

/// A running node agent.
pub struct Agent {
    pub node: String,
    pub child: Child,
    pub admin: String,
}

/// Starts `purelb-agent` inside `node`'s network namespace, authenticated as the `purelb-agent`
/// ServiceAccount (deploy/'s RBAC), reaching the API server through the lab's relay on the LAN.
pub async fn start_agent(lab: &ControlPlane, net: &purelb_lab::Network, node: &str, extra: &[&str]) -> Agent {
    let kubeconfig = agent_kubeconfig(lab, net).await;
    spawn_agent(lab, net, node, &kubeconfig, extra)
}

/// Installs deploy/'s manifests and returns a kubeconfig for the `purelb-agent` ServiceAccount that
/// reaches the API server through the lab's relay (needs the API server: get it before a fault).
pub async fn agent_kubeconfig(lab: &ControlPlane, net: &purelb_lab::Network) -> PathBuf {
    install(lab).await;
    let sa = lab.service_account_kubeconfig(NS, "purelb-agent").await.expect("agent token");
    net.kubeconfig_for_nodes(&sa).expect("kubeconfig for nodes")
}

/// Starts `purelb-agent` in `node`'s namespace with `kubeconfig`, without any API call.
pub fn spawn_agent(
    lab: &ControlPlane,
    net: &purelb_lab::Network,
    node: &str,
    kubeconfig: &std::path::Path,
    extra: &[&str],
) -> Agent {
    let n = net.node(node).unwrap_or_else(|| panic!("no lab node {node}"));
    let port = free_port();
    let mut args: Vec<String> = vec![
        format!("--node-name={node}"),
        format!("--namespace={NS}"),
        format!("--admin-addr=127.0.0.1:{port}"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let bin = purelb_lab::binary("purelb-agent").expect("purelb-agent binary");
    let child = n.spawn(lab, &bin, &args, kubeconfig, &format!("agent-{node}-{port}")).expect("spawn agent");
    Agent { node: node.to_string(), child, admin: format!("127.0.0.1:{port}") }
}

/// Starts an agent with text logs on each of `nodes` and waits until every one is ready.
pub async fn start_agents(lab: &ControlPlane, net: &purelb_lab::Network, nodes: &[&str]) -> Vec<Agent> {
    let mut agents = Vec::new();
    for n in nodes {
        agents.push(start_agent(lab, net, n, &["--log-format=text"]).await);
    }
    for a in &agents {
        wait_agent_ready(a).await;
    }
    agents
}

/// A lab network with the allocator and an agent on each node, all ready.
pub struct Cluster {
    pub net: purelb_lab::Network,
    pub allocator: Allocator,
    pub agents: Vec<Agent>,
}

/// Starts the allocator (as `identity`), a network of `nodes` and an agent on each node.
pub async fn start_cluster(lab: &ControlPlane, identity: &str, nodes: &[&str]) -> Cluster {
    let allocator = start_allocator(lab, identity, &[], true).await;
    let config = purelb_lab::NetworkConfig { nodes: nodes.len(), ..Default::default() };
    let net = purelb_lab::Network::create(lab, config).await.expect("network");
    let agents = start_agents(lab, &net, nodes).await;
    Cluster { net, allocator, agents }
}

/// Waits until the agent reports its first reconcile (the moment it turns /readyz on; its admin server
/// listens inside the node's namespace, out of the test's reach, so its log line is the signal).
pub async fn wait_agent_ready(agent: &Agent) {
    let log = agent.child.log_path().to_path_buf();
    wait_for(&format!("agent on {} ready", agent.node), Duration::from_secs(60), || {
        let log = log.clone();
        async move {
            std::fs::read_to_string(&log).ok().filter(|l| l.contains("first reconcile done")).map(|_| ())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n--- agent log ---\n{}", agent.child.log_tail(40)));
}

/// (node, interface, prefix_len) of every lab node holding `ip`.
pub async fn holders(net: &purelb_lab::Network, ip: &str) -> Vec<(String, String, u8)> {
    let ip: std::net::IpAddr = ip.parse().expect("ip");
    let mut out = Vec::new();
    for n in net.nodes() {
        for (interface, prefix_len) in n.placements(ip).await.expect("node addresses") {
            out.push((n.name().to_string(), interface, prefix_len));
        }
    }
    out
}

/// Waits until exactly the nodes in `expected` hold `ip` (as (node, interface, prefix_len)).
pub async fn wait_holders(net: &purelb_lab::Network, ip: &str, expected: &[(&str, &str, u8)]) {
    let mut want: Vec<(String, String, u8)> =
        expected.iter().map(|(n, i, p)| (n.to_string(), i.to_string(), *p)).collect();
    want.sort();
    let what = format!("{ip} held by exactly {want:?}");
    wait_for(&what, Duration::from_secs(30), || {
        let want = want.clone();
        async move {
            let mut got = holders(net, ip).await;
            got.sort();
            if got == want { Ok(()) } else { Err(format!("held by {got:?}")) }
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// An EndpointSlice for Service `svc` with one ready endpoint on each of `nodes`.
pub fn endpoint_slice(svc: &str, nodes: &[&str]) -> k8s_openapi::api::discovery::v1::EndpointSlice {
    let mut text = format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {svc}-lab\n  labels:\n    kubernetes.io/service-name: {svc}\naddressType: IPv4\nports:\n- port: 8080\n  protocol: TCP\nendpoints:\n"
    );
    for (i, n) in nodes.iter().enumerate() {
        // Pod addresses are API data only (nothing is sent to them): LAN documentation addresses.
        text += &format!(
            "- addresses: ['192.0.2.{}']\n  nodeName: {n}\n  conditions:\n    ready: true\n",
            100 + i
        );
    }
    if nodes.is_empty() {
        text = text.replace("endpoints:\n", "endpoints: []\n");
    }
    yaml(&text)
}

/// Waits until some event about the Service `name` satisfies `pred`; returns all its events. (The
/// allocator publishes an event just after the condition it goes with, so reading right after seeing
/// the condition would race.)
pub async fn wait_events_where(
    client: &Client,
    ns: &str,
    name: &str,
    what: &str,
    pred: impl Fn(&(String, String, String, String)) -> bool,
) -> Vec<(String, String, String, String)> {
    wait_for(&format!("{what} on Service {ns}/{name}"), Duration::from_secs(30), || async {
        let evs = events(client, ns, name).await;
        if evs.iter().any(&pred) { Ok(evs) } else { Err(format!("{evs:?}")) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The MAC address of `node`'s LAN interface (eth0).
pub fn mac_of(net: &purelb_lab::Network, node: &str) -> String {
    let out = net.node(node).unwrap().command("ip").args(["-j", "link", "show", "eth0"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0]["address"].as_str().unwrap().to_string()
}

/// A tcpdump on the LAN bridge (ARP and ICMPv6, text, line-buffered into a file); killed on drop.
pub struct Capture {
    child: std::process::Child,
    file: std::path::PathBuf,
}

impl Capture {
    pub fn start(net: &purelb_lab::Network) -> Capture {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let file = std::env::temp_dir().join(format!("purelb-capture-{}-{n}.txt", std::process::id()));
        let out = std::fs::File::create(&file).unwrap();
        // `ip netns exec` execs tcpdump in place, so killing this child kills tcpdump itself.
        let child = std::process::Command::new("ip")
            .args(["netns", "exec", net.lan_netns(), "tcpdump", "-i", net.bridge(), "-nn", "-e", "-l"])
            .args(["arp", "or", "icmp6"])
            .stdout(out)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("tcpdump (installed by .ci/run)");
        Capture { child, file }
    }

    pub fn text(&self) -> String {
        std::fs::read_to_string(&self.file).unwrap_or_default()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.file);
    }
}

/// The router's next hops for `dst` (a BIRD route), sorted.
pub async fn route_nexthops(net: &purelb_lab::Network, dst: &str) -> Vec<IpAddr> {
    let mut hops = net
        .router_routes()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.dst == dst)
        .map(|r| r.nexthops)
        .unwrap_or_default();
    hops.sort();
    hops
}

/// Waits until the router routes `dst` via exactly `want`.
pub async fn wait_route(net: &purelb_lab::Network, dst: &str, want: &[&str]) {
    let mut want: Vec<IpAddr> = want.iter().map(|s| s.parse().unwrap()).collect();
    want.sort();
    wait_for(&format!("router route {dst} via {want:?}"), Duration::from_secs(30), || {
        let want = want.clone();
        async move {
            let got = route_nexthops(net, dst).await;
            if got == want { Ok(()) } else { Err(format!("via {got:?}")) }
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}
