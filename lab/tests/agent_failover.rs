//! End-to-end failover tests of purelb-agent on real network namespaces: graceful handover (SIGTERM),
//! abrupt loss (link cut + SIGKILL), gratuitous ARP on takeover captured on the LAN bridge, orphans of a
//! killed agent, and the node's own addresses surviving everything. The tests stop and start agents, so
//! they run one at a time, each starting its own agents on one shared network.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams};
use purelb_core::api::{annotations, conditions};
use purelb_lab::{ControlPlane, Network, NetworkConfig, TestNamespace, shared};
use tokio::sync::{Mutex, OnceCell};

static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());
static BASE: OnceCell<(Network, Allocator)> = OnceCell::const_new();

async fn base() -> (&'static ControlPlane, &'static Network) {
    let lab = shared().await;
    let (net, _) = BASE
        .get_or_init(|| async {
            let allocator = start_allocator(lab, "allocator-failover", &[], true).await;
            let net = Network::create(lab, NetworkConfig { nodes: 3, ..Default::default() })
                .await
                .expect("network");
            (net, allocator)
        })
        .await;
    (lab, net)
}

async fn agents(lab: &ControlPlane, net: &Network) -> Vec<Agent> {
    start_agents(lab, net, &["node1", "node2", "node3"]).await
}

async fn stop_all(agents: Vec<Agent>) {
    for a in agents {
        a.child.terminate().await.ok();
    }
}

async fn single_holder(net: &Network, ip: &str) -> String {
    let h = holders(net, ip).await;
    assert_eq!(h.len(), 1, "{ip}: {h:?}");
    h[0].0.clone()
}

async fn local_service(
    lab: &ControlPlane,
    prefix: &str,
    pool: &str,
) -> (TestNamespace, Api<Service>, String) {
    let client = lab.admin_client().await.unwrap();
    let ns = TestNamespace::new(&client, prefix).await.unwrap();
    create_group(&client, ns.name(), &group(prefix, Some(("192.0.2.0/24", pool, "default")), None)).await;
    let api: Api<Service> = Api::namespaced(client.clone(), ns.name());
    create(&api, &lb_service("svc", 80, &[(annotations::SERVICE_GROUP, prefix)], "")).await;
    let ip = ingress(&wait_ingress(&api, "svc", 1).await)[0].clone();
    (ns, api, ip)
}

#[tokio::test]
async fn sigterm_hands_a_local_address_over_with_gratuitous_arp() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (lab, net) = base().await;
    let mut agents = agents(lab, net).await;
    let (ns, _api, ip) = local_service(lab, "fo-term", "192.0.2.210-192.0.2.211").await;
    wait_for_one(net, &ip).await;
    let old = single_holder(net, &ip).await;

    let capture = Capture::start(net);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let i = agents.iter().position(|a| a.node == old).unwrap();
    let t0 = Instant::now();
    agents[i].child.terminate().await.unwrap();
    let new = wait_new_holder(net, &ip, &old).await;
    let took = t0.elapsed();
    eprintln!("graceful handover {old} -> {new}: {took:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let now = holders(net, &ip).await;
    assert_eq!(now.len(), 1, "never two holders in steady state: {now:?} (old {old}, new {new})");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let frames = capture.text();
    let mac = mac_of(net, &new);
    let garp = format!("Request who-has {ip} tell {ip}");
    assert!(
        frames.lines().any(|l| l.contains(&format!(" {mac} > ")) && l.contains(&garp)),
        "no gratuitous ARP for {ip} from {new} ({mac}) on the bridge:\n{frames}"
    );
    agents.remove(i);
    stop_all(agents).await;
    ns.cleanup().await.unwrap();
}

