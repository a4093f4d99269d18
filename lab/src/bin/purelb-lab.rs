//! `purelb-lab up`: a PureLB playground on one machine. Starts the lab's control plane (real etcd and
//! kube-apiserver) and a 3-node network (namespaces on a LAN bridge, BIRD on every node and on a router),
//! installs PureLB with the real `kubectl purelb install`, runs the allocator as the ServiceAccount install
//! created and one agent inside each node, kube-proxy (nftables) on every node, two echoserver pods and a
//! client behind the router; creates the `default` ServiceGroup and the seed's echoserver Service, sends
//! a request from the client to the Service's address and prints the answer and the `curl` that gets it,
//! prints `kubectl purelb explain` for it and how to look around, then runs until SIGINT/SIGTERM, which
//! stops everything and deletes the lab's network namespaces. Needs root (network namespaces).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Service;
use kube::api::Api;
use purelb_lab::{Child, ControlPlane, Network, NetworkConfig, wait_for, workspace_root};

const NS: &str = "purelb-system";
const SERVICE: &str = "echoserver-service";
const USAGE: &str = "usage: purelb-lab up\n\n\
Starts a PureLB lab (control plane, 3 nodes, a BGP router, the allocator and the agents) and runs it \
until Ctrl-C or SIGTERM. Needs root.";

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("up") if args.len() == 1 => {}
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            return;
        }
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    }
    if !is_root() {
        eprintln!(
            "purelb-lab: `up` must run as root: the lab's nodes and router are network namespaces.\n\
             Run `sudo bash scripts/lab-up.sh` (or `sudo target/release/purelb-lab up`)."
        );
        std::process::exit(1);
    }
    if let Err(e) = up().await {
        eprintln!("purelb-lab: {e:#}");
        std::process::exit(1);
    }
}

/// Whether the effective uid is 0 (the second field of `Uid:` in /proc/self/status).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").ok().is_some_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            .is_some_and(|euid| euid == "0")
    })
}

fn step(what: &str) {
    println!("==> {what}");
}

