//! Unit tests of the watched objects turned into announce's inputs (is_ours, endpoint nodes, incumbents).
#![allow(clippy::unwrap_used)]

use super::*;
use crate::api::{PoolSpec, ServiceGroupLocal, ServiceGroupSpec};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, ServiceSpec, ServiceStatus};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn svc(name: &str, ips: &[&str], marked: bool, etp: &str) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            annotations: marked
                .then(|| [(annotations::ALLOCATED_BY.to_string(), ALLOCATED_BY_VALUE.to_string())].into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            external_traffic_policy: Some(etp.into()),
            ..Default::default()
        }),
        status: Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(
                    ips.iter()
                        .map(|ip| LoadBalancerIngress { ip: Some(ip.to_string()), ..Default::default() })
                        .collect(),
                ),
            }),
            ..Default::default()
        }),
    }
}

fn slice(svc: &str, eps: &[(Option<&str>, Option<bool>)]) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(format!("{svc}-abc")),
            namespace: Some("ns".into()),
            labels: Some([(SERVICE_NAME_LABEL.to_string(), svc.to_string())].into()),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: Some(
            eps.iter()
                .map(|(node, ready)| Endpoint {
                    addresses: vec!["10.1.0.1".into()],
                    node_name: node.map(str::to_string),
                    conditions: Some(EndpointConditions { ready: *ready, ..Default::default() }),
                    ..Default::default()
                })
                .collect(),
        ),
        ports: None,
    }
}

#[test]
fn ours_needs_the_mark_an_address_and_type_load_balancer() {
    assert!(is_ours(&svc("a", &["192.0.2.200"], true, "Cluster")));
    assert!(!is_ours(&svc("a", &["192.0.2.200"], false, "Cluster")));
    assert!(!is_ours(&svc("a", &[], true, "Cluster")));
    let mut not_lb = svc("a", &["192.0.2.200"], true, "Cluster");
    if let Some(s) = not_lb.spec.as_mut() {
        s.type_ = Some("ClusterIP".into());
    }
    assert!(!is_ours(&not_lb));
}

#[test]
fn a_trimmed_slice_names_the_same_nodes() {
    let mut whole = slice(
        "web",
        &[(Some("n1"), Some(true)), (Some("n2"), Some(false)), (Some("n3"), None), (None, Some(true))],
    );
    whole.metadata.labels.as_mut().unwrap().insert("other".into(), "x".into());
    whole.ports = Some(vec![Default::default()]);
    let mut trimmed = whole.clone();
    trim_slice(&mut trimmed);
    assert_eq!(endpoint_nodes([&trimmed]), endpoint_nodes([&whole]));
    assert_eq!(endpoint_nodes([&trimmed]).values().next().unwrap().len(), 2);
    assert_eq!(trimmed.labels().len(), 1);
    assert!(trimmed.ports.is_none());
    assert!(trimmed.endpoints.iter().flatten().all(|e| e.addresses.is_empty()));
}

#[test]
fn ready_endpoints_name_their_nodes() {
    let slices = [
        slice("a", &[(Some("node1"), Some(true)), (Some("node2"), Some(false)), (None, Some(true))]),
        slice("a", &[(Some("node3"), None)]),
        slice("b", &[(Some("node2"), Some(false))]),
    ];
    let eps = endpoint_nodes(&slices);
    assert_eq!(eps[&ServiceKey::new("ns", "a")], BTreeSet::from(["node1".into(), "node3".into()]));
    assert!(eps[&ServiceKey::new("ns", "b")].is_empty());
    let f = service_facts(
        &svc("a", &["198.51.100.5", "2001:db8:100::5"], true, "Local"),
        &eps,
        &Incumbents::new(),
    );
    assert!(f.local_traffic_policy);
    assert_eq!(f.addresses.len(), 2);
    assert_eq!(f.endpoint_nodes.len(), 2);
}

#[test]
fn pools_of_every_valid_group_in_stable_order() {
    let group = |ns: &str, name: &str, pool: &str, agg: &str| {
        let mut g = ServiceGroup::new(
            name,
            ServiceGroupSpec {
                local: Some(ServiceGroupLocal {
                    v4pools: vec![PoolSpec {
                        subnet: "198.51.100.0/24".into(),
                        pool: pool.into(),
                        aggregation: agg.into(),
                    }],
                    ..Default::default()
                }),
            },
        );
        g.metadata.namespace = Some(ns.into());
        g
    };
    let groups = [
        group("b", "x", "198.51.100.0/25", "/32"),
        group("a", "y", "198.51.100.128/25", "default"),
        group("a", "bad", "203.0.113.0/24", "default"), // not inside its subnet
    ];
    let p = pools(&groups);
    assert_eq!(p.len(), 2);
    assert_eq!(p[0].range.to_string(), "198.51.100.128/25");
}

