//! Pods without a kubelet: for each, a network namespace wired to its node by a veth, the echo server
//! (`purelb-lab-echo`) running inside it as a supervised child, and a Pod object whose status the lab
//! writes as a kubelet would once the server answers, so kube-controller-manager puts it in the Service's
//! EndpointSlices and kube-proxy sends traffic to it.
//!
//! Addresses (benchmarking and documentation ranges, apart from the Services' 198.18.0.0/16):
//!
//! ```text
//!   cluster CIDRs 198.19.64.0/18 and 2001:db8:300::/56 (kube-proxy's --cluster-cidr)
//!   node<i>'s pods 198.19.(64+i).0/24 and 2001:db8:300:<i>::/64
//!     the node's end of every pod veth  .1 / ::1 (the pods' gateway, /32 and /128)
//!     pods                              .10 to .254 / ::10 to ::254 (the group reads like the byte)
//! ```
//!
//! A pod has its address as a /32 and /128 on its `eth0`, an on-link route to the gateway and its default
//! routes via it; the node has a /32 and /128 route to each of its pods via their veths. Once a network has
//! pods, every node forwards (IPv4 and IPv6, reverse-path filtering off: kube-proxy's NAT makes paths
//! that a strict filter would drop) and routes every other node's pod CIDRs via that node's LAN address.
//!
//! Exposes [`LabPod`] (made by [`Network::run_pod`]) and the address plan's constants.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, ContainerState, ContainerStateRunning, ContainerStatus, HostIP, Pod,
    PodCondition, PodIP, PodSpec, PodStatus, ServiceAccount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;

use super::client::fetch_in;
use super::netns::Namespaces;
use super::tools::Tools;
use super::{LAN_INTERFACE, LabNode, Network, reads_as_decimal};
use crate::{Child, ControlPlane, LabError, binary, spawn_supervised, wait_for};

/// Every pod address of the lab's nodes, as kube-proxy's `--cluster-cidr` names them.
pub const POD_CLUSTER_CIDR_V4: &str = "198.19.64.0/18";
pub const POD_CLUSTER_CIDR_V6: &str = "2001:db8:300::/56";
/// Where the echo server listens in every pod (IPv4 and IPv6).
pub const ECHO_PORT: u16 = 8080;
/// The image the Pod objects name (nothing pulls it: the lab runs `purelb-lab-echo` itself).
pub const ECHO_IMAGE: &str = "purelb-lab/echo:dev";
/// The one container of every lab pod.
const CONTAINER: &str = "echo";
const POD_PREFIX_V4: u8 = 24;
const POD_PREFIX_V6: u8 = 64;
/// The host parts of pod addresses; `.1` is the gateway, `.2`-`.9` stay free for other uses.
const FIRST_POD: u8 = 10;
const LAST_POD: u8 = 254;
const GATEWAY: u8 = 1;
/// kube-controller-manager makes a namespace's `default` ServiceAccount within a second or so.
const SERVICE_ACCOUNT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a new echo server may take to answer (it starts in milliseconds; a busy machine is slower).
const ECHO_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Each readiness request.
const ECHO_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// `198.19.(64+i).0`: node `i`'s IPv4 pod network (a /24).
pub(crate) fn pod_network_v4(node: usize) -> Ipv4Addr {
    pod_ipv4(node, 0)
}

/// `2001:db8:300:<i>::`: node `i`'s IPv6 pod network (a /64).
pub(crate) fn pod_network_v6(node: usize) -> Ipv6Addr {
    pod_ipv6(node, 0)
}

fn pod_ipv4(node: usize, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, u8::try_from(64 + node).unwrap_or(u8::MAX), host)
}

fn pod_ipv6(node: usize, host: u8) -> Ipv6Addr {
    let host = if host == 0 { 0 } else { reads_as_decimal(usize::from(host)) };
    Ipv6Addr::new(0x2001, 0xdb8, 0x300, reads_as_decimal(node), 0, 0, 0, host)
}

// === pod slots ===

