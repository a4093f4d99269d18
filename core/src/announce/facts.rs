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
pub use crate::service::ingress_ips;
use crate::service::{ServiceFields, ServiceKey};
use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeStatus};
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
pub fn is_ours(svc: &(impl ServiceFields + ?Sized)) -> bool {
    let lb = svc.service_type() == Some("LoadBalancer");
    let marked = svc.annotation(annotations::ALLOCATED_BY) == Some(ALLOCATED_BY_VALUE);
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
pub fn incumbents<'a, S: ServiceFields + 'a>(services: impl IntoIterator<Item = &'a S>) -> Incumbents {
    let mut out = Incumbents::new();
    for svc in services.into_iter().filter(|s| is_ours(*s)) {
        for ip in ingress_ips(svc) {
            let key = if ip.is_ipv4() { annotations::ANNOUNCING_IPV4 } else { annotations::ANNOUNCING_IPV6 };
            let Some(node) = svc.annotation(key).and_then(|v| v.split(',').next()).map(str::trim) else {
                continue;
            };
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
    svc: &(impl ServiceFields + ?Sized),
    endpoints: &BTreeMap<ServiceKey, BTreeSet<String>>,
    incumbents: &Incumbents,
) -> ServiceFacts {
    let local = svc.external_traffic_policy() == Some("Local");
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
mod tests;
