//! kube-proxy on every node: the upstream binary in each node's namespace, in nftables mode, as the
//! `kube-system/kube-proxy` ServiceAccount bound to the standard `system:node-proxier` ClusterRole, so
//! Service addresses PureLB puts on the nodes lead to the pods behind them as in a real cluster.
//!
//! Each kube-proxy reaches the API server through the relay (`https://192.0.2.1:6443`), serves its
//! health check on `<node IPv4>:10256` and its metrics on `127.0.0.1:10249` (every node has its own
//! namespace, so the fixed ports never clash), finds its Node by name (`--hostname-override`) and its
//! node IPs from that Node's addresses, and knows the pods' CIDRs ([`POD_CLUSTER_CIDR_V4`],
//! [`POD_CLUSTER_CIDR_V6`]). It leaves the kernel's conntrack settings alone (the limits are not per
//! namespace).
//!
//! Exposes [`KubeProxies`] and [`KubeProxy`], made by [`Network::start_kube_proxies`].

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use super::netns;
use super::pod::{POD_CLUSTER_CIDR_V4, POD_CLUSTER_CIDR_V6};
use super::tools;
use super::{LabNode, Network};
use crate::{Child, ControlPlane, LabError, spawn_supervised};

/// The ServiceAccount kube-proxy runs as, in `kube-system`.
const SERVICE_ACCOUNT: &str = "kube-proxy";
/// Its identity and rights, as kubeadm sets them up (the binding's name says who made it).
const RBAC: &str = "\
apiVersion: v1
kind: ServiceAccount
metadata:
  name: kube-proxy
  namespace: kube-system
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: purelb-lab:node-proxier
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:node-proxier
subjects:
- kind: ServiceAccount
  name: kube-proxy
  namespace: kube-system
";
const HEALTHZ_PORT: u16 = 10256;
/// Until every kube-proxy has programmed its first rules: a few seconds; generous for a busy machine.
const SYNC_TIMEOUT: Duration = Duration::from_secs(120);
/// Each health check request.
const HEALTHZ_TIMEOUT: Duration = Duration::from_secs(2);

// === impl Network ===

impl Network {
    /// Starts kube-proxy in every node and waits until each has synced: its `/healthz` answers 200 and
    /// its nftables tables (`ip kube-proxy`, `ip6 kube-proxy`) exist. Also makes the nodes forward (as
    /// for pods). Needs `nft` (Debian package nftables) and kube-proxy in the upstream binaries.
    /// Dropping the result stops them; the rules they wrote stay until the network goes.
    pub async fn start_kube_proxies(&self, cp: &ControlPlane) -> Result<KubeProxies, LabError> {
        let began = Instant::now();
        let nft = tools::find("nft", "nftables")?;
        self.route_pods().await?;
        cp.apply_yaml(RBAC, "purelb-lab's kube-proxy ServiceAccount and ClusterRoleBinding").await?;
        let token = cp.service_account_kubeconfig("kube-system", SERVICE_ACCOUNT).await?;
        let kubeconfig = self.kubeconfig_for_nodes(&token)?;
        let mut proxies = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            proxies.push(spawn_kube_proxy(cp, node, &kubeconfig, &self.dir, &nft)?);
        }
        let proxies = KubeProxies { proxies };
        futures::future::try_join_all(
            proxies.proxies.iter().zip(&self.nodes).map(|(proxy, node)| wait_synced(proxy, node, &nft)),
        )
        .await?;
        tracing::info!(nodes = self.nodes.len(), elapsed = ?began.elapsed(), "kube-proxy synced on every node");
        Ok(proxies)
    }
}

fn spawn_kube_proxy(
    cp: &ControlPlane,
    node: &LabNode,
    kubeconfig: &Path,
    dir: &Path,
    nft: &Path,
) -> Result<KubeProxy, LabError> {
    let healthz = SocketAddr::from((node.ipv4(), HEALTHZ_PORT));
    let mut command = node.command(&cp.upstream().kube_proxy);
    command
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg("--proxy-mode=nftables")
        .arg(format!("--hostname-override={}", node.name()))
        .arg(format!("--cluster-cidr={POD_CLUSTER_CIDR_V4},{POD_CLUSTER_CIDR_V6}"))
        .arg(format!("--healthz-bind-address={healthz}"))
        .arg("--metrics-bind-address=127.0.0.1:10249")
        // 0: leave the kernel's values (the conntrack table's size can only be set machine-wide).
        .arg("--conntrack-max-per-core=0")
        .arg("--conntrack-tcp-timeout-established=0s")
        .arg("--conntrack-tcp-timeout-close-wait=0s")
        // kube-proxy runs `nft`; root's sbin is not always on a user's PATH.
        .env("PATH", path_with(nft))
        .current_dir(cp.dir());
    let name = format!("kube-proxy-{}", node.name());
    let child = spawn_supervised(command, &name, &dir.join(format!("{name}.log")))?;
    Ok(KubeProxy { node: node.name().to_owned(), healthz, child })
}