/// The network's pod bookkeeping: which addresses are taken and whether the nodes route pods yet.
#[derive(Debug, Default)]
pub(crate) struct PodState {
    slots: Arc<Mutex<Slots>>,
    routed: tokio::sync::OnceCell<()>,
}

#[derive(Debug, Default)]
struct Slots {
    /// (node index, host part) of every live pod.
    taken: BTreeSet<(usize, u8)>,
    /// Per node, where the search for a free host part starts: round robin, so a new pod does not get
    /// the address (and veth name) of one whose namespace the kernel may still be tearing down.
    next: BTreeMap<usize, u8>,
}

/// One taken pod address; dropping it frees the address.
#[derive(Debug)]
struct PodSlot {
    slots: Arc<Mutex<Slots>>,
    node: usize,
    host: u8,
}

impl PodSlot {
    fn take(slots: &Arc<Mutex<Slots>>, node: usize, node_name: &str) -> Result<PodSlot, LabError> {
        let mut guard = lock(slots);
        let start = guard.next.get(&node).copied().unwrap_or(FIRST_POD);
        let free = (start..=LAST_POD)
            .chain(FIRST_POD..start)
            .find(|host| !guard.taken.contains(&(node, *host)))
            .ok_or_else(|| {
                LabError::io(
                    format!("placing a pod on {node_name}"),
                    std::io::Error::other(format!(
                        "every pod address of {node_name} is taken ({} pods)",
                        LAST_POD - FIRST_POD + 1
                    )),
                )
            })?;
        guard.taken.insert((node, free));
        guard.next.insert(node, if free == LAST_POD { FIRST_POD } else { free + 1 });
        Ok(PodSlot { slots: Arc::clone(slots), node, host: free })
    }
}

impl Drop for PodSlot {
    fn drop(&mut self) {
        lock(&self.slots).taken.remove(&(self.node, self.host));
    }
}

fn lock(slots: &Mutex<Slots>) -> MutexGuard<'_, Slots> {
    slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

// === impl Network ===

impl Network {
    /// The lab node whose LAN address or pods' gateway (`.1` / `::1` of its pod network) is `ip`. Those
    /// are the source addresses kube-proxy's masquerade gives the traffic a node forwards to a pod (the
    /// LAN address towards another node's pod, the gateway towards its own), so the client address an
    /// echo server saw names the node the request entered the cluster by.
    pub fn node_with_address(&self, ip: IpAddr) -> Option<&LabNode> {
        self.nodes().iter().find(|n| {
            [IpAddr::V4(n.ipv4()), IpAddr::V6(n.ipv6())].contains(&ip)
                || ip == IpAddr::V4(pod_ipv4(n.index, GATEWAY))
                || ip == IpAddr::V6(pod_ipv6(n.index, GATEWAY))
        })
    }

