//! What a Service asks of the allocator, read from its spec and annotations: [`ServiceRequest`].
//! Reading never fails silently and never panics: a bad annotation becomes a [`RequestError`] that
//! names the annotation, the value and the rule it broke.

use std::fmt;
use std::net::IpAddr;

use crate::service::ServiceFields;
pub use crate::service::ServiceKey;

use crate::api::{DEFAULT_GROUP, LOAD_BALANCER_CLASS, annotations};
use crate::group::GroupKey;
use crate::pool::Family;

/// Whether a Service is PureLB's to allocate for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// A LoadBalancer of class `purelb.io/purelb` (or class-less, when class-less Services are ours).
    Ours,
    /// Not `type: LoadBalancer` (any more).
    NotLoadBalancer,
    /// A LoadBalancer with another controller's class, or class-less when those are not ours.
    OtherClass(Option<String>),
}

/// Decides whether `svc` is PureLB's: `classless_ours` says whether class-less LoadBalancers are.
pub fn ownership(svc: &(impl ServiceFields + ?Sized), classless_ours: bool) -> Ownership {
    if svc.service_type() != Some("LoadBalancer") {
        return Ownership::NotLoadBalancer;
    }
    match svc.load_balancer_class() {
        Some(LOAD_BALANCER_CLASS) => Ownership::Ours,
        None if classless_ours => Ownership::Ours,
        other => Ownership::OtherClass(other.map(str::to_string)),
    }
}

/// Where the group name came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupSource {
    /// The `purelb.io/service-group` annotation.
    Annotation,
    /// No annotation: the group named `default`.
    Default,
}

/// Where a requested address came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestSource {
    /// The `purelb.io/addresses` annotation.
    AddressesAnnotation,
    /// The deprecated `spec.loadBalancerIP`.
    LoadBalancerIp,
}

impl fmt::Display for RequestSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::AddressesAnnotation => annotations::ADDRESSES,
            Self::LoadBalancerIp => "spec.loadBalancerIP",
        })
    }
}

/// `spec.ipFamilyPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FamilyPolicy {
    /// One family: the first of `ipFamilies`.
    SingleStack,
    /// Both families when the group has both, else the one it has.
    PreferDualStack,
    /// Both families or nothing.
    RequireDualStack,
}

impl fmt::Display for FamilyPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A (protocol, port) a Service exposes; two sharers must not have one in common.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortKey {
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    /// The Service port.
    pub port: i32,
}

impl fmt::Display for PortKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.port, self.protocol)
    }
}

/// Everything the allocator needs to know about one Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRequest {
    /// Which Service.
    pub key: ServiceKey,
    /// The ServiceGroup to allocate from.
    pub group: GroupKey,
    /// Why that group.
    pub group_source: GroupSource,
    /// Specific addresses asked for, at most one per family.
    pub requested: Vec<(IpAddr, RequestSource)>,
    /// The families wanted, in preference order (`spec.ipFamilies`).
    pub families: Vec<Family>,
    /// `spec.ipFamilyPolicy`.
    pub policy: FamilyPolicy,
    /// `purelb.io/allow-shared-ip`.
    pub sharing_key: Option<String>,
    /// The ports the Service exposes.
    pub ports: Vec<PortKey>,
    /// `externalTrafficPolicy: Local`.
    pub local_traffic_policy: bool,
    /// `purelb.io/allocated-from`, as PureLB last wrote it: the group the addresses the Service shows
    /// were recorded under, so that a restart records them under the same one.
    pub allocated_from: Option<GroupKey>,
}

/// Why a Service's request cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// An address in `purelb.io/addresses` or `spec.loadBalancerIP` is not an IP address.
    #[error("{from} contains {value:?}, which is not an IP address")]
    InvalidAddress {
        /// Annotation or field.
        from: RequestSource,
        /// The offending text.
        value: String,
    },
    /// Two addresses of one family were requested.
    #[error("{from} asks for two {family} addresses ({first} and {second}); give at most one per family")]
    TwoOfOneFamily {
        /// Annotation or field.
        from: RequestSource,
        /// The family asked twice.
        family: Family,
        /// The first address.
        first: IpAddr,
        /// The second address.
        second: IpAddr,
    },
    /// `ipFamilies` or `ipFamilyPolicy` holds a value Kubernetes does not define.
    #[error("spec.{field} has the unknown value {value:?}")]
    UnknownFamilySetting {
        /// `ipFamilies` or `ipFamilyPolicy`.
        field: &'static str,
        /// The offending text.
        value: String,
    },
    /// An annotation is present but empty.
    #[error("annotation {annotation} is empty")]
    EmptyAnnotation {
        /// The annotation key.
        annotation: &'static str,
    },
}

impl ServiceRequest {
    /// Reads a Service. Only the spec and annotations are consulted, never the status.
    pub fn from_service(svc: &(impl ServiceFields + ?Sized)) -> Result<ServiceRequest, RequestError> {
        Self::read(svc, false)
    }