#[tokio::test]
async fn an_abruptly_lost_node_loses_its_local_address_within_the_bound() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (lab, net) = base().await;
    let mut agents = agents(lab, net).await;
    let (ns, _api, ip) = local_service(lab, "fo-kill", "192.0.2.212-192.0.2.213").await;
    wait_for_one(net, &ip).await;
    let old = single_holder(net, &ip).await;
    let i = agents.iter().position(|a| a.node == old).unwrap();
    let t0 = Instant::now();
    net.node(&old).unwrap().set_link(false).await.unwrap();
    agents[i].child.kill().unwrap();
    let new = wait_new_holder(net, &ip, &old).await;
    let took = t0.elapsed();
    eprintln!("abrupt loss of {old} -> {new} holds {ip} after {took:?}");
    assert!(took < Duration::from_secs(8), "takeover took {took:?} (agent default bound: 5 s)");

    // The node comes back: its agent restarts, and in steady state exactly one node holds the address.
    net.node(&old).unwrap().set_link(true).await.unwrap();
    agents[i] = start_agent(lab, net, &old, &["--log-format=text"]).await;
    wait_agent_ready(&agents[i]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    wait_for_one(net, &ip).await;
    stop_all(agents).await;
    ns.cleanup().await.unwrap();
}

#[tokio::test]
async fn a_restarted_agent_removes_its_orphans_and_never_the_nodes_own_addresses() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (lab, net) = base().await;
    let node1 = net.node("node1").unwrap();
    // Addresses that are the node's own, not PureLB's: one on kube-lb0, one extra on eth0.
    for (dev, addr) in [("kube-lb0", "198.51.100.250/32"), ("eth0", "192.0.2.99/24")] {
        let st = node1.command("ip").args(["addr", "replace", addr, "dev", dev]).status().unwrap();
        assert!(st.success());
    }
    let own = ["192.0.2.11", "2001:db8:0:1::11", "198.51.100.250", "192.0.2.99"];
    let mut agents = agents(lab, net).await;
    let client = lab.admin_client().await.unwrap();
    let ns = TestNamespace::new(&client, "fo-orphan").await.unwrap();
    create_group(
        &client,
        ns.name(),
        &group("fo-orphan", Some(("198.51.100.0/24", "198.51.100.64/29", "/32")), None),
    )
    .await;
    let api: Api<Service> = Api::namespaced(client.clone(), ns.name());
    create(&api, &lb_service("svc", 80, &[(annotations::SERVICE_GROUP, "fo-orphan")], "")).await;
    let ip = ingress(&wait_ingress(&api, "svc", 1).await)[0].clone();
    let all = [("node1", "kube-lb0", 32), ("node2", "kube-lb0", 32), ("node3", "kube-lb0", 32)];
    wait_holders(net, &ip, &all).await;

    // Crash node1's agent, delete the Service: node1 keeps an orphan until its next agent starts.
    agents[0].child.kill().unwrap();
    api.delete("svc", &DeleteParams::default()).await.unwrap();
    wait_holders(net, &ip, &[("node1", "kube-lb0", 32)]).await;
    agents[0] = start_agent(lab, net, "node1", &["--log-format=text"]).await;
    wait_agent_ready(&agents[0]).await;
    wait_holders(net, &ip, &[]).await;
    for a in own {
        assert_eq!(holders(net, a).await.len(), 1, "the node's own {a} must survive a crash and a restart");
    }
    // A graceful stop (uninstall) withdraws PureLB's addresses only.
    stop_all(agents).await;
    for a in own {
        assert_eq!(holders(net, a).await.len(), 1, "the node's own {a} must survive the agent's stop");
    }
    for (dev, addr) in [("kube-lb0", "198.51.100.250/32"), ("eth0", "192.0.2.99/24")] {
        node1.command("ip").args(["addr", "del", addr, "dev", dev]).status().unwrap();
    }
    ns.cleanup().await.unwrap();
}

