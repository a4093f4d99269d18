//! The lab's network for real: network namespaces, veths on a bridge, BIRD on the router and on every
//! node (running the shipped deploy/bird/bird.conf), and the relay to the API server.
//!
//! Needs root, iproute2, bird2 and ping (`.ci/run` installs them). Never skipped: a missing
//! prerequisite fails the test with the reason.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use purelb_lab::{LabNode, Network, NetworkConfig, wait_for};

/// How long a route change may take to reach the router's kernel table. A cut link takes the hold time
/// (3 s) to notice; everything else well under a second.
const CONVERGE: Duration = Duration::from_secs(20);
/// How long one external command may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

async fn network(nodes: usize) -> Result<Network> {
    network_with(NetworkConfig { nodes, ..Default::default() }).await
}

async fn network_with(config: NetworkConfig) -> Result<Network> {
    let lab = purelb_lab::try_shared().await?;
    let began = Instant::now();
    let nodes = config.nodes;
    let network = Network::create(lab, config).await?;
    eprintln!(
        "network of {nodes} nodes created, every BGP session Established, in {:?} (LAN namespace {})",
        began.elapsed(),
        network.lan_netns()
    );
    Ok(network)
}

/// Runs a command to completion (bounded), returning its output whatever its exit status.
async fn output(command: Command, what: &str) -> Result<Output> {
    let mut command = tokio::process::Command::from(command);
    command.kill_on_drop(true);
    tokio::time::timeout(COMMAND_TIMEOUT, command.output())
        .await
        .with_context(|| format!("{what}: no answer within {COMMAND_TIMEOUT:?}"))?
        .with_context(|| format!("{what}: could not run it"))
}

/// Runs a command and fails unless it succeeds.
async fn run(command: Command, what: &str) -> Result<String> {
    let out = output(command, what).await?;
    ensure!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> Command {
    let mut command = Command::new("ip");
    command.args(args);
    command
}

async fn ping(node: &LabNode, target: IpAddr) -> Result<()> {
    let mut command = node.command("ping");
    command.args(["-c1", "-W1", "-n", &target.to_string()]);
    run(command, &format!("ping {target} from {}", node.name())).await.map(drop)
}

/// Adds (`true`) or deletes an address on the node's kube-lb0, as PureLB's agent would.
async fn kube_lb0(node: &LabNode, add: bool, prefix: &str) -> Result<()> {
    let mut command = node.command("ip");
    command.args(["address", if add { "add" } else { "del" }, prefix, "dev", "kube-lb0"]);
    run(
        command,
        &format!("{} {prefix} on {}'s kube-lb0", if add { "adding" } else { "deleting" }, node.name()),
    )
    .await
    .map(drop)
}

/// Waits until the router's kernel route to `dst` has exactly `expected` as next hops (`None`: no route);
/// returns how long that took.
async fn wait_route(network: &Network, dst: &str, expected: Option<BTreeSet<IpAddr>>) -> Result<Duration> {
    let began = Instant::now();
    let what = format!("the router's route to {dst} to have next hops {expected:?}");
    wait_for(&what, CONVERGE, || async {
        let routes = network.router_routes().await.map_err(|e| e.to_string())?;
        let seen =
            routes.iter().find(|r| r.dst == dst).map(|r| r.nexthops.iter().copied().collect::<BTreeSet<_>>());
        if seen == expected { Ok(()) } else { Err(format!("next hops {seen:?}; all routes {routes:?}")) }
    })
    .await?;
    Ok(began.elapsed())
}

async fn netns_list() -> Result<BTreeSet<String>> {
    let listed = run(ip(&["netns", "list"]), "ip netns list").await?;
    Ok(listed.lines().filter_map(|line| line.split_whitespace().next()).map(str::to_owned).collect())
}

fn node<'a>(network: &'a Network, name: &str) -> Result<&'a LabNode> {
    network.node(name).with_context(|| format!("the network has no {name}"))
}

