//! What every part of PureLB reads off a Service the same way, below both [`crate::allocate`] and
//! [`crate::announce`] so that neither imports the other: [`ServiceFields`], the fields PureLB's
//! decisions read, implemented for k8s-openapi's `Service` (what `explain` reads live) and for the
//! daemons' compact [`CachedService`]; a Service's [`ServiceKey`] and its [`ingress_ips`].

use std::fmt;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

mod cached;

pub use cached::CachedService;

/// `namespace/name` of a Service.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub name: String,
}

impl ServiceKey {
    /// A key from its parts.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self { namespace: namespace.into(), name: name.into() }
    }

    /// The key of a Service (`default` namespace when it has none).
    pub fn of(svc: &(impl ServiceFields + ?Sized)) -> Self {
        Self::new(svc.namespace().unwrap_or("default"), svc.name())
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One status condition of a Service, as read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConditionFields<'a> {
    /// `True`, `False` or `Unknown`.
    pub status: &'a str,
    /// The reason code.
    pub reason: &'a str,
    /// The message.
    pub message: &'a str,
    /// When the status last changed.
    pub last_transition_time: &'a Time,
    /// `observedGeneration`.
    pub observed_generation: Option<i64>,
}

impl<'a> From<&'a Condition> for ConditionFields<'a> {
    fn from(c: &'a Condition) -> Self {
        ConditionFields {
            status: &c.status,
            reason: &c.reason,
            message: &c.message,
            last_transition_time: &c.last_transition_time,
            observed_generation: c.observed_generation,
        }
    }
}

/// The fields of a Service that PureLB's decisions read (see the module documentation). Every
/// decision in this crate takes a Service through this trait, so the allocator and the agents decide
/// on their compact cache exactly what `explain` decides on the live object.
pub trait ServiceFields {
    /// `metadata.namespace`.
    fn namespace(&self) -> Option<&str>;
    /// `metadata.name` (empty when unset).
    fn name(&self) -> &str;
    /// `metadata.creationTimestamp`.
    fn created(&self) -> Option<Timestamp>;
    /// The value of annotation `key`.
    fn annotation(&self, key: &str) -> Option<&str>;
    /// `spec.type`.
    fn service_type(&self) -> Option<&str>;
    /// `spec.loadBalancerClass`.
    fn load_balancer_class(&self) -> Option<&str>;
    /// `spec.loadBalancerIP`.
    fn load_balancer_ip(&self) -> Option<&str>;
    /// `spec.ipFamilies`, in order.
    fn ip_families(&self) -> impl Iterator<Item = &str>;
    /// `spec.ipFamilyPolicy`.
    fn ip_family_policy(&self) -> Option<&str>;
    /// `spec.externalTrafficPolicy`.
    fn external_traffic_policy(&self) -> Option<&str>;
    /// `spec.ports`: (protocol, port) of each.
    fn ports(&self) -> impl Iterator<Item = (Option<&str>, i32)>;
    /// The IPs of `status.loadBalancer.ingress`, in order, unparsable entries skipped.
    fn ingress_ips(&self) -> Vec<IpAddr>;
    /// The status condition of type `type_`.
    fn condition(&self, type_: &str) -> Option<ConditionFields<'_>>;

    /// The status condition of type `type_`, as an object of its own (to keep it, or to write it back
    /// with its `lastTransitionTime`).
    fn owned_condition(&self, type_: &str) -> Option<Condition> {
        let c = self.condition(type_)?;
        Some(Condition {
            type_: type_.to_string(),
            status: c.status.to_string(),
            reason: c.reason.to_string(),
            message: c.message.to_string(),
            last_transition_time: c.last_transition_time.clone(),
            observed_generation: c.observed_generation,
        })
    }
}

/// A Service behind a reference or an `Arc` (the daemons' caches share theirs) reads as itself.
macro_rules! delegate {
    ($($t:ty),*) => {$(
        impl<T: ServiceFields + ?Sized> ServiceFields for $t {
            fn namespace(&self) -> Option<&str> { (**self).namespace() }
            fn name(&self) -> &str { (**self).name() }
            fn created(&self) -> Option<Timestamp> { (**self).created() }
            fn annotation(&self, key: &str) -> Option<&str> { (**self).annotation(key) }
            fn service_type(&self) -> Option<&str> { (**self).service_type() }
            fn load_balancer_class(&self) -> Option<&str> { (**self).load_balancer_class() }
            fn load_balancer_ip(&self) -> Option<&str> { (**self).load_balancer_ip() }
            fn ip_families(&self) -> impl Iterator<Item = &str> { (**self).ip_families() }
            fn ip_family_policy(&self) -> Option<&str> { (**self).ip_family_policy() }
            fn external_traffic_policy(&self) -> Option<&str> { (**self).external_traffic_policy() }
            fn ports(&self) -> impl Iterator<Item = (Option<&str>, i32)> { (**self).ports() }
            fn ingress_ips(&self) -> Vec<IpAddr> { (**self).ingress_ips() }
            fn condition(&self, type_: &str) -> Option<ConditionFields<'_>> { (**self).condition(type_) }
        }
    )*};
}

delegate!(&T, std::sync::Arc<T>);

/// The IPs of `status.loadBalancer.ingress`, in order, unparsable entries skipped.
pub fn ingress_ips(svc: &(impl ServiceFields + ?Sized)) -> Vec<IpAddr> {
    svc.ingress_ips()
}

impl ServiceFields for Service {
    fn namespace(&self) -> Option<&str> {
        self.metadata.namespace.as_deref()
    }

    fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }

    fn created(&self) -> Option<Timestamp> {
        self.metadata.creation_timestamp.as_ref().map(|t| t.0)
    }

    fn annotation(&self, key: &str) -> Option<&str> {
        self.metadata.annotations.as_ref()?.get(key).map(String::as_str)
    }

    fn service_type(&self) -> Option<&str> {
        self.spec.as_ref()?.type_.as_deref()
    }

    fn load_balancer_class(&self) -> Option<&str> {
        self.spec.as_ref()?.load_balancer_class.as_deref()
    }

    fn load_balancer_ip(&self) -> Option<&str> {
        self.spec.as_ref()?.load_balancer_ip.as_deref()
    }

    fn ip_families(&self) -> impl Iterator<Item = &str> {
        self.spec.iter().flat_map(|s| s.ip_families.iter().flatten()).map(String::as_str)
    }

    fn ip_family_policy(&self) -> Option<&str> {
        self.spec.as_ref()?.ip_family_policy.as_deref()
    }

    fn external_traffic_policy(&self) -> Option<&str> {
        self.spec.as_ref()?.external_traffic_policy.as_deref()
    }

    fn ports(&self) -> impl Iterator<Item = (Option<&str>, i32)> {
        self.spec.iter().flat_map(|s| s.ports.iter().flatten()).map(|p| (p.protocol.as_deref(), p.port))
    }

    fn ingress_ips(&self) -> Vec<IpAddr> {
        self.status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .map(|ing| ing.iter().filter_map(|i| i.ip.as_deref()?.parse().ok()).collect())
            .unwrap_or_default()
    }

    fn condition(&self, type_: &str) -> Option<ConditionFields<'_>> {
        self.status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == type_)
            .map(ConditionFields::from)
    }
}