/// `$PATH` with the directory of `program` in front.
fn path_with(program: &Path) -> std::ffi::OsString {
    let current = std::env::var_os("PATH").unwrap_or_default();
    let dirs = program.parent().map(Path::to_owned).into_iter().chain(std::env::split_paths(&current));
    std::env::join_paths(dirs).unwrap_or(current)
}

/// Until the kube-proxy answers its health check with 200 and has written both its tables; fails at once
/// when it exits.
async fn wait_synced(proxy: &KubeProxy, node: &LabNode, nft: &Path) -> Result<(), LabError> {
    let began = Instant::now();
    loop {
        if let Some(status) = proxy.child.try_wait()? {
            return Err(proxy.child.exited(status, "before it synced"));
        }
        let last = match healthz_status(node.netns(), proxy.healthz).await {
            Ok(200) => match tables_missing(node, nft).await {
                None => {
                    tracing::debug!(node = %proxy.node, elapsed = ?began.elapsed(), "kube-proxy synced");
                    return Ok(());
                }
                Some(missing) => missing,
            },
            Ok(code) => format!("/healthz answered {code}"),
            Err(e) => format!("/healthz: {e}"),
        };
        if began.elapsed() >= SYNC_TIMEOUT {
            return Err(proxy.child.not_ready(SYNC_TIMEOUT, last));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Which of kube-proxy's nftables tables the node lacks, if any.
async fn tables_missing(node: &LabNode, nft: &Path) -> Option<String> {
    for family in ["ip", "ip6"] {
        let args = [
            "netns".as_ref(),
            "exec".as_ref(),
            node.netns().as_ref(),
            nft.as_os_str(),
            "list".as_ref(),
            "table".as_ref(),
            family.as_ref(),
            "kube-proxy".as_ref(),
        ];
        let what = format!("listing nftables table {family} kube-proxy on {}", node.name());
        if let Err(e) = tools::run(&node.tools.ip, args, None, &what).await {
            return Some(e.to_string());
        }
    }
    None
}

/// The status code of `GET /healthz` at `address`, asked from inside the network namespace `netns`.
async fn healthz_status(netns: &str, address: SocketAddr) -> std::io::Result<u16> {
    let netns = netns.to_owned();
    tokio::task::spawn_blocking(move || {
        netns::in_netns(&netns, move || {
            let mut stream = TcpStream::connect_timeout(&address, HEALTHZ_TIMEOUT)?;
            stream.set_read_timeout(Some(HEALTHZ_TIMEOUT))?;
            stream.set_write_timeout(Some(HEALTHZ_TIMEOUT))?;
            stream.write_all(format!("GET /healthz HTTP/1.0\r\nHost: {address}\r\n\r\n").as_bytes())?;
            let mut answer = Vec::new();
            stream.take(64 * 1024).read_to_end(&mut answer)?;
            let text = String::from_utf8_lossy(&answer);
            text.split_whitespace().nth(1).and_then(|code| code.parse().ok()).ok_or_else(|| {
                std::io::Error::other(format!("not an HTTP answer: {:?}", text.lines().next()))
            })
        })
    })
    .await
    .map_err(std::io::Error::other)?
}

// === impl KubeProxies ===

/// The kube-proxies of a network, one per node. Dropping them stops them.
#[derive(Debug)]
pub struct KubeProxies {
    proxies: Vec<KubeProxy>,
}

impl KubeProxies {
    /// The one on `node`.
    pub fn get(&self, node: &str) -> Option<&KubeProxy> {
        self.proxies.iter().find(|p| p.node == node)
    }

    pub fn iter(&self) -> impl Iterator<Item = &KubeProxy> {
        self.proxies.iter()
    }
}

/// One node's kube-proxy.
#[derive(Debug)]
pub struct KubeProxy {
    node: String,
    healthz: SocketAddr,
    child: Child,
}

impl KubeProxy {
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Where it serves `/healthz` (inside its node's namespace).
    pub fn healthz_address(&self) -> SocketAddr {
        self.healthz
    }

    /// The process (its log is `<network dir>/kube-proxy-<node>.log`).
    pub fn child(&self) -> &Child {
        &self.child
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn the_tools_directory_goes_first_on_the_path() {
        let path = path_with(Path::new("/usr/sbin/nft"));
        let first = std::env::split_paths(&path).next();
        assert_eq!(first, Some(PathBuf::from("/usr/sbin")));
    }
}