#[tokio::test]
async fn nodes_reach_each_other_the_router_and_the_api_server() -> Result<()> {
    let lab = purelb_lab::try_shared().await?;
    let network = network(3).await?;
    ensure!(network.nodes().len() == 3, "expected 3 nodes, got {}", network.nodes().len());
    let names: Vec<&str> = network.nodes().iter().map(LabNode::name).collect();
    ensure!(names == ["node1", "node2", "node3"], "unexpected node names {names:?}");

    let mut targets: Vec<(String, IpAddr)> = vec![
        ("router".to_owned(), purelb_lab::ROUTER_IPV4.into()),
        ("router".to_owned(), purelb_lab::ROUTER_IPV6.into()),
        ("control plane relay".to_owned(), purelb_lab::CONTROL_PLANE_IPV4.into()),
        ("control plane relay".to_owned(), purelb_lab::CONTROL_PLANE_IPV6.into()),
    ];
    for node in network.nodes() {
        targets.push((node.name().to_owned(), node.ipv4().into()));
        targets.push((node.name().to_owned(), node.ipv6().into()));
    }
    let began = Instant::now();
    for node in network.nodes() {
        for (name, target) in &targets {
            if name != node.name() {
                ping(node, *target).await.with_context(|| format!("{} cannot reach {name}", node.name()))?;
            }
        }
    }
    eprintln!("{} pings answered in {:?}", 3 * (targets.len() - 2), began.elapsed());

    // The node's own view of itself.
    let node1 = node(&network, "node1")?;
    let addresses = node1.addresses().await?;
    let has = |interface: &str, ip: IpAddr, len: u8| {
        addresses.iter().any(|a| a.interface == interface && a.ip == ip && a.prefix_len == len)
    };
    ensure!(has("eth0", node1.ipv4().into(), 24), "node1 lacks 192.0.2.11/24 on eth0: {addresses:?}");
    ensure!(has("eth0", node1.ipv6().into(), 64), "node1 lacks 2001:db8:0:1::11/64 on eth0: {addresses:?}");
    // IFA_PROTO, read over rtnetlink: the kernel tags loopback and link-local addresses itself.
    let protocol = |ip: IpAddr| addresses.iter().find(|a| a.ip == ip).and_then(|a| a.protocol.clone());
    ensure!(
        protocol(std::net::Ipv6Addr::LOCALHOST.into()).as_deref() == Some("kernel_lo"),
        "lo: {addresses:?}"
    );
    ensure!(protocol(node1.ipv4().into()).is_none(), "eth0's address has a protocol: {addresses:?}");
    ensure!(
        addresses.iter().any(|a| a.interface == "eth0"
            && a.scope == "link"
            && a.protocol.as_deref() == Some("kernel_ll")),
        "eth0's link-local address is not tagged kernel_ll: {addresses:?}"
    );
    // The same answers read in-process, as tests poll them; an address on two interfaces is found on both.
    let v4: IpAddr = node1.ipv4().into();
    ensure!(node1.placements(v4).await? == [("eth0".to_owned(), 24)], "placements of {v4}");
    ensure!(node1.placements(node1.ipv6().into()).await? == [("eth0".to_owned(), 64)], "placements of v6");
    let extra: IpAddr = "203.0.113.77".parse()?;
    ensure!(node1.placements(extra).await?.is_empty(), "{extra} is on no interface yet");
    for (dev, len) in [("eth0", "32"), ("kube-lb0", "28")] {
        let mut add = node1.command("ip");
        add.args(["addr", "add", &format!("{extra}/{len}"), "dev", dev]);
        run(add, "ip addr add").await?;
    }
    let mut found = node1.placements(extra).await?;
    found.sort();
    ensure!(
        found == [("eth0".to_owned(), 32), ("kube-lb0".to_owned(), 28)],
        "placements of {extra}: {found:?}"
    );
    for (dev, len) in [("eth0", "32"), ("kube-lb0", "28")] {
        let mut del = node1.command("ip");
        del.args(["addr", "del", &format!("{extra}/{len}"), "dev", dev]);
        run(del, "ip addr del").await?;
    }

    let mut show = node1.command("ip");
    show.args(["-o", "link", "show", "kube-lb0"]);
    let links = run(show, "ip link show kube-lb0").await?;
    ensure!(
        links.contains("UP") && links.contains("link/ether"),
        "kube-lb0 is not an up ifb device: {links}"
    );

    // Kubernetes Node objects.
    let nodes: Api<Node> = Api::all(lab.admin_client().await?);
    let object = nodes.get("node1").await?;
    let internal: Vec<String> = object
        .status
        .and_then(|s| s.addresses)
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a.type_ == "InternalIP")
        .map(|a| a.address)
        .collect();
    ensure!(internal == ["192.0.2.11", "2001:db8:0:1::11"], "node1's InternalIPs are {internal:?}");
    let hostname = object.metadata.labels.unwrap_or_default().get("kubernetes.io/hostname").cloned();
    ensure!(hostname.as_deref() == Some("node1"), "node1's hostname label is {hostname:?}");

    // The API server, through the relay, from inside a node.
    let kubeconfig = network.kubeconfig_for_nodes(lab.admin_kubeconfig())?;
    let text = std::fs::read_to_string(&kubeconfig)?;
    ensure!(
        text.contains("https://192.0.2.1:6443"),
        "{} does not name the relay:\n{text}",
        kubeconfig.display()
    );
    let mut kubectl = node1.command(lab.kubectl());
    kubectl.env("KUBECONFIG", &kubeconfig).args(["get", "nodes", "-o", "name", "--request-timeout=10s"]);
    let listed = run(kubectl, "kubectl get nodes in node1 through the relay").await?;
    for name in ["node/node1", "node/node2", "node/node3"] {
        ensure!(listed.lines().any(|l| l == name), "kubectl in node1 did not list {name}: {listed}");
    }

    // Nothing else of the machine is reachable: 127.0.0.1 in a node is the node's own loopback.
    let mut direct = node1.command(lab.kubectl());
    direct.env("KUBECONFIG", lab.admin_kubeconfig()).args(["get", "nodes", "--request-timeout=3s"]);
    let out = output(direct, "kubectl in node1 with the loopback kubeconfig").await?;
    ensure!(!out.status.success(), "node1 reached the apiserver on 127.0.0.1: the namespace is not isolated");
    let defaults =
        run(ip(&["-n", network.router_netns(), "route", "show", "default"]), "router default route").await?;
    ensure!(defaults.trim().is_empty(), "the router has a default route: {defaults}");
    Ok(())
}

