//! The watched objects turned into `crate::announce`'s inputs. Pure: no I/O.
//!
//! - [`is_ours`]: a `type: LoadBalancer` Service marked `purelb.io/allocated-by: PureLB` with at least
//!   one ingress IP. Anything else is not the agent's business (the allocator decides ownership).
//! - [`endpoint_nodes`]: per Service (label `kubernetes.io/service-name` of its EndpointSlices), the
//!   nodes with a ready endpoint: `conditions.ready` true or unset (the API's "unknown, assume ready"),
//!   and a `nodeName`.
//! - [`incumbents`]: per local address, the nodes that announce it now, from the
//!   `purelb.io/announcing-IPv4` / `-IPv6` annotations (`<node>, <interface>`) of every Service of ours
//!   holding it (a shared address gathers its Services' answers, so all of them elect alike).
//! - [`service_facts`]: `ServiceFacts` from a Service, those nodes and the incumbents.
//! - [`node_excluded`] / [`node_shutting_down`]: what keeps a Node out of announcements, from its
//!   Node object: the exclude label, or the kubelet's graceful node shutdown (its `Ready` condition
//!   `False` with "node is shutting down", written before the kubelet stops any pod).
//! - [`pools`]: every valid pool of every ServiceGroup (sorted by namespace and name, pools in their
//!   declared order), for the aggregation of non-local addresses. Invalid groups are skipped here; the
//!   allocator reports them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::announce::{EXCLUDE_LABEL, ServiceFacts};
use crate::api::{ALLOCATED_BY_VALUE, ServiceGroup, annotations};
use crate::pool::PoolConfig;
use crate::service::ServiceKey;
pub use crate::service::ingress_ips;
use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeStatus, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// What the kubelet's graceful node shutdown puts in the Node's `Ready` condition message (kubelet
/// `nodeshutdown` manager: "node is shutting down"), as soon as the shutdown begins.
pub const NODE_SHUTTING_DOWN: &str = "node is shutting down";

/// Whether `node` carries [`EXCLUDE_LABEL`].
pub fn node_excluded(node: &Node) -> bool {
    node.labels().contains_key(EXCLUDE_LABEL)
}

/// Whether `node` is shutting down: its kubelet began a graceful node shutdown (`Ready` is `False` and
/// its message says [`NODE_SHUTTING_DOWN`]). Positive evidence from the kubelet itself; a node that is
/// merely NotReady, or whose status is not known, is not shutting down.
pub fn node_shutting_down(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| {
            c.status == "False" && c.message.as_deref().is_some_and(|m| m.contains(NODE_SHUTTING_DOWN))
        })
}

/// `node` cut down to what [`node_excluded`], [`node_shutting_down`] and an event's object reference
/// read (name, uid, resourceVersion, labels; the `Ready` condition's status and message), so that a
/// cache of every Node holds a few hundred bytes per node, not its images, addresses and managed fields.
pub fn trim_node(node: &mut Node) {
    let meta = &mut node.metadata;
    meta.annotations = None;
    meta.managed_fields = None;
    meta.owner_references = None;
    meta.finalizers = None;
    node.spec = None;
    let ready = node
        .status
        .take()
        .and_then(|s| s.conditions)
        .and_then(|cs| cs.into_iter().find(|c| c.type_ == "Ready"))
        .map(|c| NodeCondition {
            type_: c.type_,
            status: c.status,
            message: c.message,
            ..Default::default()
        });
    node.status = ready.map(|c| NodeStatus { conditions: Some(vec![c]), ..Default::default() });
}

/// `slice` cut down to what [`endpoint_nodes`] reads (namespace, name, uid, resourceVersion, the
/// [`SERVICE_NAME_LABEL`], each endpoint's `nodeName` and `ready` condition), so that a cache of every
/// EndpointSlice of the cluster holds tens of bytes per endpoint, not its addresses, ports, target
/// references, hints and managed fields.
pub fn trim_slice(slice: &mut EndpointSlice) {
    let meta = std::mem::take(&mut slice.metadata);
    let service = meta.labels.and_then(|mut l| l.remove_entry(SERVICE_NAME_LABEL));
    slice.metadata = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        resource_version: meta.resource_version,
        labels: service.map(|kv| [kv].into()),
        ..Default::default()
    };
    slice.ports = None;
    if let Some(endpoints) = slice.endpoints.as_mut() {
        for ep in endpoints.iter_mut() {
            let ready = ep.conditions.as_ref().and_then(|c| c.ready);
            *ep = k8s_openapi::api::discovery::v1::Endpoint {
                node_name: ep.node_name.take(),
                conditions: ready.map(|r| k8s_openapi::api::discovery::v1::EndpointConditions {
                    ready: Some(r),
                    ..Default::default()
                }),
                ..Default::default()
            };
        }
    }
}

