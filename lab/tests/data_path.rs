//! End-to-end tests of PureLB's data path: packets from a client outside the cluster, through the router,
//! to a Service address PureLB put on a node, through kube-proxy (nftables) to echo-server pods.
//!
//! Covered: a local address over IPv4 and IPv6 (the router's neighbour entry is the elected node's MAC);
//! routed addresses (/32, /128 and a group's default aggregation) spread by the router's ECMP over every
//! node, reaching a pod on another node (ETP Cluster); ETP Local keeping the client's own address with
//! the route following the pod; two Services sharing one address on two ports; a deleted Service
//! going quiet; a Service of a foreign class never reachable through us. Which node a request entered
//! by is read from the source address the pod saw (kube-proxy masquerades to the entry node's).
//!
//! One lab and one 2-node network serve the file, with the allocator, an agent and kube-proxy on each
//! node, and the client behind the router; each test has its own namespace, pods, ServiceGroup and
//! addresses. The lab's own pods are checked here too: deleted or dropped, they leave nothing behind.
//! Needs root, iproute2, bird2 and nftables (`.ci/run` installs them) and kube-proxy in the
//! upstream binaries (`lab/upstream/build.sh` builds it). Failover as the client sees it is in
//! data_path_failover.rs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::traffic::*;
use common::*;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use purelb_core::api::annotations;
use purelb_lab::{ControlPlane, LabPod, ProbeConfig, TestNamespace, shared, wait_for};
use tokio::sync::OnceCell;

const NODES: [&str; 2] = ["node1", "node2"];

static CLUSTER: OnceCell<DataPath> = OnceCell::const_new();

async fn cluster() -> (&'static ControlPlane, &'static DataPath) {
    let lab = shared().await;
    let c = CLUSTER.get_or_init(|| start_data_path(lab, "allocator-data-path", &NODES)).await;
    (lab, c)
}

#[tokio::test]
async fn a_local_address_carries_traffic_to_the_echoserver_over_ipv4_and_ipv6() {
    let (lab, c) = cluster().await;
    let began = Instant::now();
    let client = lab.admin_client().await.unwrap();
    let ns = TestNamespace::new(&client, "dp-local").await.unwrap();
    let pods = run_pods(lab, &c.net, &client, ns.name(), "echoserver", &NODES).await;
    let pods_ready = began.elapsed();

    let v6 = ("2001:db8:0:1::/64", "2001:db8:0:1::f0-2001:db8:0:1::f3", "default");
    create_group(
        &client,
        ns.name(),
        &group("dp-local", Some(("192.0.2.0/24", "192.0.2.240-192.0.2.243", "default")), Some(v6)),
    )
    .await;
    let api: Api<Service> = Api::namespaced(client.clone(), ns.name());
    create(&api, &echo_service("echoserver", 80, "dp-local", "echoserver", &[], DUAL_STACK)).await;
    let ips = ingress(&wait_ingress(&api, "echoserver", 2).await);
    // kube-controller-manager's EndpointSlice controller found both pods Ready.
    let all: Vec<&LabPod> = pods.iter().collect();
    wait_endpoints(&client, ns.name(), "echoserver", &all, true).await;

    for ip in &ips {
        let winner = elected(&c.net, ip).await;
        let to = at(ip, 80);
        let t0 = Instant::now();
        let reply = first_answer(&c.client, to).await;
        let first = t0.elapsed();
        let answering = pods.iter().find(|p| p.name() == reply.pod).expect("answered by one of the pods");
        assert_eq!(reply.node, answering.node(), "{reply:?}");

        // The router reached the address at the elected node's LAN interface (ARP or NDP).
        assert_eq!(
            router_neighbour(&c.net, ip).as_deref(),
            Some(mac_of(&c.net, &winner).as_str()),
            "the router's neighbour entry for {ip} (elected: {winner})"
        );

        // A steady stream: every request answered, by both pods (kube-proxy spreads new connections),
        // and every one entered by the elected node.
        let report = probe(&c.client, to, 200).await;
        assert_eq!(report.failed(), 0, "{}", report.summary());
        assert_eq!(report.pods_seen(), names(&all), "{}", report.summary());
        assert_eq!(entry_nodes(&c.net, &report), BTreeSet::from([winner.clone()]), "{}", report.summary());
        eprintln!(
            "{ip} elected on {winner}; first answer {first:?} after the endpoints; {}",
            report.summary()
        );
    }
    eprintln!("pods ready in {pods_ready:?}, total {:?}", began.elapsed());
    for pod in pods {
        pod.delete().await.unwrap();
    }
    ns.cleanup().await.unwrap();
}

