//! One address's [`Holding`] (the Services that hold it, and the key they share it under) and
//! [`share_check`], the sharing rule: whether another Service may join it, or the [`ShareRefusal`] why not. Below both the index, which
//! checks it when claiming addresses Services already show, and the decision, which checks it when
//! choosing one.

use litemap::LiteMap;

use super::Reason;
use super::request::{PortKey, ServiceKey, ServiceRequest};
use crate::api::annotations;

/// What one Service, holding an address, contributes to its sharing rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HolderInfo {
    /// Its ports.
    pub ports: Vec<PortKey>,
    /// Whether it has `externalTrafficPolicy: Local`.
    pub local_traffic_policy: bool,
}

/// The Services holding one address and the sharing key they hold it under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holding {
    /// The key every holder has (None: a single, unshared holder).
    pub sharing_key: Option<String>,
    /// The holders, in key order: a sorted vector, not a B-tree. Almost every address has one holder,
    /// and a B-tree's first node has room for 11 (about 900 bytes per address at 10,000 Services).
    pub holders: LiteMap<ServiceKey, HolderInfo>,
}

/// Why a Service may not join the holders of an address.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{why}")]
pub struct ShareRefusal {
    /// The reason code: `AddressInUse`, `SharingConflict` or `SharingRefusedWithLocalPolicy`.
    pub reason: Reason,
    /// A sentence naming the Service and port in the way.
    pub why: String,
}

/// Whether `req` may join the `holding` of an address held by `others`.
pub(super) fn share_check(
    holding: &Holding,
    req: &ServiceRequest,
    others: &[ServiceKey],
) -> Result<(), ShareRefusal> {
    let names = others.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    if req.local_traffic_policy {
        return Err(refuse(
            Reason::SharingRefusedWithLocalPolicy,
            format!(
                "it is held by {names} and a Service with externalTrafficPolicy: Local may not share an address"
            ),
        ));
    }
    if let Some((k, _)) = holding.holders.iter().find(|(k, h)| h.local_traffic_policy && others.contains(k)) {
        return Err(refuse(
            Reason::SharingRefusedWithLocalPolicy,
            format!("it is held by {k}, which has externalTrafficPolicy: Local and may not share it"),
        ));
    }
    let Some(key) = req.sharing_key.as_deref() else {
        let hint = match &holding.sharing_key {
            Some(k) => format!("; to share it, set {}: {k} on this Service", annotations::ALLOW_SHARED_IP),
            None => String::new(),
        };
        return Err(refuse(Reason::AddressInUse, format!("it is held by {names}{hint}")));
    };
    match holding.sharing_key.as_deref() {
        None => {
            return Err(refuse(
                Reason::AddressInUse,
                format!(
                    "it is held by {names}, which does not allow sharing ({} is not set on it)",
                    annotations::ALLOW_SHARED_IP
                ),
            ));
        }
        Some(theirs) if theirs != key => {
            return Err(refuse(
                Reason::SharingConflict,
                format!("it is held by {names} under sharing key {theirs:?}, not {key:?}"),
            ));
        }
        Some(_) => {}
    }
    for (holder, info) in holding.holders.iter().filter(|(k, _)| others.contains(k)) {
        if let Some(port) = req.ports.iter().find(|p| info.ports.contains(p)) {
            return Err(refuse(
                Reason::SharingConflict,
                format!("port {port} is already used on it by {holder}"),
            ));
        }
    }
    Ok(())
}

fn refuse(reason: Reason, why: String) -> ShareRefusal {
    ShareRefusal { reason, why }
}