#[tokio::test]
async fn the_router_learns_kube_lb0_addresses_from_every_node_as_ecmp_routes() -> Result<()> {
    let network = network(3).await?;
    let sessions = network.bgp_sessions().await?;
    ensure!(
        sessions.len() == 6 && sessions.iter().all(|s| s.is_established()),
        "expected 6 Established sessions on the router: {sessions:?}"
    );
    let protocols = network.birdc(node(&network, "node1")?.netns(), &["show", "protocols"]).await?;
    ensure!(
        protocols.lines().filter(|l| l.contains("Established")).count() == 2,
        "node1's BIRD does not have both uplinks Established:\n{protocols}"
    );
    // Every session is watched by BFD, on the router's side and the node's (the shipped bird.conf).
    let want: BTreeSet<IpAddr> =
        network.nodes().iter().flat_map(|n| [IpAddr::from(n.ipv4()), IpAddr::from(n.ipv6())]).collect();
    wait_for("a BFD session Up with every node, both families", CONVERGE, || async {
        let up: BTreeSet<IpAddr> = network
            .bfd_sessions(network.router_netns())
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|s| s.is_up())
            .map(|s| s.address)
            .collect();
        if up == want { Ok(()) } else { Err(format!("Up with {up:?}")) }
    })
    .await?;
    let node1 = network.bfd_sessions(node(&network, "node1")?.netns()).await?;
    let router: BTreeSet<IpAddr> = [purelb_lab::ROUTER_IPV4.into(), purelb_lab::ROUTER_IPV6.into()].into();
    ensure!(
        node1.iter().filter(|s| s.is_up()).map(|s| s.address).collect::<BTreeSet<_>>() == router,
        "node1's BIRD has no BFD session Up with the router in both families: {node1:?}"
    );

    let (node1, node2) = (node(&network, "node1")?, node(&network, "node2")?);
    type Hop = fn(&LabNode) -> IpAddr;
    let families: [(&str, Hop); 2] =
        [("198.51.100.7/32", |n| n.ipv4().into()), ("2001:db8:100::7/128", |n| n.ipv6().into())];
    for (dst, hop) in families {
        kube_lb0(node1, true, dst).await?;
        kube_lb0(node2, true, dst).await?;
        let took = wait_route(&network, dst, Some(BTreeSet::from([hop(node1), hop(node2)]))).await?;
        eprintln!("{dst}: ECMP route via node1 and node2 after {took:?}");

        kube_lb0(node1, false, dst).await?;
        let took = wait_route(&network, dst, Some(BTreeSet::from([hop(node2)]))).await?;
        eprintln!("{dst}: node1 withdrew, route via node2 only after {took:?}");

        kube_lb0(node2, false, dst).await?;
        let took = wait_route(&network, dst, None).await?;
        eprintln!("{dst}: route gone after {took:?}");
    }
    Ok(())
}