#[tokio::test]
async fn routed_addresses_spread_over_every_node_through_bgp_ecmp_and_reach_a_pod_on_another_node() {
    let (lab, c) = cluster().await;
    let client = lab.admin_client().await.unwrap();
    let ns = TestNamespace::new(&client, "dp-routed").await.unwrap();
    // One pod, on node1: what enters by node2 must cross to node1 (ETP Cluster).
    let pods = run_pods(lab, &c.net, &client, ns.name(), "routed", &["node1"]).await;
    let v6 = ("2001:db8:100::/64", "2001:db8:100::1-2001:db8:100::f", "/128");
    create_group(
        &client,
        ns.name(),
        &group("dp-host", Some(("203.0.113.0/24", "203.0.113.1-203.0.113.14", "/32")), Some(v6)),
    )
    .await;
    create_group(
        &client,
        ns.name(),
        &group("dp-agg", Some(("198.51.100.0/24", "198.51.100.0/28", "default")), None),
    )
    .await;
    let api: Api<Service> = Api::namespaced(client.clone(), ns.name());
    create(&api, &echo_service("host", 80, "dp-host", "routed", &[], DUAL_STACK)).await;
    create(&api, &echo_service("agg", 80, "dp-agg", "routed", &[], "")).await;
    let all: Vec<&LabPod> = pods.iter().collect();
    wait_endpoints(&client, ns.name(), "host", &all, true).await;
    wait_endpoints(&client, ns.name(), "agg", &all, false).await;

    let mut targets: Vec<(String, String, bool)> = Vec::new();
    for ip in ingress(&wait_ingress(&api, "host", 2).await) {
        let v4 = !ip.contains(':');
        let route = if v4 { format!("{ip}/32") } else { format!("{ip}/128") };
        targets.push((ip, route, v4));
    }
    let agg = ingress(&wait_ingress(&api, "agg", 1).await)[0].clone();
    targets.push((agg, "198.51.100.0/24".to_owned(), true));
    for (ip, route, v4) in &targets {
        let hops: Vec<String> = c
            .net
            .nodes()
            .iter()
            .map(|n| if *v4 { n.ipv4().to_string() } else { n.ipv6().to_string() })
            .collect();
        let hops: Vec<&str> = hops.iter().map(String::as_str).collect();
        wait_route(&c.net, route, &hops).await;
        let to = at(ip, 80);
        wait_settled(&c.client, to).await;
        let report = probe(&c.client, to, 200).await;
        assert_eq!(report.failed(), 0, "{}", report.summary());
        assert_eq!(report.pods_seen(), names(&all), "{}", report.summary());
        let entered = entry_nodes(&c.net, &report);
        let every: BTreeSet<String> = NODES.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            entered,
            every,
            "the router's ECMP spreads connections over every node: {}",
            report.summary()
        );
        eprintln!("{ip} ({route} via {hops:?}): entered by {entered:?}; {}", report.summary());
    }
    for pod in pods {
        pod.delete().await.unwrap();
    }
    ns.cleanup().await.unwrap();
}

#[tokio::test]
async fn etp_local_keeps_the_client_address_and_the_route_follows_the_pod() {
    let (lab, c) = cluster().await;
    let client = lab.admin_client().await.unwrap();
    let ns = TestNamespace::new(&client, "dp-etp").await.unwrap();
    let mut first = run_pods(lab, &c.net, &client, ns.name(), "etp", &["node1"]).await;
    create_group(
        &client,
        ns.name(),
        &group("dp-etp", Some(("203.0.113.0/24", "203.0.113.16/28", "/32")), None),
    )
    .await;
    let api: Api<Service> = Api::namespaced(client.clone(), ns.name());
    create(&api, &echo_service("etp", 80, "dp-etp", "etp", &[], "  externalTrafficPolicy: Local\n")).await;
    let ip = ingress(&wait_ingress(&api, "etp", 1).await)[0].clone();
    let route = format!("{ip}/32");
    let (node1, node2) = (c.net.node("node1").unwrap(), c.net.node("node2").unwrap());
    wait_endpoints(&client, ns.name(), "etp", &[&first[0]], false).await;
    wait_route(&c.net, &route, &[&node1.ipv4().to_string()]).await;
    let to = at(&ip, 80);
    first_answer(&c.client, to).await;
    let report = probe(&c.client, to, 200).await;
    assert_eq!(report.failed(), 0, "{}", report.summary());
    let own = BTreeSet::from([IpAddr::V4(c.client.ipv4())]);
    assert_eq!(report.clients_seen(), own, "the pod sees the client's own address: {}", report.summary());
    assert_eq!(report.pods_seen(), names(&[&first[0]]), "{}", report.summary());

    // The pod moves to node2: a new one there first, then the old one goes.
    let second = run_pods(lab, &c.net, &client, ns.name(), "etp", &["node2"]).await;
    wait_endpoints(&client, ns.name(), "etp", &[&first[0], &second[0]], false).await;
    wait_route(&c.net, &route, &[&node1.ipv4().to_string(), &node2.ipv4().to_string()]).await;
    let moving = c
        .client
        .probe(
            to,
            ProbeConfig { max_requests: 3000, max_duration: Duration::from_secs(30), ..Default::default() },
        )
        .unwrap();
    first.remove(0).delete().await.unwrap();
    wait_endpoints(&client, ns.name(), "etp", &[&second[0]], false).await;
    wait_route(&c.net, &route, &[&node2.ipv4().to_string()]).await;
    let during = moving.stop().await.unwrap();
    let report = probe(&c.client, to, 200).await;
    assert_eq!(report.failed(), 0, "{}", report.summary());
    assert_eq!(report.clients_seen(), own, "{}", report.summary());
    assert_eq!(report.pods_seen(), names(&[&second[0]]), "{}", report.summary());
    eprintln!("ETP Local {ip}: during the move {}; after it {}", during.summary(), report.summary());
    for pod in second {
        pod.delete().await.unwrap();
    }
    ns.cleanup().await.unwrap();
}

