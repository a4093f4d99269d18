//! One node of the lab's LAN: a network namespace with `eth0` on the LAN bridge, `kube-lb0` (an `ifb`
//! device: this kernel has no `dummy`), a default route via the router, BIRD running the shipped node
//! configuration, and a Kubernetes Node object of the same name.
//!
//! Exposes [`LabNode`] and [`NodeAddress`].

use std::ffi::OsStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use super::tools::Tools;
use super::{netlink, netns};
use crate::{Child, ControlPlane, FIELD_MANAGER, LabError, spawn_supervised};

/// The node's interface on the LAN.
pub const LAN_INTERFACE: &str = "eth0";
/// Where PureLB puts addresses from remote pools.
pub const KUBE_LB0: &str = "kube-lb0";

// === impl LabNode ===

/// A node of the lab: `node1`, `node2`, ... (also its Kubernetes Node's name).
#[derive(Debug)]
pub struct LabNode {
    /// `i` of `node<i>`: picks its LAN addresses and its pods' CIDRs.
    pub(crate) index: usize,
    pub(crate) name: String,
    pub(crate) netns: String,
    pub(crate) ipv4: Ipv4Addr,
    pub(crate) ipv6: Ipv6Addr,
    /// The LAN namespace and the bridge port (the veth's other end) that [`LabNode::set_link`] switches.
    pub(crate) lan_netns: String,
    pub(crate) bridge_port: String,
    pub(crate) tools: Tools,
    /// `None` when the network runs without BGP.
    pub(crate) bird: Option<Child>,
    pub(crate) bird_socket: Option<PathBuf>,
}

impl LabNode {
    /// `node1`, `node2`, ...: also the Kubernetes Node's name and its `kubernetes.io/hostname` label.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The node's network namespace.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// `192.0.2.11` for node1, `.12` for node2, ...
    pub fn ipv4(&self) -> Ipv4Addr {
        self.ipv4
    }

    /// `2001:db8:0:1::11` for node1, `::12` for node2, ...
    pub fn ipv6(&self) -> Ipv6Addr {
        self.ipv6
    }

    /// `eth0`: the node's interface on the LAN.
    pub fn lan_interface(&self) -> &str {
        LAN_INTERFACE
    }

    /// The node's BIRD (running `deploy/bird/bird.conf`); `None` in a network without BGP.
    pub fn bird(&self) -> Option<&Child> {
        self.bird.as_ref()
    }

    /// The control socket of the node's BIRD (`birdc -s <socket>`); `None` in a network without BGP.
    pub fn bird_socket(&self) -> Option<&Path> {
        self.bird_socket.as_deref()
    }