#[tokio::test]
async fn a_node_whose_link_is_cut_loses_its_routes_until_the_link_is_back() -> Result<()> {
    let network = network(2).await?;
    let (node1, node2) = (node(&network, "node1")?, node(&network, "node2")?);
    let dst = "203.0.113.9/32";
    kube_lb0(node1, true, dst).await?;
    kube_lb0(node2, true, dst).await?;
    let both = BTreeSet::from([IpAddr::from(node1.ipv4()), IpAddr::from(node2.ipv4())]);
    wait_route(&network, dst, Some(both.clone())).await?;

    node1.set_link(false).await?;
    let took = wait_route(&network, dst, Some(BTreeSet::from([IpAddr::from(node2.ipv4())]))).await?;
    eprintln!("node1's link cut: its route withdrawn after {took:?} (BFD 200 ms x 3; BGP hold time 3 s)");
    ensure!(ping(node1, purelb_lab::ROUTER_IPV4.into()).await.is_err(), "node1 still reaches the router");
    // BFD saw it go, not BGP's hold timer: the router's session with node1 fell for that reason.
    let sessions = network.bgp_sessions().await?;
    let v4 = sessions.iter().find(|s| s.protocol == "node1_v4");
    ensure!(
        v4.is_some_and(|s| s.info.contains("BFD session down")),
        "the router's session with node1 did not fall by BFD: {v4:?}"
    );

    node1.set_link(true).await?;
    let took = wait_route(&network, dst, Some(both)).await?;
    eprintln!("node1's link restored: its route back after {took:?}");
    Ok(())
}

#[tokio::test]
async fn a_router_without_bfd_still_peers_and_learns_the_routes() -> Result<()> {
    let network = network_with(NetworkConfig { nodes: 1, router_bfd: false, ..Default::default() }).await?;
    let node1 = node(&network, "node1")?;
    let dst = "203.0.113.10/32";
    kube_lb0(node1, true, dst).await?;
    wait_route(&network, dst, Some(BTreeSet::from([IpAddr::from(node1.ipv4())]))).await?;
    // The node asks for BFD and never gets an answer; its sessions stay Established all the same,
    // through more than one BGP hold time (3 s) and many BFD detection times (600 ms).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let bfd = network.bfd_sessions(node1.netns()).await?;
    ensure!(!bfd.is_empty() && bfd.iter().all(|s| !s.is_up()), "node1's BFD sessions: {bfd:?}");
    let sessions = network.bgp_sessions().await?;
    ensure!(
        sessions.len() == 2 && sessions.iter().all(|s| s.is_established()),
        "a router without BFD lost its sessions: {sessions:?}"
    );
    let protocols = network.birdc(node1.netns(), &["show", "protocols"]).await?;
    ensure!(
        protocols.lines().filter(|l| l.contains("Established")).count() == 2,
        "node1's uplinks are not both Established:\n{protocols}"
    );
    wait_route(&network, dst, Some(BTreeSet::from([IpAddr::from(node1.ipv4())]))).await?;
    Ok(())
}