/// A rolling restart of every agent rewrites no routed `externalTrafficPolicy: Cluster` Service: their
/// report says "every live node", which stays true while one node at a time goes and comes back, so the
/// Services' resourceVersions do not move (naming the nodes would cost each Service two writes per node
/// restart, all landing on the API server exactly while the restarted agent lists).
#[tokio::test]
async fn a_rolling_restart_of_the_agents_rewrites_no_routed_service() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (lab, net) = base().await;
    let mut agents = agents(lab, net).await;
    let client = lab.admin_client().await.unwrap();
    let ns = TestNamespace::new(&client, "fo-roll").await.unwrap();
    create_group(
        &client,
        ns.name(),
        &group("fo-roll", Some(("198.51.100.0/24", "198.51.100.80/29", "/32")), None),
    )
    .await;
    let api: Api<Service> = Api::namespaced(client.clone(), ns.name());
    let names: Vec<String> = (0..4).map(|i| format!("svc-{i}")).collect();
    for name in &names {
        create(&api, &lb_service(name, 80, &[(annotations::SERVICE_GROUP, "fo-roll")], "")).await;
    }
    let all = [("node1", "kube-lb0", 32), ("node2", "kube-lb0", 32), ("node3", "kube-lb0", 32)];
    let mut ips = Vec::new();
    for name in &names {
        let ip = ingress(&wait_ingress(&api, name, 1).await)[0].clone();
        wait_holders(net, &ip, &all).await;
        ips.push(ip);
    }
    // Steady state: every Service reports where its address is.
    let announced = |svc: &Service| {
        svc.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == conditions::ANNOUNCED).cloned()
    };
    let mut versions = Vec::new();
    for (name, ip) in names.iter().zip(&ips) {
        let want = format!("{ip}/32 on kube-lb0 of every live node");
        let svc = purelb_lab::wait_for(&format!("{name} reported"), Duration::from_secs(30), || {
            let (api, name, want) = (api.clone(), name.clone(), want.clone());
            async move {
                let svc = api.get(&name).await.ok()?;
                (announced(&svc).map(|c| (c.status, c.message)) == Some(("True".into(), want))).then_some(svc)
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        versions.push(svc.metadata.resource_version.clone().unwrap());
    }

    for agent in &mut agents {
        let node = agent.node.clone();
        agent.child.terminate().await.unwrap();
        let rest: Vec<(&str, &str, u8)> = all.iter().copied().filter(|(n, _, _)| *n != node).collect();
        wait_holders(net, &ips[0], &rest).await;
        *agent = start_agent(lab, net, &node, &["--log-format=text"]).await;
        wait_agent_ready(agent).await;
        for ip in &ips {
            wait_holders(net, ip, &all).await;
        }
    }
    // Whatever the agents were going to write has landed by now (their writes follow a reconcile).
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (name, before) in names.iter().zip(&versions) {
        let svc = api.get(name).await.unwrap();
        assert_eq!(
            svc.metadata.resource_version.as_ref(),
            Some(before),
            "{name} was rewritten during the rolling restart: {:?}",
            announced(&svc)
        );
    }
    stop_all(agents).await;
    ns.cleanup().await.unwrap();
}

async fn wait_for_one(net: &Network, ip: &str) {
    let ip = ip.to_string();
    purelb_lab::wait_for(&format!("{ip} on exactly one node"), Duration::from_secs(30), || {
        let ip = ip.clone();
        async move {
            let h = holders(net, &ip).await;
            if h.len() == 1 { Ok(()) } else { Err(format!("{h:?}")) }
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// Waits until a node other than `old` holds `ip` on eth0; returns it.
async fn wait_new_holder(net: &Network, ip: &str, old: &str) -> String {
    let (ip, old) = (ip.to_string(), old.to_string());
    purelb_lab::wait_for(&format!("{ip} taken over from {old}"), Duration::from_secs(30), || {
        let (ip, old) = (ip.clone(), old.clone());
        async move {
            holders(net, &ip).await.into_iter().find(|(n, i, _)| *n != old && i == "eth0").map(|(n, _, _)| n)
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}