async fn up() -> Result<()> {
    step("starting etcd and kube-apiserver");
    let cp = ControlPlane::start().await.context("starting the control plane")?;
    step("creating 3 nodes and a BGP router (network namespaces, BIRD)");
    let net = Network::create(&cp, NetworkConfig { nodes: 3, ..Default::default() })
        .await
        .context("creating the lab network")?;

    step("kubectl purelb install");
    let install = plugin(&cp, &["install"])?;
    print!("{install}");

    step("starting the allocator (as the purelb-allocator ServiceAccount)");
    let allocator = start_allocator(&cp).await?;
    step("starting one agent per node (as the purelb-agent ServiceAccount)");
    let agents = start_agents(&cp, &net).await?;
    step("starting kube-proxy (nftables) on every node, two echoserver pods, a client behind the router");
    let proxies = net.start_kube_proxies(&cp).await.context("starting kube-proxy")?;
    let admin = cp.admin_client().await?;
    let mut pods = Vec::new();
    for (i, node) in ["node1", "node2"].iter().enumerate() {
        let name = format!("echoserver-{}", i + 1);
        let pod = net.run_pod(&cp, &admin, "default", &name, node, &[("app", "echoserver")]).await?;
        pods.push(pod);
    }
    let outside = net.add_client().await.context("adding the client")?;

    let root = workspace_root();
    step("creating the default ServiceGroup and the echoserver Service");
    for f in ["examples/servicegroup-default.yaml", "examples/echoserver-service.yaml"] {
        cp.apply_file(&root.join(f)).await.with_context(|| format!("applying {f}"))?;
    }
    let client = cp.admin_client().await?;
    let api: Api<Service> = Api::namespaced(client, "default");
    let address = wait_for("an address on Service echoserver-service", Duration::from_secs(60), || {
        let api = api.clone();
        async move { api.get_opt(SERVICE).await.ok().flatten().and_then(|s| first_ingress(&s)) }
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n--- allocator log ---\n{}", allocator.log_tail(30)))?;
    println!("Service default/{SERVICE} got {address}");

    step(&format!("a request from the client behind the router to http://{address}/"));
    let to = std::net::SocketAddr::new(address.parse().context("the Service's address")?, 80);
    let reply = wait_for(&format!("an answer from {to}"), Duration::from_secs(60), || {
        outside.http_get(to, Duration::from_secs(1))
    })
    .await?;
    println!("  ip netns exec {} curl -s http://{address}/", outside.netns());
    println!(
        "  answered by pod {} on {} (it saw the request come from {}, port {})",
        reply.pod, reply.node, reply.client, reply.port
    );

    step(&format!("kubectl purelb explain service/{SERVICE}"));
    print!("{}", plugin(&cp, &["explain", &format!("service/{SERVICE}"), "-n", "default"])?);

    print_how_to_play(&cp, &net);
    wait_for_signal().await?;

    println!("\n==> stopping: agents, allocator, network namespaces, control plane");
    drop(outside);
    for pod in pods {
        if let Err(e) = pod.delete().await {
            eprintln!("purelb-lab: {e}");
        }
    }
    drop(proxies);
    drop(agents);
    drop(allocator);
    drop(net);
    drop(cp);
    println!("==> lab stopped");
    Ok(())
}

/// Runs `kubectl-purelb args` as the lab's admin; its stdout, or an error with everything it said.
fn plugin(cp: &ControlPlane, args: &[&str]) -> Result<String> {
    let bin = purelb_lab::binary("kubectl-purelb")?;
    let out = Command::new(&bin)
        .args(args)
        .env("KUBECONFIG", cp.admin_kubeconfig())
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("kubectl purelb {} failed:\n{stdout}{}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(stdout)
}

async fn start_allocator(cp: &ControlPlane) -> Result<Child> {
    let kubeconfig = cp.service_account_kubeconfig(NS, "purelb-allocator").await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let args = vec![format!("--namespace={NS}"), "--identity=lab-allocator".into(), admin_addr(port)];
    let bin = purelb_lab::binary("purelb-allocator")?;
    Ok(cp.spawn(&bin, &args, &kubeconfig, "allocator")?)
}

async fn start_agents(cp: &ControlPlane, net: &Network) -> Result<Vec<Child>> {
    let sa = cp.service_account_kubeconfig(NS, "purelb-agent").await?;
    let kubeconfig = net.kubeconfig_for_nodes(&sa)?;
    let bin = purelb_lab::binary("purelb-agent")?;
    let mut agents = Vec::new();
    for node in net.nodes() {
        let args =
            vec![format!("--node-name={}", node.name()), format!("--namespace={NS}"), admin_addr(9091)];
        agents.push(node.spawn(cp, &bin, &args, &kubeconfig, &format!("agent-{}", node.name()))?);
    }
    Ok(agents)
}

fn admin_addr(port: u16) -> String {
    format!("--admin-addr=127.0.0.1:{port}")
}

fn first_ingress(svc: &Service) -> Option<String> {
    svc.status.as_ref()?.load_balancer.as_ref()?.ingress.as_ref()?.iter().find_map(|i| i.ip.clone())
}

fn print_how_to_play(cp: &ControlPlane, net: &Network) {
    let kubectl = cp.kubectl().display().to_string();
    let kc = cp.admin_kubeconfig().display().to_string();
    let root = workspace_root();
    let plugin_dir = purelb_lab::binary("kubectl-purelb")
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    println!("\n==> the lab is up. In another shell (as root):\n");
    println!("  export KUBECONFIG={kc}");
    println!(
        "  export PATH={}:{}:$PATH",
        plugin_dir.display(),
        Path::new(&kubectl).parent().map(|p| p.display().to_string()).unwrap_or_default()
    );
    println!("  kubectl --kubeconfig {kc} get svc -A");
    println!("  kubectl get sg -A                    # pools, allocated, available");
    println!("  kubectl purelb explain service/{SERVICE}");
    println!(
        "  kubectl apply -f {}   # more to try: see examples/",
        root.join("examples/servicegroup-dualstack.yaml").display()
    );
    for node in net.nodes() {
        println!("  ip netns exec {} ip addr show          # node {}", node.netns(), node.name());
    }
    println!("  birdc -s {} show route   # the router's BGP routes", router_socket(net).display());
    println!(
        "\nThe lab has no kubelet or scheduler: the allocator, the agents, kube-proxy and the echo pods run as\n\
         processes (the lab writes the pods' status), so `kubectl purelb status` shows the Deployment and\n\
         the DaemonSet with no ready pod; the Leases, pools, Services and EndpointSlices are real."
    );
    println!("Logs: {}/*.log", cp.dir().display());
    println!(
        "Stop: Ctrl-C (or SIGTERM to pid {}) stops everything and removes the lab's namespaces.",
        std::process::id()
    );
}

/// The router's BIRD control socket: the one its BIRD was started with (`-s <path>`).
fn router_socket(net: &Network) -> PathBuf {
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", net.router_bird().map_or(0, |b| b.pid())))
        .unwrap_or_default();
    let args: Vec<String> =
        cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    args.iter()
        .position(|a| a == "-s")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .unwrap_or_else(|| net.dir().join("router.ctl"))
}

async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