#[tokio::test]
async fn dropping_the_network_deletes_its_namespaces_and_a_dead_labs_are_swept() -> Result<()> {
    let lab = purelb_lab::try_shared().await?;
    // A namespace as a lab process that died (here: one that never was a lab) would have left it.
    let mut dead = Command::new("true").spawn().context("running `true`")?;
    let pid = dead.id();
    dead.wait()?;
    let stale = format!("plb-{pid}-0-0-lan");
    run(ip(&["netns", "add", &stale]), "creating a stale namespace").await?;

    let network = Network::create(lab, NetworkConfig { nodes: 1, ..Default::default() }).await?;
    ensure!(!netns_list().await?.contains(&stale), "the stale namespace {stale} survived Network::create");

    let names = network.namespaces().to_vec();
    ensure!(names.len() == 4, "expected lan, cp, r and n1 namespaces, got {names:?}");
    let listed = netns_list().await?;
    ensure!(names.iter().all(|n| listed.contains(n)), "{names:?} not all in `ip netns list`: {listed:?}");
    let birds = [
        network.router_bird().context("the router's BIRD")?.pid(),
        node(&network, "node1")?.bird().context("node1's BIRD")?.pid(),
    ];
    // A process nobody supervises, left running inside a node.
    let stray = node(&network, "node1")?.command("sleep").arg("600").spawn().context("starting sleep")?;

    drop(network);
    let listed = netns_list().await?;
    let left: Vec<&String> = names.iter().filter(|n| listed.contains(*n)).collect();
    ensure!(left.is_empty(), "namespaces left after drop: {left:?}");
    for pid in birds {
        ensure!(!Path::new(&format!("/proc/{pid}")).exists(), "BIRD (pid {pid}) still runs after drop");
    }
    let stray = std::sync::Mutex::new(stray);
    let status = wait_for("the stray process to be killed", Duration::from_secs(5), || async {
        let exited =
            stray.lock().map_err(|_| "poisoned".to_owned())?.try_wait().map_err(|e| e.to_string())?;
        exited.ok_or_else(|| "still running".to_owned())
    })
    .await?;
    if status.success() {
        bail!("the stray process exited by itself ({status}) instead of being killed");
    }
    Ok(())
}

