//! purelb-lab: a bare-metal Kubernetes cluster on one machine, for PureLB's end-to-end tests, the README
//! quickstart and the benchmarks.
//!
//! Today it is the control plane: real etcd and kube-apiserver (built from upstream by
//! `lab/upstream/build.sh`) on loopback, with RBAC enforced, dual-stack Services, a fresh PKI, an admin
//! kubeconfig and ServiceAccount-token kubeconfigs. Programs under test run as supervised children that
//! never outlive the lab.
//!
//! On top of it, [`Network`]: N nodes and a BGP router (BIRD) on a LAN of network namespaces with no link
//! to the machine's own network, the nodes running the shipped `deploy/bird/bird.conf`, and a relay
//! through which processes in the nodes reach the API server at `https://192.0.2.1:6443`. It needs root,
//! iproute2 and bird2. For traffic through Service addresses it adds, on demand, echo-server pods without
//! a kubelet ([`LabPod`]), kube-proxy in nftables mode on every node ([`KubeProxies`], needs nftables) and
//! a client behind the router ([`LabClient`], with a [`Prober`] that measures outages).
//!
//! Environment:
//! - `PURELB_LAB_BIN_DIR`: where etcd, kube-apiserver, kube-controller-manager, kube-proxy and kubectl are (default: run `lab/upstream/build.sh`,
//!   which builds them once into `$PURELB_LAB_CACHE`, default `~/.cache/purelb-lab`).
//! - `PURELB_LAB_DAEMON_DIR`: where the workspace's own executables are taken from instead of the
//!   test's target directory (e.g. the static musl executables of `images/build-static.sh`, to bench
//!   what the images ship).
//! - `PURELB_LAB_DIR`: the root of the labs' working directories (default `/tmp/purelb-lab`).
//! - `PURELB_LAB_KEEP=1`: keep a lab's directory (logs, kubeconfigs, etcd data) when it stops.
//!
//! ```no_run
//! # async fn example() -> Result<(), purelb_lab::LabError> {
//! let lab = purelb_lab::shared().await;
//! let client = lab.admin_client().await?;
//! let ns = purelb_lab::TestNamespace::new(&client, "my-test").await?;
//! // ... create objects in ns.name(), spawn binaries with lab.spawn(...), assert with wait_for(...)
//! ns.cleanup().await?;
//! # Ok(()) }
//! ```

mod apply;
mod control_plane;
mod error;
mod kubeconfig;
mod labdir;
mod namespace;
mod network;
mod pki;
mod process;
mod upstream;
mod wait;

pub use apply::{FIELD_MANAGER, apply_file, apply_yaml};
pub use control_plane::{ControlPlane, KEEP_ENV, shared, try_shared};
pub use error::LabError;
pub use kubeconfig::client_from_kubeconfig;
pub use labdir::{DEFAULT_ROOT as DEFAULT_LAB_ROOT, ROOT_ENV as LAB_ROOT_ENV};
pub use namespace::TestNamespace;
pub use network::{
    APISERVER_RELAY_PORT, BfdSession, BgpSession, CLIENT_IPV4, CLIENT_IPV6, CLIENT_ROUTER_IPV4,
    CLIENT_ROUTER_IPV6, CONTROL_PLANE_IPV4, CONTROL_PLANE_IPV6, Change, ECHO_IMAGE, ECHO_PORT, EchoReply,
    Failure, Holding, KUBE_LB0, KubeProxies, KubeProxy, LAN_INTERFACE, LAN_PREFIX_V4, LAN_PREFIX_V6,
    LabClient, LabNode, LabPod, NODE_AS, Network, NetworkConfig, NodeAddress, POD_CLUSTER_CIDR_V4,
    POD_CLUSTER_CIDR_V6, Probe, ProbeConfig, ProbeReport, Prober, ROUTER_AS, ROUTER_IPV4, ROUTER_IPV6,
    RouterRoute, Sampler, TimedChange, Timeline,
};
pub use pki::ADMIN_USER;
pub use process::{Child, log_tail, spawn_supervised};
pub use upstream::{BIN_DIR_ENV, UpstreamBinaries, binary, workspace_root};
pub use wait::{Observation, wait_for};
