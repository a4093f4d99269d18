//! End-to-end tests of purelb-agent on real network namespaces and a real BGP router: the seed's local
//! and non-local examples at the kernel level, ETP Local following EndpointSlices, withdrawal, sharing.
//! One lab, one 3-node network, one allocator and one agent per node serve the whole file; each test
//! uses its own namespace, groups and address ranges. Failover lives in agent_failover.rs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use purelb_core::announce::{NodeFacts, elect};
use purelb_core::api::annotations;
use purelb_core::pool::Subnet;
use purelb_lab::{ControlPlane, TestNamespace, shared, wait_for};
use tokio::sync::OnceCell;

static CLUSTER: OnceCell<Cluster> = OnceCell::const_new();

async fn cluster() -> (&'static ControlPlane, &'static Cluster) {
    let lab = shared().await;
    let c = CLUSTER
        .get_or_init(|| start_cluster(lab, "allocator-agent-tests", &["node1", "node2", "node3"]))
        .await;
    (lab, c)
}

fn lab_nodes() -> Vec<NodeFacts> {
    ["node1", "node2", "node3"]
        .iter()
        .map(|n| NodeFacts {
            name: n.to_string(),
            subnets: vec![
                Subnet::parse("192.0.2.0/24").unwrap(),
                Subnet::parse("2001:db8:0:1::/64").unwrap(),
            ],
            interface: "eth0".into(),
            live: true,
            excluded: false,
            shutting_down: false,
        })
        .collect()
}

#[tokio::test]
async fn a_local_address_is_on_exactly_the_elected_nodes_lan_interface() {
    let (lab, c) = cluster().await;
    let client = lab.admin_client().await.unwrap();
    let ns = TestNamespace::new(&client, "ag-local").await.unwrap();
    create_group(
        &client,
        ns.name(),
        &group("a-local", Some(("192.0.2.0/24", "192.0.2.200-192.0.2.203", "default")), None),
    )
    .await;
    let api: Api<Service> = Api::namespaced(client.clone(), ns.name());
    create(&api, &lb_service("servicetest", 80, &[(annotations::SERVICE_GROUP, "a-local")], "")).await;
    let ip = ingress(&wait_ingress(&api, "servicetest", 1).await)[0].clone();
    let winner = elect(ip.parse().unwrap(), &lab_nodes()).winner.unwrap();
    wait_holders(&c.net, &ip, &[(&winner, "eth0", 24)]).await;

    let svc = wait_for("announcing-IPv4 annotation", Duration::from_secs(20), || async {
        api.get("servicetest").await.ok().filter(|s| {
            s.metadata.annotations.as_ref().and_then(|a| a.get(annotations::ANNOUNCING_IPV4)).is_some()
        })
    })
    .await
    .unwrap();
    assert_eq!(
        svc.metadata.annotations.as_ref().unwrap()[annotations::ANNOUNCING_IPV4],
        format!("{winner}, eth0")
    );
    let msg = format!("Node {winner} announcing {ip} on interface eth0");
    let evs = wait_event(&client, ns.name(), "servicetest", "AnnouncingLocal", &msg).await;
    assert!(evs.iter().any(|(_, r, _, c)| r == "AnnouncingLocal" && c == "purelb-lbnodeagent"), "{evs:?}");
    // The node's own LAN addresses are untouched.
    for n in c.net.nodes() {
        let own = n.ipv4().to_string();
        assert_eq!(holders(&c.net, &own).await, vec![(n.name().to_string(), "eth0".to_string(), 24)]);
    }
    // Delete: gone from every node.
    api.delete("servicetest", &DeleteParams::default()).await.unwrap();
    wait_holders(&c.net, &ip, &[]).await;
    ns.cleanup().await.unwrap();
}

#[tokio::test]
async fn non_local_addresses_are_on_kube_lb0_of_every_node_with_the_groups_mask_and_routed() {
    let (lab, c) = cluster().await;
    let client = lab.admin_client().await.unwrap();
    let ns = TestNamespace::new(&client, "ag-nonlocal").await.unwrap();
    create_group(&client, ns.name(), &group("a-virt", Some(("172.31.1.0/24", "172.31.1.0/24", "/32")), None))
        .await;
    create_group(
        &client,
        ns.name(),
        &group("a-agg", Some(("203.0.113.0/24", "203.0.113.0/28", "default")), None),
    )
    .await;
    let api: Api<Service> = Api::namespaced(client.clone(), ns.name());
    create(
        &api,
        &lb_service(
            "specificaddress",
            80,
            &[(annotations::SERVICE_GROUP, "a-virt")],
            "  loadBalancerIP: 172.31.1.225\n",
        ),
    )
    .await;
    create(&api, &lb_service("aggregated", 80, &[(annotations::SERVICE_GROUP, "a-agg")], "")).await;
    wait_ingress(&api, "specificaddress", 1).await;
    let agg_ip = ingress(&wait_ingress(&api, "aggregated", 1).await)[0].clone();
    let all = |len| vec![("node1", "kube-lb0", len), ("node2", "kube-lb0", len), ("node3", "kube-lb0", len)];
    wait_holders(&c.net, "172.31.1.225", &all(32)).await;
    wait_holders(&c.net, &agg_ip, &all(24)).await;
    wait_route(&c.net, "172.31.1.225/32", &["192.0.2.11", "192.0.2.12", "192.0.2.13"]).await;
    wait_route(&c.net, "203.0.113.0/24", &["192.0.2.11", "192.0.2.12", "192.0.2.13"]).await;
    for n in ["node1", "node2", "node3"] {
        let msg = format!("Announcing 172.31.1.225 from node {n} interface kube-lb0");
        wait_event(&client, ns.name(), "specificaddress", "AnnouncingNonLocal", &msg).await;
    }
    api.delete("specificaddress", &DeleteParams::default()).await.unwrap();
    wait_holders(&c.net, "172.31.1.225", &[]).await;
    wait_route(&c.net, "172.31.1.225/32", &[]).await;
    api.delete("aggregated", &DeleteParams::default()).await.unwrap();
    wait_holders(&c.net, &agg_ip, &[]).await;
    ns.cleanup().await.unwrap();
}