    /// Runs a pod named `name` in `namespace` on `node`: its namespace and veth, the echo server in it,
    /// the Pod object (one container `echo`, image [`ECHO_IMAGE`], `labels`, `spec.nodeName`), and, once
    /// the server answers on the pod's IPv4 and IPv6 addresses from inside the node, its status as a
    /// kubelet writes it (Running, Ready, pod and host IPs). `client` must be allowed to create Pods and
    /// write their status (the admin's is). The namespace's `default` ServiceAccount must appear within
    /// a minute (kube-controller-manager makes it).
    pub async fn run_pod(
        &self,
        cp: &ControlPlane,
        client: &kube::Client,
        namespace: &str,
        name: &str,
        node: &str,
        labels: &[(&str, &str)],
    ) -> Result<LabPod, LabError> {
        let began = Instant::now();
        let Some(lab_node) = self.node(node) else {
            let names: Vec<&str> = self.nodes.iter().map(LabNode::name).collect();
            return Err(LabError::io(
                format!("running pod {namespace}/{name}"),
                std::io::Error::other(format!("the lab network has no node {node:?} (it has {names:?})")),
            ));
        };
        wait_for_default_service_account(client, namespace).await?;
        self.route_pods().await?;

        let slot = PodSlot::take(&self.pods.slots, lab_node.index, node)?;
        let (ipv4, ipv6) = (pod_ipv4(lab_node.index, slot.host), pod_ipv6(lab_node.index, slot.host));
        let netns = format!("{}-n{}p{}", self.prefix, lab_node.index, slot.host);
        let veth = format!("veth{}", slot.host);
        let mut namespaces = Namespaces::default();
        namespaces.add(&self.tools, &netns).await?;
        wire_pod(&self.tools, lab_node, &netns, &veth, slot.host).await?;

        let mut command = Command::new(&self.tools.ip);
        command
            .args(["netns", "exec", &netns])
            .arg(binary("purelb-lab-echo")?)
            .args(["--pod", name, "--node", node, "--port", &ECHO_PORT.to_string()])
            .current_dir(cp.dir());
        let log_name = format!("pod-{namespace}-{name}");
        let server = spawn_supervised(command, &log_name, &cp.dir().join(format!("{log_name}.log")))?;

        let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
        api.create(&PostParams::default(), &pod_object(name, node, labels))
            .await
            .map_err(|e| LabError::kube(format!("creating Pod {namespace}/{name}"), e))?;
        let started = Time(k8s_openapi::jiff::Timestamp::now());
        // From here on, dropping the pod also deletes its object.
        let pod = LabPod {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            node: node.to_owned(),
            ipv4,
            ipv6,
            netns,
            node_netns: lab_node.netns().to_owned(),
            veth,
            tools: self.tools.clone(),
            api,
            deleted: false,
            server,
            _namespaces: namespaces,
            _slot: slot,
        };
        wait_echo_ready(lab_node, &pod).await?;
        let status = running_status(lab_node, &pod, started);
        pod.api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(json!({ "status": status })))
            .await
            .map_err(|e| LabError::kube(format!("writing the status of Pod {namespace}/{name}"), e))?;
        tracing::info!(
            pod = %name, namespace, node, %ipv4, %ipv6, elapsed = ?began.elapsed(),
            "lab pod running and Ready"
        );
        Ok(pod)
    }

    /// Once per network, before its first pod or kube-proxy: forwarding and loose paths on every node,
    /// and routes to every other node's pod CIDRs via its LAN addresses.
    pub(super) async fn route_pods(&self) -> Result<(), LabError> {
        self.pods.routed.get_or_try_init(|| self.set_up_pod_routing()).await.map(drop)
    }

    async fn set_up_pod_routing(&self) -> Result<(), LabError> {
        let sysctls = [
            "net.ipv4.ip_forward=1".to_owned(),
            "net.ipv6.conf.all.forwarding=1".to_owned(),
            "net.ipv4.conf.all.rp_filter=0".to_owned(),
            "net.ipv4.conf.default.rp_filter=0".to_owned(),
            format!("net.ipv4.conf.{LAN_INTERFACE}.rp_filter=0"),
        ];
        let sysctls: Vec<&str> = sysctls.iter().map(String::as_str).collect();
        futures::future::try_join_all(self.nodes.iter().map(|node| {
            let sysctls = &sysctls;
            async move {
                self.tools.sysctl(node.netns(), sysctls).await?;
                let routes: Vec<String> = self
                    .nodes
                    .iter()
                    .filter(|other| other.index != node.index)
                    .flat_map(|other| {
                        [
                            format!(
                                "route replace {}/{POD_PREFIX_V4} via {}",
                                pod_network_v4(other.index),
                                other.ipv4()
                            ),
                            format!(
                                "route replace {}/{POD_PREFIX_V6} via {}",
                                pod_network_v6(other.index),
                                other.ipv6()
                            ),
                        ]
                    })
                    .collect();
                if routes.is_empty() { Ok(()) } else { self.tools.ip_batch(node.netns(), &routes).await }
            }
        }))
        .await?;
        Ok(())
    }
}

