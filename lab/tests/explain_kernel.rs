//! `kubectl purelb explain` held against the kernel: for every announcement scenario of the agent
//! tests, what `explain -o json` says each node does with an address (its `perNode` placements) equals
//! what the kernels of the lab's nodes hold, interface and prefix length included.
//!
//! One 3-node network with the allocator and an agent per node; the seed's examples applied verbatim
//! (echoserver: routed on every node; servicetest: local on the elected node; specificaddress: a
//! requested routed /32; endpoints: ETP Local on the node with an endpoint), then a shared address, an
//! excluded node and the abrupt loss of a local address's holder. Each step waits (bounded) until the
//! kernels settle on what explain says, then also checks the shape a user expects (one node for a local
//! address, every eligible node for a routed one), so explain and the agents cannot agree on a wrong
//! answer unnoticed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod plugin_helpers;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, PostParams};
use plugin_helpers::*;
use purelb_core::announce::EXCLUDE_LABEL;
use purelb_core::api::annotations;
use purelb_lab::{ControlPlane, Network, shared, wait_for};

/// (node, interface, prefix length).
type Placements = BTreeSet<(String, String, u8)>;

/// Where explain says `ip` of Service `ns/name` is: every node whose placement is not `absent`.
fn explained(lab: &ControlPlane, ns: &str, name: &str, ip: &str) -> Placements {
    let e = explain_json(lab, &["explain", &format!("service/{name}"), "-n", ns]);
    let mut out = Placements::new();
    for a in e["addresses"].as_array().into_iter().flatten().filter(|a| a["address"] == ip) {
        for p in a["perNode"].as_array().into_iter().flatten().filter(|p| p["placement"] != "absent") {
            out.insert((
                p["node"].as_str().unwrap_or_default().to_string(),
                p["interface"].as_str().unwrap_or_default().to_string(),
                p["prefixLen"].as_u64().and_then(|l| u8::try_from(l).ok()).unwrap_or_default(),
            ));
        }
    }
    out
}

/// What the kernels of `nodes` hold for `ip`.
async fn kernel(net: &Network, ip: &str, nodes: &[&str]) -> Placements {
    holders(net, ip).await.into_iter().filter(|(n, _, _)| nodes.contains(&n.as_str())).collect()
}

