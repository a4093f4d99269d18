//! Fixtures for the unit tests: `make`-style builders of Services, groups, Leases and Nodes.
#![allow(clippy::unwrap_used)]

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::jiff::Timestamp;
use purelb_core::api::ServiceGroup;

use crate::snapshot::{Snapshot, Source};

/// The time every fixture is judged at.
pub fn now() -> Timestamp {
    "2030-01-01T00:00:00Z".parse().unwrap()
}

pub fn snapshot() -> Snapshot {
    Snapshot::empty(Source::Cluster, now())
}

pub fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("bad fixture: {e}\n{text}"))
}

/// A group with v4 and v6 pools given as (subnet, pool), aggregation default.
pub fn group(ns: &str, name: &str, v4: &[(&str, &str)], v6: &[(&str, &str)]) -> ServiceGroup {
    let mut text = format!(
        "apiVersion: purelb.io/v1\nkind: ServiceGroup\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  local:\n"
    );
    for (list, pools) in [("v4pools", v4), ("v6pools", v6)] {
        if pools.is_empty() {
            continue;
        }
        text += &format!("    {list}:\n");
        for (subnet, pool) in pools {
            text += &format!("    - subnet: '{subnet}'\n      pool: '{pool}'\n      aggregation: default\n");
        }
    }
    yaml(&text)
}

/// A LoadBalancer Service on port 80 with annotations and extra spec lines.
pub fn service(ns: &str, name: &str, annotations: &[(&str, &str)], spec_extra: &str) -> Service {
    let mut svc: Service = yaml(&format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {ns}\n  creationTimestamp: '2029-01-01T00:00:00Z'\nspec:\n  type: LoadBalancer\n  ports:\n  - port: 80\n    protocol: TCP\n{spec_extra}"
    ));
    if !annotations.is_empty() {
        svc.metadata.annotations =
            Some(annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    }
    svc
}

/// A Service the allocator gave `ips` from `group`.
pub fn allocated(ns: &str, name: &str, group: &str, ips: &[&str]) -> Service {
    let mut svc = service(
        ns,
        name,
        &[
            ("purelb.io/service-group", group),
            ("purelb.io/allocated-by", "PureLB"),
            ("purelb.io/allocated-from", group),
        ],
        "",
    );
    set_ingress(&mut svc, ips);
    svc
}

pub fn set_ingress(svc: &mut Service, ips: &[&str]) {
    let ingress: Vec<serde_json::Value> = ips.iter().map(|ip| serde_json::json!({"ip": ip})).collect();
    let status = serde_json::json!({"loadBalancer": {"ingress": ingress}});
    svc.status = Some(serde_json::from_value(status).unwrap());
}

pub fn set_condition(svc: &mut Service, type_: &str, status: &str, reason: &str, message: &str) {
    let mut st = svc.status.clone().unwrap_or_default();
    st.conditions.get_or_insert_with(Vec::new).push(
        serde_json::from_value(serde_json::json!({
            "type": type_, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2029-06-01T00:00:00Z",
        }))
        .unwrap(),
    );
    svc.status = Some(st);
}

/// The Lease of `node`'s agent, renewed `age` seconds before [`now`], lasting `duration` seconds.
pub fn lease(node: &str, interface: &str, subnets: &str, age: i64, duration: i32) -> Lease {
    let renew = now() - k8s_openapi::jiff::SignedDuration::from_secs(age);
    yaml(&format!(
        "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: purelb-node-{node}\n  namespace: purelb-system\n  annotations:\n    purelb.io/subnets: '{subnets}'\n    purelb.io/interface: {interface}\nspec:\n  holderIdentity: {node}\n  leaseDurationSeconds: {duration}\n  renewTime: '{}'\n",
        renew.strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
    ))
}

pub fn node(name: &str, labels: &[(&str, &str)]) -> Node {
    let mut n: Node = yaml(&format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n"));
    if !labels.is_empty() {
        n.metadata.labels = Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    }
    n
}

/// An EndpointSlice of Service `ns/svc` with one ready endpoint on each of `nodes`.
pub fn slice(ns: &str, svc: &str, nodes: &[&str]) -> EndpointSlice {
    let mut text = format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {svc}-x\n  namespace: {ns}\n  labels:\n    kubernetes.io/service-name: {svc}\naddressType: IPv4\nendpoints:\n"
    );
    for n in nodes {
        text += &format!("- addresses: ['10.0.0.1']\n  nodeName: {n}\n");
    }
    yaml(&text)
}
