//! [`CachedService`]: a Service as the allocator and the agents keep it in their caches of every
//! Service, holding only the fields [`super::ServiceFields`] reads and what a write or an event on it
//! needs, with short strings stored inline.

use std::net::IpAddr;

use compact_str::CompactString;
use k8s_openapi::api::core::v1::{ObjectReference, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;

use super::{ConditionFields, ServiceFields};
use crate::api::ANNOTATION_PREFIX;

/// A Service cut down to what PureLB reads: name, namespace, uid, resourceVersion,
/// creationTimestamp, the `purelb.io/` annotations; the spec's type, class, requested IP, families,
/// family policy, ports (protocol and number) and external traffic policy; the ingress IPs and one
/// status condition, the one its daemon writes and reads back (`purelb.io/Allocated` for the
/// allocator, `purelb.io/Announced` for the agents).
///
/// 304 bytes inline, about 0.85 KB per Service with its allocations and a daemon's cache entry
/// (heaptrack, the allocator holding 10,001), where k8s-openapi's `Service`, even trimmed, took
/// 2.1 KB (its struct alone is 824 bytes with every field empty): names, versions, annotation values,
/// families and protocols of up to 24 bytes live inside the struct, without an allocation of their own.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedService {
    namespace: Option<CompactString>,
    name: CompactString,
    uid: Option<Box<str>>,
    resource_version: Option<CompactString>,
    created: Option<Timestamp>,
    /// The `purelb.io/` annotations, the prefix left out of the key.
    annotations: Box<[(CompactString, CompactString)]>,
    service_type: Option<CompactString>,
    load_balancer_class: Option<CompactString>,
    load_balancer_ip: Option<CompactString>,
    ip_families: Box<[CompactString]>,
    ip_family_policy: Option<CompactString>,
    external_traffic_policy: Option<CompactString>,
    ports: Box<[(Option<CompactString>, i32)]>,
    ingress: Box<[IpAddr]>,
    /// The one status condition kept.
    condition: Option<Box<Condition>>,
}

fn compact(s: &Option<String>) -> Option<CompactString> {
    s.as_deref().map(CompactString::from)
}

impl CachedService {
    /// The cached form of `svc`, keeping its status condition of type `condition` (the one the
    /// caller writes and reads back) and no other.
    pub fn new(svc: &Service, condition: &str) -> Self {
        let meta = &svc.metadata;
        let annotations = meta
            .annotations
            .iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.strip_prefix(ANNOTATION_PREFIX)?.into(), v.into())))
            .collect();
        let spec = svc.spec.as_ref();
        let kept = svc.owned_condition(condition).map(Box::new);
        Self {
            namespace: compact(&meta.namespace),
            name: svc.name().into(),
            uid: meta.uid.as_deref().map(Box::from),
            resource_version: compact(&meta.resource_version),
            created: svc.created(),
            annotations,
            service_type: spec.and_then(|s| compact(&s.type_)),
            load_balancer_class: spec.and_then(|s| compact(&s.load_balancer_class)),
            load_balancer_ip: spec.and_then(|s| compact(&s.load_balancer_ip)),
            ip_families: svc.ip_families().map(CompactString::from).collect(),
            ip_family_policy: spec.and_then(|s| compact(&s.ip_family_policy)),
            external_traffic_policy: spec.and_then(|s| compact(&s.external_traffic_policy)),
            ports: svc.ports().map(|(proto, port)| (proto.map(CompactString::from), port)).collect(),
            ingress: svc.ingress_ips().into(),
            condition: kept,
        }
    }

    /// `(namespace, name)`, the namespace empty when unset: the id the daemons' caches file it under.
    pub fn id(&self) -> (String, String) {
        (self.namespace.as_deref().unwrap_or_default().to_string(), self.name.to_string())
    }

    /// `metadata.uid`.
    pub fn uid(&self) -> Option<&str> {
        self.uid.as_deref()
    }

    /// `metadata.resourceVersion`.
    pub fn resource_version(&self) -> Option<&str> {
        self.resource_version.as_deref()
    }

    /// A reference to the Service, for an event about it.
    pub fn object_ref(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Service".into()),
            namespace: self.namespace.as_deref().map(str::to_string),
            name: Some(self.name.to_string()),
            uid: self.uid.as_deref().map(str::to_string),
            resource_version: self.resource_version.as_deref().map(str::to_string),
            ..ObjectReference::default()
        }
    }
}

impl ServiceFields for CachedService {
    fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn created(&self) -> Option<Timestamp> {
        self.created
    }

    fn annotation(&self, key: &str) -> Option<&str> {
        let short = key.strip_prefix(ANNOTATION_PREFIX)?;
        self.annotations.iter().find(|(k, _)| k == short).map(|(_, v)| v.as_str())
    }

    fn service_type(&self) -> Option<&str> {
        self.service_type.as_deref()
    }

    fn load_balancer_class(&self) -> Option<&str> {
        self.load_balancer_class.as_deref()
    }

    fn load_balancer_ip(&self) -> Option<&str> {
        self.load_balancer_ip.as_deref()
    }

    fn ip_families(&self) -> impl Iterator<Item = &str> {
        self.ip_families.iter().map(CompactString::as_str)
    }

    fn ip_family_policy(&self) -> Option<&str> {
        self.ip_family_policy.as_deref()
    }

    fn external_traffic_policy(&self) -> Option<&str> {
        self.external_traffic_policy.as_deref()
    }

    fn ports(&self) -> impl Iterator<Item = (Option<&str>, i32)> {
        self.ports.iter().map(|(proto, port)| (proto.as_deref(), *port))
    }

    fn ingress_ips(&self) -> Vec<IpAddr> {
        self.ingress.to_vec()
    }

    fn condition(&self, type_: &str) -> Option<ConditionFields<'_>> {
        self.condition.as_deref().filter(|c| c.type_ == type_).map(ConditionFields::from)
    }
}

#[cfg(test)]
mod tests;