/// Whether the agent announces `svc`'s addresses (see the module header).
pub fn is_ours(svc: &Service) -> bool {
    let lb = svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer");
    let marked =
        svc.annotations().get(annotations::ALLOCATED_BY).map(String::as_str) == Some(ALLOCATED_BY_VALUE);
    lb && marked && !ingress_ips(svc).is_empty()
}

/// Nodes with a ready endpoint, per Service.
pub fn endpoint_nodes<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> BTreeMap<ServiceKey, BTreeSet<String>> {
    let mut out: BTreeMap<ServiceKey, BTreeSet<String>> = BTreeMap::new();
    for slice in slices {
        let Some(svc) = slice.labels().get(SERVICE_NAME_LABEL) else { continue };
        let key = ServiceKey::new(slice.namespace().unwrap_or_default(), svc.clone());
        let nodes = out.entry(key).or_default();
        for ep in slice.endpoints.iter().flatten() {
            let ready = ep.conditions.as_ref().and_then(|c| c.ready) != Some(false);
            if let (true, Some(node)) = (ready, &ep.node_name) {
                nodes.insert(node.clone());
            }
        }
    }
    out
}

/// Per address, the nodes that announce it now.
pub type Incumbents = BTreeMap<IpAddr, BTreeSet<String>>;

/// The incumbents of every local address of `services` (see the module header).
pub fn incumbents<'a>(services: impl IntoIterator<Item = &'a Service>) -> Incumbents {
    let mut out = Incumbents::new();
    for svc in services.into_iter().filter(|s| is_ours(s)) {
        let a = svc.annotations();
        for ip in ingress_ips(svc) {
            let key = if ip.is_ipv4() { annotations::ANNOUNCING_IPV4 } else { annotations::ANNOUNCING_IPV6 };
            let Some(node) = a.get(key).and_then(|v| v.split(',').next()).map(str::trim) else { continue };
            if !node.is_empty() {
                out.entry(ip).or_default().insert(node.to_string());
            }
        }
    }
    out
}

/// The announcement inputs of `svc`; `endpoints` as from [`endpoint_nodes`], `incumbents` from
/// [`incumbents`] over every Service.
pub fn service_facts(
    svc: &Service,
    endpoints: &BTreeMap<ServiceKey, BTreeSet<String>>,
    incumbents: &Incumbents,
) -> ServiceFacts {
    let local = svc.spec.as_ref().and_then(|s| s.external_traffic_policy.as_deref()) == Some("Local");
    let addresses = ingress_ips(svc);
    let incumbents = addresses.iter().filter_map(|ip| Some((*ip, incumbents.get(ip)?.clone()))).collect();
    ServiceFacts {
        addresses,
        local_traffic_policy: local,
        endpoint_nodes: endpoints.get(&ServiceKey::of(svc)).cloned().unwrap_or_default(),
        incumbents,
    }
}

/// Every valid pool of every group, in a stable order.
pub fn pools<'a>(groups: impl IntoIterator<Item = &'a ServiceGroup>) -> Vec<PoolConfig> {
    let mut groups: Vec<&ServiceGroup> = groups.into_iter().collect();
    groups.sort_by_key(|g| (g.namespace().unwrap_or_default(), g.name_any()));
    let mut out = Vec::new();
    for g in groups {
        let Some(local) = &g.spec.local else { continue };
        let Ok(pools) = local.parsed_pools() else { continue };
        out.extend(pools.into_iter().filter_map(|(_, parsed)| parsed.ok()));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::api::{PoolSpec, ServiceGroupLocal, ServiceGroupSpec};
    use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, ServiceSpec, ServiceStatus};
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn svc(name: &str, ips: &[&str], marked: bool, etp: &str) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                annotations: marked.then(|| {
                    [(annotations::ALLOCATED_BY.to_string(), ALLOCATED_BY_VALUE.to_string())].into()
                }),
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
}