/// Waits (30 s at most) until explain and the kernels of `nodes` agree on `ip`, and returns the answer.
async fn agree(lab: &ControlPlane, net: &Network, svc: (&str, &str), ip: &str, nodes: &[&str]) -> Placements {
    let (ns, name) = svc;
    wait_for(
        &format!("explain and the kernels agree on {ip} ({ns}/{name})"),
        Duration::from_secs(30),
        || async {
            let said = explained(lab, ns, name, ip);
            let held = kernel(net, ip, nodes).await;
            if said == held {
                Ok(said)
            } else {
                Err(format!("explain says {said:?}, the kernels hold {held:?}"))
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// On every node's kube-lb0 with prefix length `len`.
fn routed(len: u8) -> Placements {
    ALL.iter().map(|n| (n.to_string(), "kube-lb0".to_string(), len)).collect()
}

fn set(items: &[(&str, &str, u8)]) -> Placements {
    items.iter().map(|(n, i, p)| (n.to_string(), i.to_string(), *p)).collect()
}

fn apply(lab: &ControlPlane, ns: Option<&str>, file: &str) {
    let path = example(file);
    let mut args = vec!["apply"];
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    args.extend(["-f", path.to_str().unwrap()]);
    kubectl(lab, &args);
}

const ALL: [&str; 3] = ["node1", "node2", "node3"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_says_what_every_nodes_kernel_holds() {
    let lab = shared().await;
    let mut c = start_cluster(lab, "explain-kernel", &ALL).await;
    let net = &c.net;
    let client = lab.admin_client().await.unwrap();
    for ns in ["test", "servicetest"] {
        kubectl(lab, &["create", "namespace", ns]);
    }
    apply(lab, None, "servicegroup-default.yaml");
    apply(lab, None, "servicegroup-localaddr.yaml");

    // The seed's echoserver: default group, 172.30.250.0/24 is no node's LAN → kube-lb0 everywhere.
    apply(lab, Some("test"), "echoserver-service.yaml");
    let echo =
        ingress(&wait_ingress(&Api::namespaced(client.clone(), "test"), "echoserver-service", 1).await)[0]
            .clone();
    assert_eq!(agree(lab, net, ("test", "echoserver-service"), &echo, &ALL).await, routed(24));

    // servicetest: local, on the elected node's eth0 only.
    apply(lab, None, "servicetest.yaml");
    let st_api: Api<Service> = Api::namespaced(client.clone(), "servicetest");
    let st = ingress(&wait_ingress(&st_api, "servicetest", 1).await)[0].clone();
    let local = agree(lab, net, ("servicetest", "servicetest"), &st, &ALL).await;
    assert_eq!(local.len(), 1, "a local address on exactly one node: {local:?}");
    assert!(local.iter().all(|(_, i, p)| i == "eth0" && *p == 24), "{local:?}");

    // specificaddress and endpoints (with virtualsub): a requested /32 on every node; ETP Local only where
    // the endpoint is.
    apply(lab, None, "specificaddress.yaml");
    apply(lab, None, "endpoints.yaml");
    let sa = ingress(&wait_ingress(&st_api, "specificaddress", 1).await)[0].clone();
    assert_eq!(agree(lab, net, ("servicetest", "specificaddress"), &sa, &ALL).await, routed(32));
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "servicetest");
    slices.create(&PostParams::default(), &endpoint_slice("endpoints", &["node2"])).await.unwrap();
    let ep = ingress(&wait_ingress(&st_api, "endpoints", 1).await)[0].clone();
    assert_eq!(
        agree(lab, net, ("servicetest", "endpoints"), &ep, &ALL).await,
        set(&[("node2", "kube-lb0", 32)])
    );

    // A shared address: both sharers' explanations say what the kernels hold, also after one leaves.
    let g = (annotations::SERVICE_GROUP, "default");
    let key = (annotations::ALLOW_SHARED_IP, "k");
    let api: Api<Service> = Api::namespaced(client.clone(), "test");
    create(&api, &lb_service("share-a", 80, &[g, key], "")).await;
    create(&api, &lb_service("share-b", 443, &[g, key], "")).await;
    let shared_ip = ingress(&wait_ingress(&api, "share-a", 1).await)[0].clone();
    assert_eq!(ingress(&wait_ingress(&api, "share-b", 1).await), std::slice::from_ref(&shared_ip));
    for name in ["share-a", "share-b"] {
        assert_eq!(agree(lab, net, ("test", name), &shared_ip, &ALL).await, routed(24));
    }
    kubectl(lab, &["delete", "service", "-n", "test", "share-a"]);
    assert_eq!(agree(lab, net, ("test", "share-b"), &shared_ip, &ALL).await, routed(24));

    // An excluded node: off every routed address, out of every election.
    let exclude = format!("{EXCLUDE_LABEL}=true");
    kubectl(lab, &["label", "node", "node3", &exclude]);
    let two: Placements = routed(24).into_iter().filter(|(n, _, _)| n != "node3").collect();
    assert_eq!(agree(lab, net, ("test", "echoserver-service"), &echo, &ALL).await, two);
    let local = agree(lab, net, ("servicetest", "servicetest"), &st, &ALL).await;
    assert!(local.len() == 1 && local.iter().all(|(n, _, _)| n != "node3"), "{local:?}");
    kubectl(lab, &["label", "node", "node3", &format!("{EXCLUDE_LABEL}-")]);
    assert_eq!(agree(lab, net, ("test", "echoserver-service"), &echo, &ALL).await, routed(24));

    // Failover: the local address's holder is lost abruptly (link cut, agent SIGKILL). Once its Lease
    // expires, explain names another node, and that node's kernel holds it. The lost node's kernel still
    // has it (nothing could remove it), so the live nodes are compared.
    let local = agree(lab, net, ("servicetest", "servicetest"), &st, &ALL).await;
    let lost = local.iter().next().map(|(n, _, _)| n.clone()).unwrap();
    let i = c.agents.iter().position(|a| a.node == lost).unwrap();
    net.node(&lost).unwrap().set_link(false).await.unwrap();
    c.agents[i].child.kill().unwrap();
    let live: Vec<&str> = ALL.iter().copied().filter(|n| *n != lost).collect();
    let moved = agree(lab, net, ("servicetest", "servicetest"), &st, &live).await;
    assert!(moved.len() == 1 && moved.iter().all(|(n, i, _)| *n != lost && i == "eth0"), "{moved:?}");
    // The lost node's routed addresses are explained away too (not live: absent).
    assert_eq!(
        agree(lab, net, ("test", "echoserver-service"), &echo, &live).await,
        routed(24).into_iter().filter(|(n, _, _)| *n != lost).collect::<Placements>()
    );

    // It comes back: its agent removes what it may no longer hold, and all three kernels agree again.
    net.node(&lost).unwrap().set_link(true).await.unwrap();
    c.agents[i] = start_agent(lab, net, &lost, &["--log-format=text"]).await;
    wait_agent_ready(&c.agents[i]).await;
    let back = agree(lab, net, ("servicetest", "servicetest"), &st, &ALL).await;
    assert_eq!(back.len(), 1, "{back:?}");
    assert_eq!(agree(lab, net, ("test", "echoserver-service"), &echo, &ALL).await, routed(24));
}
