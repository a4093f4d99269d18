//! The lab's network: N nodes and a BGP router on one LAN, each in its own network namespace, with no
//! link to the machine's own network.
//!
//! ```text
//!                      LAN 192.0.2.0/24, 2001:db8:0:1::/64 (bridge br0 in <prefix>-lan)
//!   ┌──────────────┬──────────────┬──────────────┬──── ... ──┬──────────────┐
//!  cp .1 / ::1    router .254 / ::fe   node1 .11 / ::11   node2 .12   ...  nodeN .1N
//!  API relay      BIRD, AS 64512       eth0, kube-lb0 (ifb), BIRD (deploy/bird/bird.conf), AS 64513
//!  :6443 ─ copies bytes to the apiserver on 127.0.0.1 of the root namespace (no kernel link)
//! ```
//!
//! - Namespaces are `plb-<pid>-<start time>-<n>-{lan,cp,r,n1,n2,...}` (see `netns.rs`): dropping the
//!   [`Network`] kills what runs in them and deletes them; a later lab sweeps those of a dead process.
//! - Only documentation addresses are used; the only default routes are the nodes' (via the router), and
//!   the router has none: nothing on the LAN can reach anything else.
//! - BGP: the router has one IPv4 and one IPv6 session per node (separate sessions, so each family's next
//!   hop is the node's own address in that family), hold time 3 s, graceful restart off, and exports
//!   what it learns to its kernel table with equal routes merged (ECMP). The nodes run the shipped
//!   `deploy/bird/bird.conf`, which announces every address on `kube-lb0`.
//! - Every node also gets a Kubernetes Node object of its name, with its addresses and Ready.
//! - On demand, for tests of the data path: pods without a kubelet, each in a namespace of its own behind
//!   its node and running the echo server ([`Network::run_pod`], `pod.rs`), kube-proxy in every node
//!   ([`Network::start_kube_proxies`], `kube_proxy.rs`) and a client behind the router
//!   ([`Network::add_client`], `client.rs`). A network that uses none of them is as described above.
//!
//! Exposes [`Network`], [`NetworkConfig`], [`LabNode`], [`NodeAddress`], [`RouterRoute`], [`BgpSession`],
//! [`Sampler`] / [`Timeline`] (what the data plane did while a test ran), [`LabPod`], [`KubeProxies`],
//! [`LabClient`] and its [`Prober`].

mod bird;
mod client;
mod kube_proxy;
mod netlink;
mod netns;
mod node;
mod pod;
mod relay;
mod routes;
mod sampler;
mod tools;

use std::ffi::OsStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

pub use bird::{BfdSession, BgpSession, NODE_AS, ROUTER_AS};
pub use client::{
    CLIENT_IPV4, CLIENT_IPV6, CLIENT_ROUTER_IPV4, CLIENT_ROUTER_IPV6, EchoReply, Failure, LabClient, Probe,
    ProbeConfig, ProbeReport, Prober,
};
pub use kube_proxy::{KubeProxies, KubeProxy};
pub use node::{KUBE_LB0, LAN_INTERFACE, LabNode, NodeAddress};
pub use pod::{ECHO_IMAGE, ECHO_PORT, LabPod, POD_CLUSTER_CIDR_V4, POD_CLUSTER_CIDR_V6};
pub use routes::RouterRoute;
pub use sampler::{Change, Holding, Sampler, TimedChange, Timeline};

use self::netns::Namespaces;
use self::relay::Relay;
use self::tools::Tools;
use crate::{Child, ControlPlane, LabError, spawn_supervised};

/// The control-plane relay's address on the LAN (the apiserver's certificate names it).
pub const CONTROL_PLANE_IPV4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const CONTROL_PLANE_IPV6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1);
/// The router's addresses on the LAN: the nodes' default gateway and BGP peer.
pub const ROUTER_IPV4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);
pub const ROUTER_IPV6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 0xfe);
pub const LAN_PREFIX_V4: u8 = 24;
pub const LAN_PREFIX_V6: u8 = 64;
/// The port node processes reach the API server on, at [`CONTROL_PLANE_IPV4`].
pub const APISERVER_RELAY_PORT: u16 = 6443;