/// The veth between the node and the pod's namespace, the addresses at both ends and the routes.
async fn wire_pod(tools: &Tools, node: &LabNode, netns: &str, veth: &str, host: u8) -> Result<(), LabError> {
    let (pod4, pod6) = (pod_ipv4(node.index, host), pod_ipv6(node.index, host));
    let (gateway4, gateway6) = (pod_ipv4(node.index, GATEWAY), pod_ipv6(node.index, GATEWAY));
    tools
        .sysctl(
            netns,
            &[
                "net.ipv6.conf.all.accept_dad=0",
                "net.ipv6.conf.default.accept_dad=0",
                "net.ipv6.conf.all.accept_ra=0",
                "net.ipv6.conf.default.accept_ra=0",
            ],
        )
        .await?;
    tools
        .ip_batch(
            node.netns(),
            &[
                format!("link add {veth} type veth peer name {LAN_INTERFACE} netns {netns}"),
                format!("link set {veth} up"),
                // The same gateway address on every pod veth of the node: each pod sees it on its link.
                format!("address add {gateway4}/32 dev {veth}"),
                format!("address add {gateway6}/128 dev {veth} nodad"),
                format!("route add {pod4}/32 dev {veth} src {gateway4}"),
                format!("route add {pod6}/128 dev {veth}"),
            ],
        )
        .await?;
    tools
        .ip_batch(
            netns,
            &[
                "link set lo up".to_owned(),
                format!("link set {LAN_INTERFACE} up"),
                format!("address add {pod4}/32 dev {LAN_INTERFACE}"),
                format!("route add {gateway4}/32 dev {LAN_INTERFACE} scope link"),
                format!("route add default via {gateway4} dev {LAN_INTERFACE}"),
                format!("address add {pod6}/128 dev {LAN_INTERFACE} nodad"),
                format!("route add {gateway6}/128 dev {LAN_INTERFACE}"),
                format!("route add ::/0 via {gateway6} dev {LAN_INTERFACE}"),
            ],
        )
        .await
}