#[tokio::test]
async fn two_services_sharing_an_address_on_two_ports_reach_their_own_pods() {
    let (lab, c) = cluster().await;
    let client = lab.admin_client().await.unwrap();
    let ns = TestNamespace::new(&client, "dp-share").await.unwrap();
    let web = run_pods(lab, &c.net, &client, ns.name(), "web", &["node1"]).await;
    let api_pods = run_pods(lab, &c.net, &client, ns.name(), "api", &["node2"]).await;
    create_group(
        &client,
        ns.name(),
        &group("dp-share", Some(("192.0.2.0/24", "192.0.2.244-192.0.2.245", "default")), None),
    )
    .await;
    let api: Api<Service> = Api::namespaced(client.clone(), ns.name());
    let share = [(annotations::ALLOW_SHARED_IP, "web-and-api")];
    create(&api, &echo_service("web", 80, "dp-share", "web", &share, "")).await;
    create(&api, &echo_service("api", 81, "dp-share", "api", &share, "")).await;
    let ip = ingress(&wait_ingress(&api, "web", 1).await)[0].clone();
    assert_eq!(ingress(&wait_ingress(&api, "api", 1).await), vec![ip.clone()], "one address for both");
    wait_endpoints(&client, ns.name(), "web", &[&web[0]], false).await;
    wait_endpoints(&client, ns.name(), "api", &[&api_pods[0]], false).await;
    elected(&c.net, &ip).await;
    for (port, pod) in [(80, &web[0]), (81, &api_pods[0])] {
        let to = at(&ip, port);
        wait_settled(&c.client, to).await;
        let report = probe(&c.client, to, 100).await;
        assert_eq!(report.failed(), 0, "{}", report.summary());
        assert_eq!(report.pods_seen(), names(&[pod]), "port {port}: {}", report.summary());
    }
    for pod in web.into_iter().chain(api_pods) {
        pod.delete().await.unwrap();
    }
    ns.cleanup().await.unwrap();
}