/// The bridge in the LAN namespace.
const BRIDGE: &str = "br0";
/// Node addresses are `.11` to `.160`: below the lab's local pools (`.200` and up) and the router.
pub const MAX_NODES: usize = 150;
/// How long `create` waits for every BGP session to come up.
const SESSIONS_TIMEOUT: Duration = Duration::from_secs(30);

/// What network to build.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// How many nodes (1 to [`MAX_NODES`]); default 3.
    pub nodes: usize,
    /// Whether BGP runs: a BIRD on the router and on every node, with every session Established before
    /// [`Network::create`] returns; default true. Off (for benches of many nodes that only look at the
    /// nodes' addresses), no BIRD runs anywhere, the router only forwards, and [`LabNode::bird`] is `None`.
    pub bgp: bool,
    /// Whether the router runs BFD on its BGP sessions (as `examples/bird-router.conf` does); default
    /// true. Off, it is a router that does not speak BFD, which the nodes' shipped configuration must
    /// peer with all the same.
    pub router_bfd: bool,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig { nodes: 3, bgp: true, router_bfd: true }
    }
}

// === impl Network ===

/// A running lab network. Dropping it stops the relay and every BIRD, kills whatever else runs in its
/// namespaces and deletes them. Its files (BIRD configurations and logs, kubeconfigs for the nodes) are
/// in `<lab dir>/network-<n>/` and go with the lab's directory.
#[derive(Debug)]
pub struct Network {
    // Fields drop in order: the relay and the BIRDs stop before the namespaces go.
    /// Stops on `Drop`; cuts nodes off for [`Network::cut_api`].
    relay: Relay,
    /// `None` when the network runs without BGP ([`NetworkConfig::bgp`]).
    router_bird: Option<Child>,
    /// Whether the router runs BFD ([`NetworkConfig::router_bfd`]).
    router_bfd: bool,
    nodes: Vec<LabNode>,
    namespaces: Namespaces,
    tools: Tools,
    dir: PathBuf,
    lan: String,
    control_plane: String,
    router: String,
    router_socket: Option<PathBuf>,
    /// `plb-<pid>-<start>-<n>`: pods' and the client's namespaces are named under it, so the stale sweep
    /// finds them with the network's own.
    prefix: String,
    /// Which pod addresses are taken, and whether the nodes route pod traffic yet (see `pod.rs`).
    pods: pod::PodState,
    /// Set while a [`LabClient`] of this network exists: there is one client address plan.
    client_taken: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Network {
    /// Builds the namespaces, the LAN and its hosts, starts the relay to `cp`'s apiserver and the BIRDs,
    /// applies the Node objects, and returns once every BGP session on the router is Established.
    pub async fn create(cp: &ControlPlane, cfg: NetworkConfig) -> Result<Network, LabError> {
        let began = Instant::now();
        if cfg.nodes == 0 || cfg.nodes > MAX_NODES {
            return Err(LabError::io(
                "creating the lab network",
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("NetworkConfig.nodes is {}, must be 1 to {MAX_NODES}", cfg.nodes),
                ),
            ));
        }
        let tools = Tools::locate()?;
        netns::sweep_stale();
        let (instance, prefix) = netns::new_instance();
        let dir = cp.dir().join(format!("network-{instance}"));
        std::fs::create_dir_all(&dir).map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;

        let lan = format!("{prefix}-lan");
        let control_plane = Host {
            netns: format!("{prefix}-cp"),
            port: "cp".to_owned(),
            ipv4: CONTROL_PLANE_IPV4,
            ipv6: CONTROL_PLANE_IPV6,
            role: Role::ControlPlane,
        };
        let router = Host {
            netns: format!("{prefix}-r"),
            port: "router".to_owned(),
            ipv4: ROUTER_IPV4,
            ipv6: ROUTER_IPV6,
            role: Role::Router,
        };
        let nodes: Vec<Host> = (1..=cfg.nodes)
            .map(|i| Host {
                netns: format!("{prefix}-n{i}"),
                port: format!("node{i}"),
                ipv4: node_ipv4(i),
                ipv6: node_ipv6(i),
                role: Role::Node,
            })
            .collect();
        let hosts: Vec<&Host> = [&control_plane, &router].into_iter().chain(&nodes).collect();

        let mut namespaces = Namespaces::default();
        namespaces.add(&tools, &lan).await?;
        for host in &hosts {
            namespaces.add(&tools, &host.netns).await?;
        }
        build_lan(&tools, &lan, &hosts).await?;
        let links_ready = began.elapsed();

        let relay = Relay::start(
            &control_plane.netns,
            SocketAddr::from((CONTROL_PLANE_IPV4, APISERVER_RELAY_PORT)),
            apiserver_address(cp)?,
        )?;

        let (mut router_bird, mut router_socket, mut node_birds) = (None, None, Vec::new());
        if cfg.bgp {
            let peers: Vec<bird::Peer<'_>> =
                nodes.iter().map(|n| bird::Peer { name: &n.port, ipv4: n.ipv4, ipv6: n.ipv6 }).collect();
            let router_config = bird::router_config(ROUTER_IPV4, &peers, cfg.router_bfd);
            let (bird, socket) = start_bird(&tools, &dir, &router, &router_config).await?;
            (router_bird, router_socket) = (Some(bird), Some(socket));
            let node_config =
                bird::node_config(ROUTER_IPV4, ROUTER_IPV6).map_err(|e| LabError::Prerequisite {
                    what: "the shipped BIRD configuration cannot be used".to_owned(),
                    hint: e,
                })?;
            for host in &nodes {
                node_birds.push(Some(start_bird(&tools, &dir, host, &node_config).await?));
            }
        } else {
            node_birds.resize_with(nodes.len(), || None);
        }
        let mut lab_nodes = Vec::with_capacity(nodes.len());
        for (i, (host, bird)) in nodes.iter().zip(node_birds).enumerate() {
            let (bird, bird_socket) = bird.unzip();
            lab_nodes.push(LabNode {
                index: i + 1,
                name: host.port.clone(),
                netns: host.netns.clone(),
                ipv4: host.ipv4,
                ipv6: host.ipv6,
                lan_netns: lan.clone(),
                bridge_port: host.port.clone(),
                tools: tools.clone(),
                bird,
                bird_socket,
            });
        }

        let network = Network {
            relay,
            router_bird,
            router_bfd: cfg.router_bfd,
            nodes: lab_nodes,
            namespaces,
            tools,
            dir,
            lan,
            control_plane: control_plane.netns,
            router: router.netns,
            router_socket,
            prefix: prefix.clone(),
            pods: pod::PodState::default(),
            client_taken: Default::default(),
        };
        let client = cp.admin_client().await?;
        futures::future::try_join_all(network.nodes.iter().map(|n| node::apply_node_object(&client, n)))
            .await?;
        if cfg.bgp {
            network.wait_for_sessions().await?;
        }
        tracing::info!(
            netns = %prefix, nodes = cfg.nodes, bgp = cfg.bgp, links = ?links_ready, elapsed = ?began.elapsed(),
            "lab network ready (with BGP: every session Established)"
        );
        Ok(network)
    }