/// Waits for the namespace's `default` ServiceAccount: the ServiceAccount admission plugin rejects pods
/// in a namespace that has none yet.
async fn wait_for_default_service_account(client: &kube::Client, namespace: &str) -> Result<(), LabError> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let what = format!(
        "ServiceAccount {namespace}/default (kube-controller-manager's serviceaccount controller makes it)"
    );
    wait_for(&what, SERVICE_ACCOUNT_TIMEOUT, || {
        let accounts = accounts.clone();
        async move {
            match accounts.get_opt("default").await {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err("not there yet".to_owned()),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await
}

/// Until the echo server answers as this pod on both of its addresses, from inside its node (the path
/// a kubelet's readiness probe takes); fails at once when the server exits.
async fn wait_echo_ready(node: &LabNode, pod: &LabPod) -> Result<(), LabError> {
    let began = Instant::now();
    let targets =
        [SocketAddr::from((pod.ipv4, ECHO_PORT)), SocketAddr::from((IpAddr::V6(pod.ipv6), ECHO_PORT))];
    loop {
        if let Some(status) = pod.server.try_wait()? {
            return Err(pod
                .server
                .exited(status, &format!("before pod {}/{} answered", pod.namespace, pod.name)));
        }
        let mut last = String::new();
        for target in targets {
            match fetch_in(node.netns(), target, ECHO_PROBE_TIMEOUT).await? {
                Ok(reply) if reply.pod == pod.name => {}
                Ok(reply) => last = format!("{target} answered as pod {:?}", reply.pod),
                Err(failure) => last = format!("{target}: {failure}"),
            }
            if !last.is_empty() {
                break;
            }
        }
        if last.is_empty() {
            tracing::debug!(pod = %pod.name, elapsed = ?began.elapsed(), "echo server answers");
            return Ok(());
        }
        if began.elapsed() >= ECHO_READY_TIMEOUT {
            return Err(pod.server.not_ready(ECHO_READY_TIMEOUT, format!("from {}: {last}", node.name())));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn pod_object(name: &str, node: &str, labels: &[(&str, &str)]) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            // Bound at creation, as a scheduler would have bound it: there is no scheduler.
            node_name: Some(node.to_owned()),
            containers: vec![Container {
                name: CONTAINER.to_owned(),
                image: Some(ECHO_IMAGE.to_owned()),
                args: Some(["--pod", name, "--node", node].map(str::to_owned).to_vec()),
                ports: Some(vec![ContainerPort {
                    name: Some("http".to_owned()),
                    container_port: i32::from(ECHO_PORT),
                    protocol: Some("TCP".to_owned()),
                    ..Default::default()
                }]),
                ..Default::default()
            }],
            enable_service_links: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What a kubelet reports for a started, ready pod.
fn running_status(node: &LabNode, pod: &LabPod, started: Time) -> PodStatus {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let conditions = ["PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready", "PodScheduled"]
        .map(|type_| PodCondition {
            type_: type_.to_owned(),
            status: "True".to_owned(),
            last_transition_time: Some(now.clone()),
            ..Default::default()
        })
        .to_vec();
    PodStatus {
        phase: Some("Running".to_owned()),
        host_ip: Some(node.ipv4().to_string()),
        host_ips: Some(vec![HostIP { ip: node.ipv4().to_string() }, HostIP { ip: node.ipv6().to_string() }]),
        pod_ip: Some(pod.ipv4.to_string()),
        pod_ips: Some(vec![PodIP { ip: pod.ipv4.to_string() }, PodIP { ip: pod.ipv6.to_string() }]),
        start_time: Some(started),
        conditions: Some(conditions),
        container_statuses: Some(vec![ContainerStatus {
            name: CONTAINER.to_owned(),
            image: ECHO_IMAGE.to_owned(),
            image_id: String::new(),
            container_id: Some(format!("purelb-lab://{}", pod.server.pid())),
            ready: true,
            started: Some(true),
            restart_count: 0,
            state: Some(ContainerState {
                running: Some(ContainerStateRunning { started_at: Some(now) }),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

// === impl LabPod ===

/// A pod of the lab: its Pod object, its namespace (`eth0` with the pod's addresses) and its echo server.
/// [`LabPod::delete`] removes it as a kubelet would; dropping it kills the server and deletes the
/// namespace at once, and deletes the object when a tokio runtime is still there to do it.
#[derive(Debug)]
pub struct LabPod {
    name: String,
    namespace: String,
    node: String,
    ipv4: Ipv4Addr,
    ipv6: Ipv6Addr,
    netns: String,
    node_netns: String,
    /// The node's end of the pod's veth.
    veth: String,
    tools: Tools,
    api: Api<Pod>,
    /// Whether the object is gone already (then `Drop` leaves the API alone).
    deleted: bool,
    // Drop order: the server stops, then the namespace goes, then the address is free again.
    server: Child,
    _namespaces: Namespaces,
    _slot: PodSlot,
}

impl LabPod {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The node it runs on.
    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn ipv4(&self) -> Ipv4Addr {
        self.ipv4
    }

    pub fn ipv6(&self) -> Ipv6Addr {
        self.ipv6
    }

    /// The pod's network namespace.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// The echo server (its log is `<lab dir>/pod-<namespace>-<name>.log`).
    pub fn server(&self) -> &Child {
        &self.server
    }

    /// Deletes the pod as a kubelet sees it go: a graceful delete first (the object gets its
    /// deletionTimestamp, and EndpointSlices mark the endpoint terminating), then the server is stopped
    /// (SIGTERM), then the object is removed for good (grace period 0) and the veth and namespace go.
    pub async fn delete(mut self) -> Result<(), LabError> {
        let what = |step: &str| format!("{step} Pod {}/{}", self.namespace, self.name);
        tolerate_gone(self.api.delete(&self.name, &DeleteParams::default()).await)
            .map_err(|e| LabError::kube(what("deleting"), e))?;
        self.server.terminate().await?;
        let now = DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() };
        tolerate_gone(self.api.delete(&self.name, &now).await)
            .map_err(|e| LabError::kube(what("removing"), e))?;
        self.deleted = true;
        // Deleted here rather than with the namespace, which the kernel frees in its own time.
        self.tools
            .ip(["-n", &self.node_netns, "link", "delete", &self.veth], &what("deleting the veth of"))
            .await?;
        tracing::info!(pod = %self.name, namespace = %self.namespace, "lab pod deleted");
        Ok(())
    }
}

/// A delete that finds nothing is as good as done.
fn tolerate_gone<T>(result: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

impl Drop for LabPod {
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        // Best effort: a test that failed before `delete` leaves an object whose endpoint goes nowhere.
        // The client belongs to the runtime that made it, which is the current one if any.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let (api, name) = (self.api.clone(), self.name.clone());
                runtime.spawn(async move {
                    let now = DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() };
                    if let Err(e) = tolerate_gone(api.delete(&name, &now).await) {
                        tracing::warn!(pod = %name, error = %e, "could not delete a dropped lab pod's object");
                    }
                });
            }
            Err(_) => tracing::warn!(
                pod = %self.name, namespace = %self.namespace,
                "lab pod dropped outside a tokio runtime; its Pod object stays"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_addresses_follow_the_node_and_read_alike_in_both_families() {
        assert_eq!(pod_network_v4(1), Ipv4Addr::new(198, 19, 65, 0));
        assert_eq!(pod_network_v4(12).to_string(), "198.19.76.0");
        assert_eq!(pod_network_v6(12).to_string(), "2001:db8:300:12::");
        assert_eq!(pod_ipv4(2, 10).to_string(), "198.19.66.10");
        assert_eq!(pod_ipv6(2, 10).to_string(), "2001:db8:300:2::10");
        assert_eq!(pod_ipv6(2, GATEWAY).to_string(), "2001:db8:300:2::1");
        assert_eq!(pod_ipv6(50, LAST_POD).to_string(), "2001:db8:300:50::254");
    }

    #[test]
    fn every_pod_network_is_inside_the_cluster_cidrs_and_apart_from_the_client() {
        let v4 = purelb_core::pool::Subnet::parse(POD_CLUSTER_CIDR_V4).unwrap_or_else(|e| panic!("{e}"));
        let v6 = purelb_core::pool::Subnet::parse(POD_CLUSTER_CIDR_V6).unwrap_or_else(|e| panic!("{e}"));
        for node in 1..=50 {
            assert!(v4.contains(IpAddr::V4(pod_ipv4(node, LAST_POD))), "node {node}");
            assert!(v6.contains(IpAddr::V6(pod_ipv6(node, LAST_POD))), "node {node}");
        }
        assert!(!v4.contains(IpAddr::V4(super::super::CLIENT_IPV4)));
        assert!(!v6.contains(IpAddr::V6(super::super::CLIENT_IPV6)));
    }

    #[test]
    fn pod_slots_go_round_and_are_freed_on_drop() {
        let slots = Arc::new(Mutex::new(Slots::default()));
        let take = || PodSlot::take(&slots, 1, "node1").unwrap_or_else(|e| panic!("{e}"));
        let first = take();
        let second = take();
        assert_eq!((first.host, second.host), (FIRST_POD, FIRST_POD + 1));
        drop(first);
        // Not the freed address again at once: its namespace may still be going away.
        let third = take();
        assert_eq!(third.host, FIRST_POD + 2);
        let on_other_node = PodSlot::take(&slots, 2, "node2").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(on_other_node.host, FIRST_POD);
        let all: Vec<PodSlot> = (FIRST_POD + 3..=LAST_POD).map(|_| take()).collect();
        // Only the freed .10 is left, found by wrapping around.
        let wrapped = take();
        assert_eq!(wrapped.host, FIRST_POD);
        assert!(PodSlot::take(&slots, 1, "node1").is_err());
        drop((all, second, third));
    }
}