#[tokio::test]
async fn etp_local_announces_only_where_endpoints_are_and_follows_them() {
    let (lab, c) = cluster().await;
    let client = lab.admin_client().await.unwrap();
    let ns = TestNamespace::new(&client, "ag-etp").await.unwrap();
    create_group(
        &client,
        ns.name(),
        &group("a-etp", Some(("198.51.100.0/24", "198.51.100.32/29", "/32")), None),
    )
    .await;
    let api: Api<Service> = Api::namespaced(client.clone(), ns.name());
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), ns.name());
    slices.create(&PostParams::default(), &endpoint_slice("endpoints", &["node2"])).await.unwrap();
    create(
        &api,
        &lb_service(
            "endpoints",
            80,
            &[(annotations::SERVICE_GROUP, "a-etp")],
            "  externalTrafficPolicy: Local\n",
        ),
    )
    .await;
    let ip = ingress(&wait_ingress(&api, "endpoints", 1).await)[0].clone();
    let dst = format!("{ip}/32");
    wait_holders(&c.net, &ip, &[("node2", "kube-lb0", 32)]).await;
    wait_route(&c.net, &dst, &["192.0.2.12"]).await;

    let set = |nodes: &'static [&'static str]| {
        let slices = slices.clone();
        async move {
            let body = endpoint_slice("endpoints", nodes);
            let pp = PatchParams::apply("lab-test").force();
            slices.patch("endpoints-lab", &pp, &Patch::Apply(&body)).await.unwrap();
        }
    };
    set(&["node2", "node3"]).await;
    wait_holders(&c.net, &ip, &[("node2", "kube-lb0", 32), ("node3", "kube-lb0", 32)]).await;
    wait_route(&c.net, &dst, &["192.0.2.12", "192.0.2.13"]).await;
    set(&["node3"]).await;
    wait_holders(&c.net, &ip, &[("node3", "kube-lb0", 32)]).await;
    wait_route(&c.net, &dst, &["192.0.2.13"]).await;
    set(&[]).await;
    wait_holders(&c.net, &ip, &[]).await;
    wait_route(&c.net, &dst, &[]).await;
    ns.cleanup().await.unwrap();
}

#[tokio::test]
async fn a_shared_address_stays_until_the_last_sharer_leaves() {
    let (lab, c) = cluster().await;
    let client = lab.admin_client().await.unwrap();
    let ns = TestNamespace::new(&client, "ag-share").await.unwrap();
    create_group(
        &client,
        ns.name(),
        &group("a-share", Some(("198.51.100.0/24", "198.51.100.48/29", "/32")), None),
    )
    .await;
    let api: Api<Service> = Api::namespaced(client.clone(), ns.name());
    let g = (annotations::SERVICE_GROUP, "a-share");
    create(&api, &lb_service("a", 80, &[g, (annotations::ALLOW_SHARED_IP, "k")], "")).await;
    create(&api, &lb_service("b", 443, &[g, (annotations::ALLOW_SHARED_IP, "k")], "")).await;
    let ip = ingress(&wait_ingress(&api, "a", 1).await)[0].clone();
    assert_eq!(ingress(&wait_ingress(&api, "b", 1).await), vec![ip.clone()]);
    let all = [("node1", "kube-lb0", 32), ("node2", "kube-lb0", 32), ("node3", "kube-lb0", 32)];
    wait_holders(&c.net, &ip, &all).await;
    api.delete("a", &DeleteParams::default()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    wait_holders(&c.net, &ip, &all).await;
    api.delete("b", &DeleteParams::default()).await.unwrap();
    wait_holders(&c.net, &ip, &[]).await;
    ns.cleanup().await.unwrap();
}

#[tokio::test]
async fn etp_local_on_a_local_address_is_reset_to_cluster() {
    let (lab, c) = cluster().await;
    let client = lab.admin_client().await.unwrap();
    let ns = TestNamespace::new(&client, "ag-reset").await.unwrap();
    create_group(
        &client,
        ns.name(),
        &group("a-reset", Some(("192.0.2.0/24", "192.0.2.204-192.0.2.205", "default")), None),
    )
    .await;
    let api: Api<Service> = Api::namespaced(client.clone(), ns.name());
    create(
        &api,
        &lb_service(
            "local-etp",
            80,
            &[(annotations::SERVICE_GROUP, "a-reset")],
            "  externalTrafficPolicy: Local\n",
        ),
    )
    .await;
    let ip = ingress(&wait_ingress(&api, "local-etp", 1).await)[0].clone();
    let winner = elect(ip.parse().unwrap(), &lab_nodes()).winner.unwrap();
    wait_holders(&c.net, &ip, &[(&winner, "eth0", 24)]).await;
    wait_for("externalTrafficPolicy reset to Cluster", Duration::from_secs(20), || async {
        api.get("local-etp")
            .await
            .ok()
            .filter(|s| s.spec.as_ref().and_then(|s| s.external_traffic_policy.as_deref()) == Some("Cluster"))
    })
    .await
    .unwrap();
    ns.cleanup().await.unwrap();
}