    pub fn nodes(&self) -> &[LabNode] {
        &self.nodes
    }

    /// The node named `name` (`node1`, ...).
    pub fn node(&self, name: &str) -> Option<&LabNode> {
        self.nodes.iter().find(|n| n.name() == name)
    }

    /// The router's namespace.
    pub fn router_netns(&self) -> &str {
        &self.router
    }

    /// The namespace holding the LAN bridge: `ip netns exec <it> tcpdump -i br0` sees every frame.
    pub fn lan_netns(&self) -> &str {
        &self.lan
    }

    /// The bridge device inside [`Network::lan_netns`].
    pub fn bridge(&self) -> &str {
        BRIDGE
    }

    /// The namespace of the API server relay (192.0.2.1).
    pub fn control_plane_netns(&self) -> &str {
        &self.control_plane
    }

    /// Every namespace of this network.
    pub fn namespaces(&self) -> &[String] {
        self.namespaces.names()
    }

    /// Where this network's files are: `router/` and `node<i>/` (BIRD configuration, socket, log) and the
    /// kubeconfigs written by [`Network::kubeconfig_for_nodes`].
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The router's BIRD (`None` without BGP).
    pub fn router_bird(&self) -> Option<&Child> {
        self.router_bird.as_ref()
    }

    /// `https://192.0.2.1:6443`: the API server as processes in the nodes reach it.
    pub fn apiserver_url(&self) -> String {
        format!("https://{CONTROL_PLANE_IPV4}:{APISERVER_RELAY_PORT}")
    }

