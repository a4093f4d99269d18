//! Start-up: [`claim_existing`] records what every Service already holds, before anything is
//! allocated, in one fixed order — oldest first; within one second (the timestamps' resolution) a
//! Service PureLB marked as allocated before one it did not; then by name — so that of two Services
//! claiming one address the same one keeps it every time, whoever replays it (allocator or `explain`).

use std::collections::BTreeMap;

use super::index::{AllocationIndex, ClaimConflict};
use super::request::{Ownership, ServiceKey, ServiceRequest, ownership};
use crate::api::annotations;
use crate::service::{ServiceFields, ingress_ips};

/// Claims the ingress addresses of every Service that is PureLB's; returns the Services whose claim
/// conflicts with an earlier one (they hold nothing in the index).
pub fn claim_existing<'a, S: ServiceFields + 'a>(
    index: &mut AllocationIndex,
    services: impl IntoIterator<Item = &'a S>,
    classless_ours: bool,
) -> BTreeMap<ServiceKey, Vec<ClaimConflict>> {
    let mut ours: Vec<&S> =
        services.into_iter().filter(|s| ownership(*s, classless_ours) == Ownership::Ours).collect();
    ours.sort_by_cached_key(|s| {
        let created = s.created();
        let unmarked = s.annotation(annotations::ALLOCATED_BY).is_none();
        (created, unmarked, ServiceKey::of(*s))
    });
    let mut conflicts = BTreeMap::new();
    for svc in ours {
        let ips = ingress_ips(svc);
        if ips.is_empty() {
            continue;
        }
        let found = index.claim(&ServiceRequest::lenient(svc), &ips);
        if !found.is_empty() {
            conflicts.insert(ServiceKey::of(svc), found);
        }
    }
    conflicts
}