/// A TCP connection to the API server relay (192.0.2.1:6443) made inside `node`'s namespace, with 1 s
/// read timeouts.
fn connect_from(node: &LabNode) -> Result<std::net::TcpStream> {
    let relay =
        std::net::SocketAddr::from((purelb_lab::CONTROL_PLANE_IPV4, purelb_lab::APISERVER_RELAY_PORT));
    let stream = node.tcp_connect(relay, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    Ok(stream)
}

/// A TLS 1.2 ClientHello (ECDHE with ECDSA or RSA, AES-GCM) with no server name: enough for the
/// apiserver to answer with a ServerHello (or an alert), either being an answer.
fn client_hello() -> Vec<u8> {
    let mut extensions = Vec::new();
    // supported_groups: x25519, secp256r1; ec_point_formats: uncompressed.
    extensions.extend([0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17]);
    extensions.extend([0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]);
    // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256.
    extensions.extend([0x00, 0x0d, 0x00, 0x08, 0x00, 0x06, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01]);
    // extended_master_secret, renegotiation_info.
    extensions.extend([0x00, 0x17, 0x00, 0x00, 0xff, 0x01, 0x00, 0x01, 0x00]);
    let mut body = vec![0x03, 0x03];
    body.extend([0x5a; 32]);
    body.push(0x00);
    body.extend([0x00, 0x04, 0xc0, 0x2b, 0xc0, 0x2f]);
    body.extend([0x01, 0x00]);
    body.extend(u16::try_from(extensions.len()).unwrap_or(0).to_be_bytes());
    body.extend(extensions);
    let mut handshake = vec![0x01];
    handshake.extend(&u32::try_from(body.len()).unwrap_or(0).to_be_bytes()[1..]);
    handshake.extend(body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend(u16::try_from(handshake.len()).unwrap_or(0).to_be_bytes());
    record.extend(handshake);
    record
}

/// What came back within the stream's 1 s read timeout.
#[derive(Debug, PartialEq)]
enum Answer {
    /// The first byte of a TLS record: 0x16 handshake, 0x15 alert.
    Tls(u8),
    Silence,
    Closed,
}

/// Sends `bytes` (if any) and reads for up to 1 s.
fn exchange(stream: &mut std::net::TcpStream, bytes: &[u8]) -> Result<Answer> {
    use std::io::{Read, Write};
    stream.write_all(bytes)?;
    let mut first = [0u8; 1];
    match stream.read(&mut first) {
        Ok(0) => Ok(Answer::Closed),
        Ok(_) => Ok(Answer::Tls(first[0])),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
            Ok(Answer::Silence)
        }
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(Answer::Closed),
        Err(e) => Err(e.into()),
    }
}

fn answered(answer: &Answer) -> bool {
    matches!(answer, Answer::Tls(0x16 | 0x15))
}

#[tokio::test]
async fn cutting_one_node_off_the_api_black_holes_its_connections_only() -> Result<()> {
    let network = network(2).await?;
    let (node1, node2) = (node(&network, "node1")?, node(&network, "node2")?);
    let hello = client_hello();
    for n in [node1, node2] {
        let answer = exchange(&mut connect_from(n)?, &hello)?;
        ensure!(answered(&answer), "before any cut, {} got {answer:?} to a ClientHello", n.name());
    }

    // A connection relayed before the cut, idle, and one to a node that stays connected.
    let mut before = connect_from(node1)?;
    let mut other_before = connect_from(node2)?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    network.cut_api("node1", true);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let answer = exchange(&mut before, &hello)?;
    ensure!(answer == Answer::Silence, "node1's existing connection, cut, got {answer:?}");
    let mut during = connect_from(node1).context("a cut node's new connection is still accepted")?;
    let answer = exchange(&mut during, &hello)?;
    ensure!(answer == Answer::Silence, "node1's new connection, cut, got {answer:?}");
    let answer = exchange(&mut other_before, &hello)?;
    ensure!(answered(&answer), "node2's existing connection got {answer:?} while node1 was cut");
    let answer = exchange(&mut connect_from(node2)?, &hello)?;
    ensure!(answered(&answer), "node2's new connection got {answer:?} while node1 was cut");
    // Still silent, still open: a black hole, not a refusal.
    for (what, stream) in [("existing", &mut before), ("new", &mut during)] {
        let answer = exchange(stream, &[])?;
        ensure!(answer == Answer::Silence, "node1's {what} connection, still cut, got {answer:?}");
    }

    network.cut_api("node1", false);
    for (what, stream) in [("existing", &mut before), ("new", &mut during)] {
        let mut answer = Answer::Silence;
        for _ in 0..3 {
            answer = exchange(stream, &[])?;
            if answer != Answer::Silence {
                break;
            }
        }
        ensure!(
            answer == Answer::Closed,
            "node1's {what} connection held by the cut was not closed: {answer:?}"
        );
    }
    let answer = exchange(&mut connect_from(node1)?, &hello)?;
    ensure!(answered(&answer), "after the cut, node1's new connection got {answer:?}");
    Ok(())
}

#[tokio::test]
async fn the_sampler_sees_an_address_added_as_one_change() -> Result<()> {
    let network = network(2).await?;
    let node1 = node(&network, "node1")?;
    let ip: IpAddr = "192.0.2.77".parse()?;
    let sampler =
        purelb_lab::Sampler::start(&network, Duration::from_millis(50), vec![ip], Duration::from_secs(30))?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut add = node1.command("ip");
    add.args(["address", "add", "192.0.2.77/24", "dev", "eth0"]);
    run(add, "adding 192.0.2.77/24 to node1's eth0").await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let timeline = sampler.stop();
    eprintln!("{timeline}");

    ensure!(timeline.samples() >= 20, "only {} samples in 2 s:\n{timeline}", timeline.samples());
    ensure!(timeline.max_blind_gap() <= Duration::from_millis(100), "sampled too slowly:\n{timeline}");
    ensure!(timeline.changes() == 1, "expected one change (the address added):\n{timeline}");
    ensure!(timeline.kernel_changes() == 1, "the kernel should have reported the one address:\n{timeline}");
    ensure!(
        timeline.ever_on_interface(ip, "eth0") == ["node1"],
        "192.0.2.77 not seen on node1's eth0:\n{timeline}"
    );
    ensure!(timeline.ever_on_interface(ip, "kube-lb0").is_empty(), "{timeline}");
    ensure!(timeline.double_holding(ip) == Duration::ZERO, "{timeline}");
    Ok(())
}

/// An address added and removed between two samples is in no sample, but the kernel reported both
/// changes, so the gap they fell in is blind: a test cannot mistake it for a quiet one.
#[tokio::test]
async fn the_sampler_hears_a_flicker_between_two_samples() -> Result<()> {
    let network = network(2).await?;
    let node1 = node(&network, "node1")?;
    let ip: IpAddr = "192.0.2.79".parse()?;
    // One sample every 2 s: the add and the delete, a few milliseconds apart, fall between two of them.
    let sampler =
        purelb_lab::Sampler::start(&network, Duration::from_secs(2), vec![ip], Duration::from_secs(30))?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut flicker = node1.command("sh");
    flicker.args(["-c", "ip address add 192.0.2.79/24 dev eth0 && ip address del 192.0.2.79/24 dev eth0"]);
    run(flicker, "adding and removing 192.0.2.79/24 on node1's eth0").await?;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let timeline = sampler.stop();
    eprintln!("{timeline}");

    ensure!(timeline.changes() == 0, "no sample should have seen the address:\n{timeline}");
    ensure!(
        timeline.kernel_changes() == 2,
        "the kernel should have reported the add and the delete:\n{timeline}"
    );
    ensure!(timeline.max_blind_gap() >= Duration::from_secs(1), "the gap it fell in is blind:\n{timeline}");
    Ok(())
}

#[tokio::test]
async fn the_sampler_sees_the_router_learn_a_kube_lb0_address() -> Result<()> {
    let network = network(2).await?;
    let node1 = node(&network, "node1")?;
    let ip: IpAddr = "203.0.113.78".parse()?;
    let sampler =
        purelb_lab::Sampler::start(&network, Duration::from_millis(50), vec![ip], Duration::from_secs(60))?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    kube_lb0(node1, true, "203.0.113.78/32").await?;
    wait_route(&network, "203.0.113.78/32", Some(BTreeSet::from([IpAddr::from([192, 0, 2, 11])]))).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let timeline = sampler.stop();
    eprintln!("{timeline}");

    ensure!(timeline.max_blind_gap() <= Duration::from_millis(100), "sampled too slowly:\n{timeline}");
    ensure!(
        timeline.kernel_changes() >= 2,
        "the kernel should have reported the address and the route:\n{timeline}"
    );
    ensure!(timeline.changes() == 2, "expected the address and its route to appear, once each:\n{timeline}");
    ensure!(timeline.ever_on_interface(ip, "kube-lb0") == ["node1"], "{timeline}");
    let documentation = [purelb_core::pool::Subnet::parse("203.0.113.0/24")?];
    let routes = timeline.router_routes_within(&documentation);
    let seen: Vec<(&str, &[IpAddr])> =
        routes.iter().map(|r| (r.dst.as_str(), r.nexthops.as_slice())).collect();
    let node1_v4 = [IpAddr::from([192, 0, 2, 11])];
    ensure!(seen == [("203.0.113.78/32", &node1_v4[..])], "router routes {routes:?}:\n{timeline}");
    let lan = [
        purelb_core::pool::Subnet::parse("192.0.2.0/24")?,
        purelb_core::pool::Subnet::parse("2001:db8:0:1::/64")?,
    ];
    ensure!(timeline.router_routes_within(&lan).is_empty(), "the router learnt a LAN route:\n{timeline}");
    Ok(())
}