    /// A copy of the kubeconfig at `src` whose clusters' server is [`Network::apiserver_url`] (relative
    /// file paths in it made absolute), written to [`Network::dir`] under the same file name.
    pub fn kubeconfig_for_nodes(&self, src: &Path) -> Result<PathBuf, LabError> {
        let error = |message: String| LabError::Kubeconfig { path: src.to_owned(), message };
        let text = std::fs::read_to_string(src).map_err(|e| error(format!("reading: {e}")))?;
        let mut config: Value = serde_saphyr::from_str(&text).map_err(|e| error(format!("parsing: {e}")))?;
        let base = src.parent().unwrap_or(Path::new("/"));
        let clusters = config.get_mut("clusters").and_then(Value::as_array_mut).filter(|c| !c.is_empty());
        let Some(clusters) = clusters else { return Err(error("it names no cluster".to_owned())) };
        for cluster in clusters.iter_mut().filter_map(|c| c.get_mut("cluster")) {
            cluster["server"] = Value::String(self.apiserver_url());
            absolute_paths(cluster, &["certificate-authority"], base);
        }
        for user in config.get_mut("users").and_then(Value::as_array_mut).into_iter().flatten() {
            if let Some(user) = user.get_mut("user") {
                absolute_paths(user, &["client-certificate", "client-key", "tokenFile"], base);
            }
        }
        let name = src.file_name().ok_or_else(|| error("not a file".to_owned()))?;
        let path = self.dir.join(name);
        let out = serde_saphyr::to_string(&config).map_err(|e| error(format!("rendering: {e}")))?;
        std::fs::write(&path, out).map_err(|e| LabError::io(format!("writing {}", path.display()), e))?;
        Ok(path)
    }

    /// The routes BIRD put in the router's kernel table (`proto bird`), IPv4 then IPv6, each with all
    /// its next hops.
    pub async fn router_routes(&self) -> Result<Vec<RouterRoute>, LabError> {
        let mut all = Vec::new();
        for (family, host_len) in [("-4", 32), ("-6", 128)] {
            let what = format!("listing the router's routes ({family})");
            let json = self
                .tools
                .ip(["-n", &self.router, "-j", family, "route", "show", "proto", "bird"], &what)
                .await?;
            let routes = routes::parse_routes(&json, host_len)
                .map_err(|e| LabError::io(what, std::io::Error::other(e)))?;
            all.extend(routes);
        }
        Ok(all)
    }

    /// Cuts (`cut = true`) or restores the API server relay for one node only, by its LAN addresses
    /// (IPv4 and IPv6), as a partition between it and the control plane would; the LAN and BGP are
    /// untouched and no other node is affected. While cut, its relayed connections carry nothing either
    /// way and new ones are accepted but never answered (nothing is closed, no RST or FIN); on restore,
    /// those held connections are closed, so its clients reconnect, and new ones are relayed.
    ///
    /// Panics when no node is named `node`: a test that cut nothing would prove nothing.
    pub fn cut_api(&self, node: &str, cut: bool) {
        let Some(found) = self.node(node) else {
            let names: Vec<&str> = self.nodes.iter().map(LabNode::name).collect();
            panic!("cut_api: the lab network has no node {node:?} (it has {names:?})");
        };
        self.relay.cut(&[IpAddr::V4(found.ipv4), IpAddr::V6(found.ipv6)], cut);
        tracing::info!(node, cut, "API server relay for the node {}", if cut { "cut" } else { "restored" });
    }

    /// Runs `birdc <args>` against the BIRD of the namespace `netns` (the router's or a node's).
    pub async fn birdc(&self, netns: &str, args: &[&str]) -> Result<String, LabError> {
        let socket = if netns == self.router {
            self.router_socket.as_deref()
        } else if let Some(node) = self.nodes.iter().find(|n| n.netns() == netns) {
            node.bird_socket()
        } else {
            None
        };
        let Some(socket) = socket else {
            return Err(LabError::io(
                format!("birdc {}", args.join(" ")),
                std::io::Error::other(format!("no BIRD runs in network namespace {netns}")),
            ));
        };
        self.tools.birdc(socket, args).await
    }

    /// The router's BGP sessions (`<node>_v4`, `<node>_v6`) and their states.
    pub async fn bgp_sessions(&self) -> Result<Vec<BgpSession>, LabError> {
        Ok(bird::parse_protocols(&self.birdc(&self.router, &["show", "protocols"]).await?))
    }

