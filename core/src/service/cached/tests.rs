//! Tests of [`super::CachedService`]: every decision reads the same from it as from the whole Service.

#![allow(clippy::unwrap_used)]
use super::*;
use crate::allocate::{ServiceKey, ServiceRequest, ownership};
use crate::api::{annotations, conditions};

fn full() -> Service {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "prod", "uid": "u-1", "resourceVersion": "42",
            "creationTimestamp": "2026-12-01T10:00:00Z", "labels": {"app": "web"},
            "annotations": {
                "purelb.io/service-group": "default", "purelb.io/allow-shared-ip": "k",
                "purelb.io/addresses": "192.0.2.7", "purelb.io/allocated-by": "PureLB",
                "purelb.io/allocated-from": "default",
                "kubectl.kubernetes.io/last-applied-configuration": "{\"big\": true}",
                "other.example/thing": "x"},
            "managedFields": [{"manager": "kubectl", "operation": "Apply", "apiVersion": "v1",
                "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}]},
        "spec": {"type": "LoadBalancer", "loadBalancerClass": "purelb.io/purelb",
            "ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "PreferDualStack",
            "externalTrafficPolicy": "Local", "selector": {"app": "web"}, "clusterIP": "10.0.0.9",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080, "nodePort": 31000},
                      {"port": 53, "protocol": "UDP"}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.7", "ipMode": "VIP"}]},
            "conditions": [
                {"type": "purelb.io/Allocated", "status": "True", "reason": "Allocated",
                 "message": "m", "lastTransitionTime": "2026-12-01T10:00:01Z"},
                {"type": "purelb.io/Announced", "status": "True", "reason": "Announced",
                 "message": "a", "lastTransitionTime": "2026-12-01T10:00:02Z"},
                {"type": "other.example/Ready", "status": "True", "reason": "R",
                 "message": "", "lastTransitionTime": "2026-12-01T10:00:01Z"}]}
    }))
    .unwrap()
}

/// Everything [`ServiceFields`] reads, as text.
fn fields(s: &impl ServiceFields) -> String {
    format!(
        "{:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
        s.namespace(),
        s.name(),
        s.created(),
        [
            annotations::SERVICE_GROUP,
            annotations::ALLOW_SHARED_IP,
            annotations::ADDRESSES,
            annotations::ALLOCATED_BY,
            annotations::ALLOCATED_FROM,
            annotations::ANNOUNCING_IPV4,
            annotations::ANNOUNCING_IPV6,
            "purelb.io/unknown"
        ]
        .map(|k| s.annotation(k)),
        s.service_type(),
        s.load_balancer_class(),
        s.load_balancer_ip(),
        s.ip_families().collect::<Vec<_>>(),
        s.ip_family_policy(),
        s.external_traffic_policy(),
        s.ports().collect::<Vec<_>>(),
        s.ingress_ips(),
        s.condition(conditions::ALLOCATED),
    )
}

#[test]
fn every_field_reads_the_same_as_from_the_whole_service() {
    let minimal: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "a"}, "spec": {"type": "ClusterIP", "loadBalancerIP": "bad"},
        "status": {"loadBalancer": {"ingress": [{"hostname": "x.example"}, {"ip": "nonsense"}]}}
    }))
    .unwrap();
    let empty = Service::default();
    for whole in [full(), minimal, empty] {
        let cached = CachedService::new(&whole, conditions::ALLOCATED);
        assert_eq!(fields(&cached), fields(&whole));
    }
    assert!(fields(&full()).contains("Allocated"), "the full Service exercises the condition");
}

#[test]
fn the_allocator_decides_the_same_on_a_cached_service() {
    let whole = full();
    let cached = CachedService::new(&whole, conditions::ALLOCATED);
    assert_eq!(ServiceRequest::from_service(&cached), ServiceRequest::from_service(&whole));
    assert_eq!(ServiceRequest::lenient(&cached), ServiceRequest::lenient(&whole));
    assert_eq!(ownership(&cached, true), ownership(&whole, true));
    assert_eq!(ServiceKey::of(&cached), ServiceKey::of(&whole));
    assert_eq!(cached.resource_version(), Some("42"));
    assert_eq!(cached.uid(), Some("u-1"));
    // Only PureLB's annotations and the condition asked for are kept.
    assert_eq!(whole.annotation("other.example/thing"), Some("x"));
    assert_eq!(cached.annotation("other.example/thing"), None);
    assert!(cached.condition(conditions::ALLOCATED).is_some());
    assert_eq!(cached.condition(conditions::ANNOUNCED), None);
    let back = cached.owned_condition(conditions::ALLOCATED).unwrap();
    assert_eq!(&back, &whole.status.as_ref().unwrap().conditions.as_ref().unwrap()[0]);
}

#[test]
fn an_unreadable_annotation_reads_the_same_on_a_cached_service() {
    let mut whole = full();
    let ann = whole.metadata.annotations.as_mut().unwrap();
    ann.insert(annotations::ADDRESSES.into(), "192.0.2.7,not-an-address".into());
    ann.insert(annotations::SERVICE_GROUP.into(), " ".into());
    let cached = CachedService::new(&whole, conditions::ALLOCATED);
    assert!(ServiceRequest::from_service(&whole).is_err());
    assert_eq!(ServiceRequest::from_service(&cached), ServiceRequest::from_service(&whole));
    assert_eq!(ServiceRequest::lenient(&cached), ServiceRequest::lenient(&whole));
}

#[test]
fn the_agent_decides_the_same_on_a_cached_service() {
    use crate::announce::facts::{incumbents, is_ours, service_facts};
    use crate::announce::report::ServiceReport;
    let mut whole = full();
    whole
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert(annotations::ANNOUNCING_IPV4.to_string(), "node1,eth0".to_string());
    let cached = CachedService::new(&whole, conditions::ANNOUNCED);
    assert!(is_ours(&cached));
    assert_eq!(is_ours(&cached), is_ours(&whole));
    let key = ServiceKey::of(&whole);
    let endpoints = [(key, ["node2".to_string()].into())].into();
    let inc = incumbents([&whole]);
    assert_eq!(incumbents([&cached]), inc);
    assert_eq!(service_facts(&cached, &endpoints, &inc), service_facts(&whole, &endpoints, &inc));
    assert_eq!(ServiceReport::observed(&cached), ServiceReport::observed(&whole));
    assert!(ServiceReport::observed(&cached).condition.is_some());
}

#[test]
fn an_event_names_the_service_by_its_identity() {
    let r = CachedService::new(&full(), conditions::ALLOCATED).object_ref();
    assert_eq!(
        (r.api_version.as_deref(), r.kind.as_deref(), r.namespace.as_deref(), r.name.as_deref()),
        (Some("v1"), Some("Service"), Some("prod"), Some("web"))
    );
    assert_eq!((r.uid.as_deref(), r.resource_version.as_deref()), (Some("u-1"), Some("42")));
    assert_eq!(CachedService::new(&full(), conditions::ALLOCATED).id(), ("prod".into(), "web".into()));
}