#[tokio::test]
async fn a_deleted_service_stops_answering_and_a_foreign_class_is_never_reachable() {
    let (lab, c) = cluster().await;
    let client = lab.admin_client().await.unwrap();
    let ns = TestNamespace::new(&client, "dp-gone").await.unwrap();
    let pods = run_pods(lab, &c.net, &client, ns.name(), "gone", &["node1"]).await;
    create_group(
        &client,
        ns.name(),
        &group("dp-gone", Some(("192.0.2.0/24", "192.0.2.246-192.0.2.247", "default")), None),
    )
    .await;
    let api: Api<Service> = Api::namespaced(client.clone(), ns.name());
    create(&api, &echo_service("gone", 80, "dp-gone", "gone", &[], "")).await;
    let ip = ingress(&wait_ingress(&api, "gone", 1).await)[0].clone();
    wait_endpoints(&client, ns.name(), "gone", &[&pods[0]], false).await;
    elected(&c.net, &ip).await;
    let to = at(&ip, 80);
    first_answer(&c.client, to).await;
    let deleted = Instant::now();
    api.delete("gone", &DeleteParams::default()).await.unwrap();
    wait_holders(&c.net, &ip, &[]).await;
    let withdrawn = deleted.elapsed();
    let report = wait_unanswered(&c.client, to).await;
    eprintln!("deleted {ip}: withdrawn after {withdrawn:?}, unanswered after {:?}", deleted.elapsed());
    assert!(report.pods_seen().is_empty(), "{}", report.summary());

    // A Service of another class asks for the pool's other address, and its own controller writes it to
    // the status: kube-proxy programs it on every node, but PureLB announces nothing for it, so no node
    // answers for it on the LAN.
    let foreign = "  loadBalancerClass: example.com/other\n";
    let other = if ip == "192.0.2.246" { "192.0.2.247" } else { "192.0.2.246" }.to_owned();
    create(
        &api,
        &echo_service("foreign", 80, "dp-gone", "gone", &[(annotations::ADDRESSES, &other)], foreign),
    )
    .await;
    let status = serde_json::json!({"status": {"loadBalancer": {"ingress": [{"ip": other}]}}});
    api.patch_status("foreign", &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
    wait_endpoints(&client, ns.name(), "foreign", &[&pods[0]], false).await;
    let node1 = c.net.node("node1").unwrap();
    wait_for(&format!("kube-proxy on node1 to program {other}"), Duration::from_secs(30), || async {
        let out = node1.command("nft").args(["list", "table", "ip", "kube-proxy"]).output().ok()?;
        String::from_utf8_lossy(&out.stdout).contains(&other).then_some(())
    })
    .await
    .unwrap();
    let quick = ProbeConfig { max_requests: 20, timeout: Duration::from_millis(300), ..Default::default() };
    let report = c.client.probe(at(&other, 80), quick).unwrap().finish().await.unwrap();
    assert_eq!(report.failed(), report.sent(), "a foreign class is never reachable: {}", report.summary());
    assert!(holders(&c.net, &other).await.is_empty(), "no node holds a foreign Service's address");
    let svc = api.get("foreign").await.unwrap();
    assert!(
        !svc.metadata.annotations.unwrap_or_default().contains_key(annotations::ALLOCATED_BY),
        "PureLB wrote nothing on a foreign Service"
    );
    for pod in pods {
        pod.delete().await.unwrap();
    }
    ns.cleanup().await.unwrap();
}

#[tokio::test]
async fn a_deleted_or_dropped_pod_leaves_nothing_behind() {
    let (lab, c) = cluster().await;
    let client = lab.admin_client().await.unwrap();
    let ns = TestNamespace::new(&client, "dp-gone").await.unwrap();
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), ns.name());
    let netns_exists = |name: &str| std::path::Path::new("/var/run/netns").join(name).exists();

    let deleted = c.net.run_pod(lab, &client, ns.name(), "deleted", "node1", &[]).await.unwrap();
    let dropped = c.net.run_pod(lab, &client, ns.name(), "dropped", "node2", &[]).await.unwrap();
    let running = pods.get("deleted").await.unwrap();
    let status = running.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert_eq!(status.pod_ip.as_deref(), Some(deleted.ipv4().to_string().as_str()));
    assert_eq!(status.pod_ips.map(|ips| ips.len()), Some(2));
    let (deleted_netns, dropped_netns) = (deleted.netns().to_owned(), dropped.netns().to_owned());
    let deleted_v4 = deleted.ipv4().to_string();
    assert!(netns_exists(&deleted_netns) && netns_exists(&dropped_netns));

    deleted.delete().await.unwrap();
    assert!(pods.get_opt("deleted").await.unwrap().is_none(), "the object is gone");
    assert!(!netns_exists(&deleted_netns), "the namespace is gone");
    let routes = std::process::Command::new("ip")
        .args(["-n", c.net.node("node1").unwrap().netns(), "route", "show", &deleted_v4])
        .output()
        .unwrap();
    assert!(routes.stdout.is_empty(), "node1 still routes to {deleted_v4}: {routes:?}");
    // Pod addresses are not routed outside the cluster: every probe from the client fails, and counts.
    let to = SocketAddr::new(deleted_v4.parse().unwrap(), 8080);
    let config = ProbeConfig { max_requests: 10, timeout: Duration::from_millis(300), ..Default::default() };
    let report = c.client.probe(to, config).unwrap().finish().await.unwrap();
    assert_eq!((report.sent(), report.failed()), (10, 10), "{}", report.summary());
    assert!(report.longest_outage() >= Duration::from_millis(90), "{}", report.summary());
    assert!(report.pods_seen().is_empty(), "{}", report.summary());

    // A test that fails drops its pods without deleting them: the kernel side goes at once, the object
    // soon after.
    drop(dropped);
    assert!(!netns_exists(&dropped_netns), "the namespace is gone");
    wait_for("the dropped pod's object to be gone", Duration::from_secs(10), || async {
        pods.get_opt("dropped").await.ok().filter(Option::is_none).map(drop)
    })
    .await
    .unwrap();
    ns.cleanup().await.unwrap();
}