#[test]
fn incumbents_come_from_the_announcing_annotations_of_every_service() {
    let mut a = svc("a", &["192.0.2.50", "2001:db8:0:1::50"], true, "Cluster");
    let mut b = svc("b", &["192.0.2.50"], true, "Cluster");
    let c = svc("c", &["192.0.2.60"], false, "Cluster");
    for (s, v4, v6) in [(&mut a, "node2, eth0", Some("node3, eth0")), (&mut b, "node1, eth0", None)] {
        let ann = s.metadata.annotations.get_or_insert_default();
        ann.insert(annotations::ANNOUNCING_IPV4.into(), v4.into());
        if let Some(v6) = v6 {
            ann.insert(annotations::ANNOUNCING_IPV6.into(), v6.into());
        }
    }
    let inc = incumbents([&a, &b, &c]);
    let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
    assert_eq!(inc[&ip("192.0.2.50")], ["node1".to_string(), "node2".into()].into());
    assert_eq!(inc[&ip("2001:db8:0:1::50")], ["node3".to_string()].into());
    assert!(!inc.contains_key(&ip("192.0.2.60")), "not ours: no incumbent");
    let f = service_facts(&b, &BTreeMap::new(), &inc);
    assert_eq!(f.incumbents.len(), 1);
}

fn node_with_ready(status: &str, message: &str) -> Node {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "node1", "uid": "u1", "resourceVersion": "7",
                     "labels": {"kubernetes.io/hostname": "node1"},
                     "annotations": {"big": "x"}, "managedFields": [{"manager": "kubelet"}]},
        "spec": {"podCIDR": "10.0.0.0/24"},
        "status": {
            "conditions": [
                {"type": "MemoryPressure", "status": "False", "message": "ok"},
                {"type": "Ready", "status": status, "reason": "KubeletNotReady", "message": message,
                 "lastHeartbeatTime": "2026-12-03T10:00:00Z"}
            ],
            "images": [{"names": ["registry.example/huge:1"], "sizeBytes": 1}],
            "addresses": [{"type": "InternalIP", "address": "192.0.2.11"}]
        }
    }))
    .unwrap()
}

#[test]
fn only_the_kubelets_graceful_shutdown_marks_a_node_shutting_down() {
    // The kubelet's Ready condition during a graceful shutdown (errors aggregated into one message).
    let msg = "[container runtime status check may not have completed yet, node is shutting down]";
    assert!(node_shutting_down(&node_with_ready("False", msg)));
    assert!(node_shutting_down(&node_with_ready("False", NODE_SHUTTING_DOWN)));
    // NotReady for any other reason, or a node with no status (silence), is not a shutdown.
    assert!(!node_shutting_down(&node_with_ready("False", "container runtime is down")));
    assert!(!node_shutting_down(&node_with_ready("Unknown", "Kubelet stopped posting node status.")));
    assert!(!node_shutting_down(&node_with_ready("True", "kubelet is posting ready status")));
    assert!(!node_shutting_down(&Node::default()));
    let mut labelled = node_with_ready("True", "");
    assert!(!node_excluded(&labelled));
    labelled.metadata.labels.get_or_insert_default().insert(EXCLUDE_LABEL.into(), String::new());
    assert!(node_excluded(&labelled));
}

#[test]
fn a_trimmed_node_keeps_what_the_agent_reads_and_nothing_else() {
    let mut n = node_with_ready("False", NODE_SHUTTING_DOWN);
    trim_node(&mut n);
    assert!(node_shutting_down(&n));
    assert_eq!(n.metadata.name.as_deref(), Some("node1"));
    assert_eq!(n.metadata.uid.as_deref(), Some("u1"));
    assert!(n.metadata.labels.as_ref().is_some_and(|l| l.contains_key("kubernetes.io/hostname")));
    assert!(n.metadata.annotations.is_none() && n.metadata.managed_fields.is_none() && n.spec.is_none());
    let status = n.status.as_ref().unwrap();
    assert!(status.images.is_none() && status.addresses.is_none());
    let conditions = status.conditions.as_ref().unwrap();
    assert_eq!(conditions.len(), 1);
    assert!(conditions[0].last_heartbeat_time.is_none(), "heartbeats are not kept: {conditions:?}");
    let mut bare = Node::default();
    trim_node(&mut bare);
    assert!(bare.status.is_none());
}