    /// A command that runs `program` inside the node's namespace (`ip netns exec <netns> <program>`).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new(&self.tools.ip);
        command.args(["netns", "exec", &self.netns]).arg(program);
        command
    }

    /// Every address of every interface in the node, as `ip -j addr` reports it, with its `IFA_PROTO`
    /// read over rtnetlink (iproute2 6.1 does not print it).
    pub async fn addresses(&self) -> Result<Vec<NodeAddress>, LabError> {
        let what = format!("listing the addresses of {}", self.name);
        let json = self.tools.ip(["-n", &self.netns, "-j", "address", "show"], &what).await?;
        let netns = self.netns.clone();
        let protocols = tokio::task::spawn_blocking(move || netlink::address_protocols(&netns))
            .await
            .map_err(|e| LabError::io(what.clone(), std::io::Error::other(e)))?
            .map_err(|e| LabError::io(what.clone(), e))?;
        let addresses = parse_addresses(&json).map_err(|e| LabError::io(what, std::io::Error::other(e)))?;
        Ok(addresses
            .into_iter()
            .map(|(index, mut address)| {
                if address.protocol.is_none() {
                    address.protocol = protocols
                        .iter()
                        .find(|p| p.index == index && p.ip == address.ip && p.protocol != 0)
                        .map(|p| netlink::protocol_name(p.protocol));
                }
                address
            })
            .collect())
    }

    /// Where `ip` sits on this node: (interface, prefix length) of each of its addresses. Read over
    /// rtnetlink on a thread, with no `ip` process, so tests and benches can poll it often.
    pub async fn placements(&self, ip: IpAddr) -> Result<Vec<(String, u8)>, LabError> {
        let what = format!("looking for {ip} on {}", self.name);
        let netns = self.netns.clone();
        tokio::task::spawn_blocking(move || netlink::placements(&netns, ip))
            .await
            .map_err(|e| LabError::io(what.clone(), std::io::Error::other(e)))?
            .map_err(|e| LabError::io(what, e))
    }

    /// Every address on the node as (interface, address, prefix length), read over rtnetlink in two dumps
    /// with no `ip` process: for benches that poll thousands of addresses on many nodes.
    pub async fn all_placements(&self) -> Result<Vec<(String, IpAddr, u8)>, LabError> {
        let what = format!("listing the addresses of {}", self.name);
        let netns = self.netns.clone();
        tokio::task::spawn_blocking(move || netlink::all_placements(&netns))
            .await
            .map_err(|e| LabError::io(what.clone(), std::io::Error::other(e)))?
            .map_err(|e| LabError::io(what, e))
    }

    /// A TCP connection from inside the node to `to` (e.g. the API server relay), made in-process: the
    /// socket is created on a thread that entered the node's namespace and stays there. Blocking, up to
    /// `timeout`; the stream is returned in blocking mode.
    pub fn tcp_connect(&self, to: SocketAddr, timeout: Duration) -> Result<TcpStream, LabError> {
        let what = format!("connecting to {to} from {}", self.name);
        netns::in_netns(&self.netns, move || TcpStream::connect_timeout(&to, timeout))
            .map_err(|e| LabError::io(what, e))
    }

    /// Starts `program` inside the node's namespace as a supervised child of the lab, exactly as
    /// [`ControlPlane::spawn`] does (log `<lab dir>/<log_name>.log`, `KUBECONFIG`, dies with this process).
    /// The kubeconfig should come from [`Network::kubeconfig_for_nodes`](super::Network::kubeconfig_for_nodes):
    /// 127.0.0.1 is the node's own loopback.
    pub fn spawn(
        &self,
        cp: &ControlPlane,
        program: &Path,
        args: &[String],
        kubeconfig: &Path,
        log_name: &str,
    ) -> Result<Child, LabError> {
        let mut command = self.command(program);
        command.args(args).env("KUBECONFIG", kubeconfig).current_dir(cp.dir());
        spawn_supervised(command, log_name, &cp.dir().join(format!("{log_name}.log")))
    }

    /// Cuts (`false`) or restores (`true`) the node's link to the LAN, as pulling its cable would: the
    /// bridge's end of the veth goes down, so `eth0` in the node loses its carrier but keeps its
    /// addresses and routes.
    pub async fn set_link(&self, up: bool) -> Result<(), LabError> {
        let state = if up { "up" } else { "down" };
        let what = format!("setting {}'s LAN link {state}", self.name);
        self.tools
            .ip(["-n", &self.lan_netns, "link", "set", "dev", &self.bridge_port, state], &what)
            .await
            .map(drop)
    }
}

// === NodeAddress ===

/// One address of one interface, as `ip -j addr` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddress {
    pub interface: String,
    pub ip: IpAddr,
    pub prefix_len: u8,
    /// The address's protocol tag (`IFA_PROTO`) when it has one, named as iproute2 names it:
    /// `kernel_lo`, `kernel_ra`, `kernel_ll`, else the number in hex (`0x50`).
    pub protocol: Option<String>,
    /// `host`, `link` or `global`.
    pub scope: String,
    /// The IPv4 label, when the address has one.
    pub label: Option<String>,
    /// The flags `ip` reports as set: `nodad`, `noprefixroute`, `dynamic`, `secondary`, `tentative`, ...
    pub flags: Vec<String>,
}

/// Keys of an `addr_info` entry that are fields, not flags.
const ADDRESS_FIELDS: &[&str] = &[
    "family",
    "local",
    "address",
    "prefixlen",
    "scope",
    "label",
    "protocol",
    "broadcast",
    "valid_life_time",
    "preferred_life_time",
];