    /// Reads a Service; `lenient` leaves out what cannot be read (see [`ServiceRequest::lenient`]).
    fn read(svc: &(impl ServiceFields + ?Sized), lenient: bool) -> Result<ServiceRequest, RequestError> {
        let key = ServiceKey::of(svc);
        // Leniently, an empty group or sharing key counts as absent.
        let get = |k: &str| {
            let v = svc.annotation(k).map(str::trim);
            if lenient && v == Some("") { None } else { v.map(str::to_string) }
        };

        let (group, group_source) = match get(annotations::SERVICE_GROUP) {
            Some(g) if g.is_empty() => {
                return Err(RequestError::EmptyAnnotation { annotation: annotations::SERVICE_GROUP });
            }
            Some(g) => (GroupKey::new(&g), GroupSource::Annotation),
            None => (GroupKey::new(DEFAULT_GROUP), GroupSource::Default),
        };

        let requested = match get(annotations::ADDRESSES).filter(|_| !lenient) {
            Some(list) => parse_addresses(&list, RequestSource::AddressesAnnotation)?,
            None => match svc.load_balancer_ip().map(str::trim).filter(|_| !lenient) {
                Some(ip) if !ip.is_empty() => parse_addresses(ip, RequestSource::LoadBalancerIp)?,
                _ => Vec::new(),
            },
        };

        let sharing_key = match get(annotations::ALLOW_SHARED_IP) {
            Some(k) if k.is_empty() => {
                return Err(RequestError::EmptyAnnotation { annotation: annotations::ALLOW_SHARED_IP });
            }
            other => other,
        };

        let policy = match svc.ip_family_policy().filter(|_| !lenient) {
            None | Some("SingleStack") => FamilyPolicy::SingleStack,
            Some("PreferDualStack") => FamilyPolicy::PreferDualStack,
            Some("RequireDualStack") => FamilyPolicy::RequireDualStack,
            Some(other) => {
                return Err(RequestError::UnknownFamilySetting {
                    field: "ipFamilyPolicy",
                    value: other.to_string(),
                });
            }
        };
        let mut families = Vec::new();
        for f in svc.ip_families().filter(|_| !lenient) {
            let fam = match f {
                "IPv4" => Family::V4,
                "IPv6" => Family::V6,
                other => {
                    return Err(RequestError::UnknownFamilySetting {
                        field: "ipFamilies",
                        value: other.to_string(),
                    });
                }
            };
            if !families.contains(&fam) {
                families.push(fam);
            }
        }
        // The API server fills ipFamilies in; objects read from files (offline explain) may lack it.
        if families.is_empty() {
            families.push(requested.first().map(|(ip, _)| Family::of(*ip)).unwrap_or(Family::V4));
        }
        match policy {
            FamilyPolicy::SingleStack => families.truncate(1),
            FamilyPolicy::PreferDualStack | FamilyPolicy::RequireDualStack => {
                for fam in [Family::V4, Family::V6] {
                    if !families.contains(&fam) {
                        families.push(fam);
                    }
                }
            }
        }

        let ports = svc
            .ports()
            .map(|(protocol, port)| PortKey { protocol: protocol.unwrap_or("TCP").to_string(), port })
            .collect();

        Ok(ServiceRequest {
            key,
            group,
            group_source,
            requested,
            families,
            policy,
            sharing_key,
            ports,
            local_traffic_policy: svc.external_traffic_policy() == Some("Local"),
            allocated_from: get(annotations::ALLOCATED_FROM)
                .filter(|g| !g.is_empty())
                .map(|g| GroupKey::new(&g)),
        })
    }

    /// The request as far as it can be read, for recording what a Service already holds even when an
    /// annotation has since become unreadable: unreadable annotations and family settings are left out.
    pub fn lenient(svc: &(impl ServiceFields + ?Sized)) -> ServiceRequest {
        if let Ok(req) = Self::read(svc, false) {
            return req;
        }
        Self::read(svc, true).unwrap_or_else(|_| ServiceRequest {
            key: ServiceKey::of(svc),
            group: GroupKey::new(DEFAULT_GROUP),
            group_source: GroupSource::Default,
            requested: Vec::new(),
            families: vec![Family::V4],
            policy: FamilyPolicy::SingleStack,
            sharing_key: None,
            ports: Vec::new(),
            local_traffic_policy: false,
            allocated_from: None,
        })
    }

    /// The address requested for `family`, if any.
    pub fn requested_for(&self, family: Family) -> Option<(IpAddr, RequestSource)> {
        self.requested.iter().copied().find(|(ip, _)| Family::of(*ip) == family)
    }
}

fn parse_addresses(list: &str, source: RequestSource) -> Result<Vec<(IpAddr, RequestSource)>, RequestError> {
    let mut out: Vec<(IpAddr, RequestSource)> = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let ip: IpAddr = part
            .parse()
            .map_err(|_| RequestError::InvalidAddress { from: source, value: part.to_string() })?;
        if let Some((first, _)) = out.iter().find(|(o, _)| Family::of(*o) == Family::of(ip)) {
            return Err(RequestError::TwoOfOneFamily {
                from: source,
                family: Family::of(ip),
                first: *first,
                second: ip,
            });
        }
        out.push((ip, source));
    }
    Ok(out)
}