    /// The BFD sessions of the BIRD in `netns` (the router's or a node's) and their states.
    pub async fn bfd_sessions(&self, netns: &str) -> Result<Vec<BfdSession>, LabError> {
        Ok(bird::parse_bfd_sessions(&self.birdc(netns, &["show", "bfd", "sessions"]).await?))
    }

    /// How many of the router's BFD sessions are Up, when the router runs BFD.
    async fn bfd_up(&self) -> Result<Option<usize>, LabError> {
        if !self.router_bfd {
            return Ok(None);
        }
        let sessions = self.bfd_sessions(&self.router).await?;
        Ok(Some(sessions.iter().filter(|s| s.is_up()).count()))
    }

    /// Waits until every session on the router is Established (and watched by an Up BFD session when
    /// the router runs BFD), failing early when a BIRD exits.
    async fn wait_for_sessions(&self) -> Result<(), LabError> {
        let began = Instant::now();
        let expected = 2 * self.nodes.len();
        loop {
            for bird in self.router_bird.iter().chain(self.nodes.iter().filter_map(LabNode::bird)) {
                if let Some(status) = bird.try_wait()? {
                    return Err(bird.exited(status, "while the lab network was starting"));
                }
            }
            let last = match self.bgp_sessions().await {
                Ok(sessions) => {
                    let established = sessions.iter().filter(|s| s.is_established()).count();
                    if established == expected {
                        match self.bfd_up().await? {
                            Some(up) if up < expected => {
                                format!("{up} of {expected} BFD sessions Up on the router")
                            }
                            _ => {
                                tracing::debug!(elapsed = ?began.elapsed(), "every BGP (and BFD) session up");
                                return Ok(());
                            }
                        }
                    } else {
                        format!("{established} of {expected} sessions Established: {sessions:?}")
                    }
                }
                Err(e) => e.to_string(),
            };
            if began.elapsed() >= SESSIONS_TIMEOUT {
                return Err(match &self.router_bird {
                    Some(bird) => bird.not_ready(SESSIONS_TIMEOUT, last),
                    None => LabError::io(
                        "waiting for BGP sessions",
                        std::io::Error::other("no BGP in this network"),
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

// === building ===

/// A namespace on the LAN and what it is for.
struct Host {
    netns: String,
    /// The bridge's end of its veth, in the LAN namespace; also the host's name (`cp`, `router`, `node1`).
    port: String,
    ipv4: Ipv4Addr,
    ipv6: Ipv6Addr,
    role: Role,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    ControlPlane,
    Router,
    Node,
}

fn node_ipv4(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, u8::try_from(10 + i).unwrap_or(u8::MAX))
}

/// `2001:db8:0:1::11` for node 1: the last group reads like the IPv4 address's last byte.
fn node_ipv6(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, reads_as_decimal(10 + i))
}

/// The IPv6 group whose hex digits are `n`'s decimal digits (`11` -> `0x11`), so IPv6 addresses read like
/// their IPv4 twins; `u16::MAX` when `n` has more than 4 digits.
pub(crate) fn reads_as_decimal(n: usize) -> u16 {
    u16::from_str_radix(&n.to_string(), 16).unwrap_or(u16::MAX)
}

/// Kernel settings, then the bridge and one veth per host into it, then each host's addresses and routes.
async fn build_lan(tools: &Tools, lan: &str, hosts: &[&Host]) -> Result<(), LabError> {
    // The LAN namespace only bridges: no IPv6 of its own keeps captured traffic to the hosts' frames.
    tools.sysctl(lan, &["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]).await?;
    futures::future::try_join_all(
        hosts.iter().map(|host| async move { tools.sysctl(&host.netns, &host_sysctls(host.role)).await }),
    )
    .await?;

    let mut lan_commands = vec![
        "link set lo up".to_owned(),
        format!("link add {BRIDGE} type bridge stp_state 0 forward_delay 0 mcast_snooping 0"),
        format!("link set {BRIDGE} up"),
    ];
    for host in hosts {
        let (port, netns) = (&host.port, &host.netns);
        lan_commands.push(format!("link add {port} type veth peer name {LAN_INTERFACE} netns {netns}"));
        lan_commands.push(format!("link set {port} master {BRIDGE}"));
        lan_commands.push(format!("link set {port} up"));
    }
    tools.ip_batch(lan, &lan_commands).await?;

    futures::future::try_join_all(
        hosts.iter().map(|host| async move { tools.ip_batch(&host.netns, &host_commands(host)).await }),
    )
    .await?;
    Ok(())
}

fn host_sysctls(role: Role) -> Vec<&'static str> {
    // Addresses usable at once (no duplicate address detection), no router advertisements.
    let mut settings = vec![
        "net.ipv6.conf.all.accept_dad=0",
        "net.ipv6.conf.default.accept_dad=0",
        "net.ipv6.conf.all.accept_ra=0",
        "net.ipv6.conf.default.accept_ra=0",
    ];
    match role {
        Role::ControlPlane => {}
        // ECMP over the nodes hashes on the 5-tuple, as routers in front of clusters do: one client's
        // connections spread over every node that announces a route.
        Role::Router => settings.extend([
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
            "net.ipv4.fib_multipath_hash_policy=1",
            "net.ipv6.fib_multipath_hash_policy=1",
        ]),
        // Programs may bind Service addresses before (or while) they are on kube-lb0.
        Role::Node => settings.extend(["net.ipv4.ip_nonlocal_bind=1", "net.ipv6.ip_nonlocal_bind=1"]),
    }
    settings
}

fn host_commands(host: &Host) -> Vec<String> {
    let mut commands = vec![
        "link set lo up".to_owned(),
        format!("link set {LAN_INTERFACE} up"),
        format!("address add {}/{LAN_PREFIX_V4} dev {LAN_INTERFACE}", host.ipv4),
        format!("address add {}/{LAN_PREFIX_V6} dev {LAN_INTERFACE} nodad", host.ipv6),
    ];
    if host.role == Role::Node {
        commands.extend([
            format!("route add default via {ROUTER_IPV4}"),
            format!("route add ::/0 via {ROUTER_IPV6}"),
            format!("link add {KUBE_LB0} type ifb"),
            format!("link set {KUBE_LB0} up"),
        ]);
    }
    commands
}

/// Checks and starts one BIRD inside the host's namespace, with its files in `<dir>/<host>/`.
async fn start_bird(
    tools: &Tools,
    dir: &Path,
    host: &Host,
    config: &str,
) -> Result<(Child, PathBuf), LabError> {
    let home = dir.join(&host.port);
    std::fs::create_dir_all(&home).map_err(|e| LabError::io(format!("creating {}", home.display()), e))?;
    let conf = home.join("bird.conf");
    let socket = home.join("bird.ctl");
    std::fs::write(&conf, config).map_err(|e| LabError::io(format!("writing {}", conf.display()), e))?;
    // `bird -p` only parses: a configuration error is reported here, with BIRD's own message.
    let check = [OsStr::new("-p"), OsStr::new("-c"), conf.as_os_str()];
    tools::run(&tools.bird, check, None, &format!("checking BIRD configuration {}", conf.display())).await?;
    let mut command = std::process::Command::new(&tools.ip);
    command
        .args(["netns", "exec", &host.netns])
        .arg(&tools.bird)
        .arg("-f")
        .arg("-c")
        .arg(&conf)
        .arg("-s")
        .arg(&socket)
        .current_dir(&home);
    let bird = spawn_supervised(command, &format!("bird-{}", host.port), &home.join("bird.log"))?;
    Ok((bird, socket))
}

/// Where `cp`'s apiserver listens (`https://127.0.0.1:<port>`).
fn apiserver_address(cp: &ControlPlane) -> Result<SocketAddr, LabError> {
    let url = cp.server_url();
    url.strip_prefix("https://")
        .map(|rest| rest.trim_end_matches('/'))
        .and_then(|address| address.parse().ok())
        .ok_or_else(|| {
            LabError::io(
                "finding the apiserver's address",
                std::io::Error::other(format!("cannot read {url}")),
            )
        })
}

/// Makes the named file paths of a kubeconfig section absolute, relative to `base`.
fn absolute_paths(section: &mut Value, keys: &[&str], base: &Path) {
    for key in keys {
        if let Some(Value::String(path)) = section.get_mut(*key)
            && Path::new(path.as_str()).is_relative()
        {
            *path = base.join(path.as_str()).to_string_lossy().into_owned();
        }
    }
}