/// The addresses in `ip -j address` output, each with its interface's index.
pub(crate) fn parse_addresses(json: &str) -> Result<Vec<(u32, NodeAddress)>, String> {
    let interfaces: Vec<Value> = serde_json::from_str(json)
        .map_err(|e| format!("`ip -j address` printed something that is not JSON: {e}"))?;
    let mut addresses = Vec::new();
    for interface in &interfaces {
        let Some(name) = interface.get("ifname").and_then(Value::as_str) else { continue };
        let index =
            interface.get("ifindex").and_then(Value::as_u64).and_then(|i| u32::try_from(i).ok()).unwrap_or(0);
        let infos =
            interface.get("addr_info").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        for info in infos {
            let Some(ip) = info.get("local").and_then(Value::as_str).and_then(|ip| ip.parse().ok()) else {
                continue;
            };
            let text = |key: &str| {
                info.get(key)
                    .and_then(|v| v.as_str().map(str::to_owned).or_else(|| v.as_u64().map(|n| n.to_string())))
            };
            let flags = info
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(key, value)| {
                    value.as_bool() == Some(true) && !ADDRESS_FIELDS.contains(&key.as_str())
                })
                .map(|(key, _)| key.clone())
                .collect();
            addresses.push((
                index,
                NodeAddress {
                    interface: name.to_owned(),
                    ip,
                    prefix_len: info
                        .get("prefixlen")
                        .and_then(Value::as_u64)
                        .and_then(|n| u8::try_from(n).ok())
                        .unwrap_or(0),
                    protocol: text("protocol"),
                    scope: text("scope").unwrap_or_default(),
                    label: text("label"),
                    flags,
                },
            ));
        }
    }
    Ok(addresses)
}

// === Kubernetes Node objects ===

/// Creates or updates the node's Kubernetes Node as the admin: label
/// `kubernetes.io/hostname`, addresses InternalIP (IPv4 and IPv6) and Hostname, condition Ready. Nothing
/// in the lab would ever change them (no kubelet, no node controller).
pub(crate) async fn apply_node_object(client: &kube::Client, node: &LabNode) -> Result<(), LabError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let name = node.name();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let object = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": { "kubernetes.io/hostname": name, "kubernetes.io/os": "linux" },
        },
    });
    nodes
        .patch(name, &params, &Patch::Apply(&object))
        .await
        .map_err(|e| LabError::kube(format!("applying Node {name}"), e))?;
    // A JSON merge patch, not an apply: the schema keys `status.addresses` by type, so server-side apply
    // rejects a node with two InternalIPs (what the kubelet reports on a dual-stack node).
    let status = json!({
        "status": {
            "addresses": [
                { "type": "InternalIP", "address": node.ipv4().to_string() },
                { "type": "InternalIP", "address": node.ipv6().to_string() },
                { "type": "Hostname", "address": name },
            ],
            "conditions": [{
                "type": "Ready",
                "status": "True",
                "reason": "PurelbLab",
                "message": "a purelb-lab node (no kubelet)",
            }],
        },
    });
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .map_err(|e| LabError::kube(format!("applying the status of Node {name}"), e))?;
    Ok(())
}

impl LabNode {
    /// Writes the Node's `Ready` condition as the kubelet does when a graceful node shutdown begins
    /// (`False`, "node is shutting down"; `shutting_down`) or when it posts ready again (`false`).
    pub async fn set_shutting_down(
        &self,
        client: &kube::Client,
        shutting_down: bool,
    ) -> Result<(), LabError> {
        let nodes: Api<Node> = Api::all(client.clone());
        let name = self.name();
        let ready = if shutting_down {
            json!({"type": "Ready", "status": "False", "reason": "KubeletNotReady", "message": "node is shutting down"})
        } else {
            json!({"type": "Ready", "status": "True", "reason": "PurelbLab", "message": "a purelb-lab node (no kubelet)"})
        };
        nodes
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": {"conditions": [ready]}})),
            )
            .await
            .map_err(|e| LabError::kube(format!("writing the Ready condition of Node {name}"), e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_read_with_their_flags() {
        let json = r#"[
          {"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP"],"addr_info":[
            {"family":"inet","local":"127.0.0.1","prefixlen":8,"scope":"host","label":"lo","valid_life_time":4294967295}]},
          {"ifindex":3,"ifname":"kube-lb0","addr_info":[
            {"family":"inet6","local":"2001:db8:100::7","prefixlen":128,"scope":"global","nodad":true,"protocol":"0x12"},
            {"family":"inet6","local":"fe80::1","prefixlen":64,"scope":"link","noprefixroute":false}]}
        ]"#;
        let parsed = parse_addresses(json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.iter().map(|(index, _)| *index).collect::<Vec<_>>(), [1, 3, 3]);
        let addresses: Vec<NodeAddress> = parsed.into_iter().map(|(_, a)| a).collect();
        assert_eq!(addresses.len(), 3);
        assert_eq!(addresses[0].label.as_deref(), Some("lo"));
        assert_eq!(addresses[1].interface, "kube-lb0");
        assert_eq!(addresses[1].prefix_len, 128);
        assert_eq!(addresses[1].flags, vec!["nodad".to_owned()]);
        assert_eq!(addresses[1].protocol.as_deref(), Some("0x12"));
        assert_eq!(addresses[2].scope, "link");
        assert!(addresses[2].flags.is_empty());
    }
}
