//! The command line: `kubectl purelb <command>`, with kubectl's conventions (`--kubeconfig`, `--context`,
//! `-n`, `-A`, `-o`). Parsing only; each command lives in its own module.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::style::Format;

/// kubectl purelb: install PureLB, create ServiceGroups, see pool usage, and explain every decision.
#[derive(Debug, Parser)]
#[command(
    name = "kubectl-purelb",
    bin_name = "kubectl purelb",
    version,
    about,
    after_help = "Every answer comes from the objects in the cluster (or the files given) and from PureLB's own \
                  decision code; `kubectl purelb explain` shows the facts behind each one."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Path to the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// The namespace (default: the context's namespace).
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// All namespaces.
    #[arg(short = 'A', long, global = true)]
    pub all_namespaces: bool,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// The namespace PureLB is installed in (node Leases, LBNodeAgent, components).
    #[arg(long, global = true, default_value = crate::snapshot::DEFAULT_INSTALL_NAMESPACE, value_name = "NAMESPACE")]
    pub purelb_namespace: String,
    /// Treat Services without a loadBalancerClass as not PureLB's (as the allocator's --ignore-classless).
    #[arg(long, global = true)]
    pub ignore_classless: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Why a Service has its group, addresses, nodes and interface — or why it has none.
    #[command(
        after_help = "Examples:\n  kubectl purelb explain service/echoserver -n test\n  kubectl purelb explain -f service.yaml --groups groups.yaml --nodes nodes.yaml\n\n\
Offline files hold Kubernetes objects (Service, ServiceGroup, LBNodeAgent, Node, Lease, EndpointSlice, or a\n\
List of them, as `kubectl get -o yaml` prints) and/or a simple node list:\n\
  nodes:\n  - name: node1\n    interface: eth0\n    subnets: [192.0.2.0/24]\n    live: true        # default true\n    excluded: false   # default false\n    shuttingDown: false   # default false"
    )]
    Explain(ExplainArgs),
    /// Per group and pool: size, used, free, utilisation.
    Pools(PoolsArgs),
    /// Check ServiceGroups and LBNodeAgents (from the cluster, or from files).
    Validate(ValidateArgs),
    /// Install PureLB (namespace, CRDs, RBAC, allocator, agent) with server-side apply.
    Install(InstallArgs),
    /// Remove everything install created.
    Uninstall(UninstallArgs),
    /// ServiceGroups: create (interactively or with flags), list, delete.
    #[command(subcommand, visible_alias = "servicegroup")]
    Sg(SgCommand),
    /// Components, versions, pools, node Leases and Services with problems.
    Status,
    /// The plugin's version, and PureLB's in the cluster.
    Version(VersionArgs),
    /// Print a shell completion script.
    #[command(
        after_help = "kubectl's own completion (kubectl >= 1.26) uses the companion program kubectl_complete-purelb:\nput it on PATH next to kubectl-purelb (krew: ln -s kubectl-purelb's directory's kubectl_complete-purelb ~/.krew/bin/)."
    )]
    Completion(CompletionArgs),
    /// Completion candidates for the words given (used by kubectl_complete-purelb).
    #[command(name = "__complete", hide = true)]
    Complete {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        words: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The Service: service/NAME, svc/NAME or NAME (optional with -f when the files hold one Service).
    pub target: Option<String>,
    /// Offline: files with the Service (and any other objects); repeatable.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Offline: files with the ServiceGroups (and LBNodeAgents); repeatable.
    #[arg(long, value_name = "FILE")]
    pub groups: Vec<PathBuf>,
    /// Offline: files with Node/Lease objects or the simple node list; repeatable.
    #[arg(long, value_name = "FILE")]
    pub nodes: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PoolsArgs {
    /// Also list which Services hold which addresses.
    #[arg(long)]
    pub show_services: bool,
    /// Offline: files with ServiceGroups and Services; repeatable.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Check these files instead of the cluster (ServiceGroups, LBNodeAgents, Nodes, Leases, node list).
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Fail on warnings too.
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Print the manifests instead of applying them.
    #[arg(long)]
    pub dry_run: bool,
    /// Image tag to install (default: the tag in the embedded manifests).
    #[arg(long = "version", value_name = "TAG")]
    pub image_version: Option<String>,
    /// Image registry and path replacing ghcr.io/purelb-rs (e.g. registry.example.com/mirror).
    #[arg(long, value_name = "REGISTRY")]
    pub image_registry: Option<String>,
    /// Take over fields another field manager (e.g. kubectl) owns.
    #[arg(long)]
    pub force_conflicts: bool,
}

#[derive(Debug, Args)]
pub struct UninstallArgs {
    /// Uninstall even while Services hold PureLB addresses (their addresses are withdrawn and PureLB's
    /// marks removed; they wait for another load balancer).
    #[arg(long)]
    pub force: bool,
    /// Say what would be removed, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum SgCommand {
    /// Create a ServiceGroup: asks for each value on a terminal; flags (or --yes) skip the questions.
    Create(SgCreateArgs),
    /// List ServiceGroups (every namespace unless -n is given: group names are cluster-wide).
    #[command(visible_alias = "ls")]
    List,
    /// Delete a ServiceGroup.
    Delete(SgDeleteArgs),
}

#[derive(Debug, Args, Clone, Default)]
pub struct SgCreateArgs {
    /// The group's name.
    pub name: Option<String>,
    /// IPv4 pool: a CIDR (192.0.2.0/28) or a range (192.0.2.200-192.0.2.220).
    #[arg(long, value_name = "POOL")]
    pub v4_pool: Option<String>,
    /// IPv4 subnet the pool lies in (default: the nodes' InternalIP /24 holding the pool).
    #[arg(long, value_name = "CIDR")]
    pub v4_subnet: Option<String>,
    /// IPv6 pool: a CIDR or a range.
    #[arg(long, value_name = "POOL")]
    pub v6_pool: Option<String>,
    /// IPv6 subnet the pool lies in (default: the nodes' InternalIP /64 holding the pool).
    #[arg(long, value_name = "CIDR")]
    pub v6_subnet: Option<String>,
    /// Aggregation of both pools: `default` (the subnet's prefix) or /NN.
    #[arg(long, value_name = "AGG")]
    pub aggregation: Option<String>,
    /// Aggregation of the IPv4 pool (overrides --aggregation).
    #[arg(long, value_name = "AGG")]
    pub v4_aggregation: Option<String>,
    /// Aggregation of the IPv6 pool (overrides --aggregation).
    #[arg(long, value_name = "AGG")]
    pub v6_aggregation: Option<String>,
    /// Do not ask: take the flags as they are.
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Print the group instead of creating it.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct SgDeleteArgs {
    /// The group's name.
    pub name: String,
    /// Delete even while Services hold addresses from it (they keep them; new Services cannot use it).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Only the plugin's version; do not contact the cluster.
    #[arg(long)]
    pub client: bool,
}

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}
