//! [`reconcile`]: one Service's allocation, every step in order — read the request, claim the addresses
//! it already shows, decide, classify the result ([`Outcome`]) and word its `purelb.io/Allocated`
//! condition ([`AllocatedCondition`]). The allocator commits the outcome ([`Outcome::commit`]) and writes
//! it; `explain` replays it on a copy of the index and renders it. Neither words a condition itself.

use std::net::IpAddr;

use super::index::{AllocationIndex, ClaimConflict, Held};
use super::request::{RequestError, ServiceKey, ServiceRequest};
use super::{Decision, Reason};
use crate::service::{ServiceFields, ingress_ips};

/// The `purelb.io/Allocated` condition PureLB wants on a Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocatedCondition {
    /// `True`: the Service holds addresses (possibly kept after a refused change).
    pub status: bool,
    /// The stable reason code.
    pub reason: Reason,
    /// One line a user can act on.
    pub message: String,
}

/// What [`reconcile`] found for one Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The request cannot be read: the Service keeps what it held and may still hold under what can be
    /// read (already recorded in the index), and gets nothing new.
    InvalidRequest {
        /// What could still be read.
        request: ServiceRequest,
        /// Why the request cannot be read.
        error: RequestError,
        /// What it keeps.
        kept: Option<Held>,
        /// The condition to show.
        condition: AllocatedCondition,
    },
    /// The addresses the Service shows are held by other Services without a valid share: PureLB picks
    /// no winner, and the Service holds nothing in the index.
    Conflict {
        /// The request.
        request: ServiceRequest,
        /// The addresses it shows.
        shown: Vec<IpAddr>,
        /// Who else holds them, and why that is no share.
        conflicts: Vec<ClaimConflict>,
        /// The condition to show.
        condition: AllocatedCondition,
    },
    /// Core decided, successfully or not; the decision is not committed yet.
    Decided {
        /// The request.
        request: ServiceRequest,
        /// The decision.
        decision: Decision,
        /// The condition to show.
        condition: AllocatedCondition,
    },
}

/// Reconciles `svc` against `index`: records what it already shows when the index holds nothing for it
/// (an address given by a previous allocator or by someone else), then decides. The decision itself is
/// left for [`Outcome::commit`]. Ownership is the caller's question: this answers for any Service.
pub fn reconcile(index: &mut AllocationIndex, svc: &(impl ServiceFields + ?Sized)) -> Outcome {
    let key = ServiceKey::of(svc);
    let shown = ingress_ips(svc);
    let request = match ServiceRequest::from_service(svc) {
        Ok(request) => request,
        Err(error) => {
            let request = ServiceRequest::lenient(svc);
            if index.held(&key).is_none() && !shown.is_empty() {
                // Keep what it already shows even though an annotation became unreadable; a conflict
                // leaves it holding nothing, which is what is said then.
                let _ = index.claim(&request, &shown);
            }
            // What can still be read (its key, ports, policy) may no longer fit a share it holds.
            index.keep(&request);
            let kept = index.held(&key).cloned();
            let message = match &kept {
                Some(h) => format!("keeps {}; the request cannot be read: {error}", join(&h.addresses)),
                None => error.to_string(),
            };
            let condition =
                AllocatedCondition { status: kept.is_some(), reason: Reason::InvalidRequest, message };
            return Outcome::InvalidRequest { request, error, kept, condition };
        }
    };
    if index.held(&key).is_none() && !shown.is_empty() {
        let conflicts = index.claim(&request, &shown);
        if !conflicts.is_empty() {
            let condition = AllocatedCondition {
                status: false,
                reason: Reason::AddressConflict,
                message: conflict_message(&conflicts),
            };
            return Outcome::Conflict { request, shown, conflicts, condition };
        }
    }
    let decision = index.decide(&request);
    // A failed decision still holds what it keeps (`decision.kept`), and says so.
    let status = decision.outcome.is_ok() || !decision.kept.is_empty();
    let condition = AllocatedCondition { status, reason: decision.reason(), message: decision.message() };
    Outcome::Decided { request, decision, condition }
}

/// The message of an [`Outcome::Conflict`].
fn conflict_message(conflicts: &[ClaimConflict]) -> String {
    let each: Vec<String> = conflicts
        .iter()
        .map(|c| format!("{} is also held by {}: {}", c.address, join(&c.holders), c.why))
        .collect();
    format!("{}; PureLB does not pick a winner: change or remove one of the Services", each.join("; "))
}

fn join<T: ToString>(items: &[T]) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

// === impl Outcome ===

impl Outcome {
    /// The condition to show.
    pub fn condition(&self) -> &AllocatedCondition {
        match self {
            Self::InvalidRequest { condition, .. }
            | Self::Conflict { condition, .. }
            | Self::Decided { condition, .. } => condition,
        }
    }

    /// The request, as far as it could be read.
    pub fn request(&self) -> &ServiceRequest {
        match self {
            Self::InvalidRequest { request, .. }
            | Self::Conflict { request, .. }
            | Self::Decided { request, .. } => request,
        }
    }

    /// The decision, when core decided.
    pub fn decision(&self) -> Option<&Decision> {
        match self {
            Self::Decided { decision, .. } => Some(decision),
            _ => None,
        }
    }

    /// Applies the outcome to `index` (a decision: what it gives, or on failure what it keeps; the
    /// other outcomes were recorded by [`reconcile`]). Returns the addresses that became free.
    pub fn commit(&self, index: &mut AllocationIndex) -> Vec<IpAddr> {
        let Self::Decided { request, decision, .. } = self else { return Vec::new() };
        let before = index.held(&request.key).map(|h| h.addresses.clone()).unwrap_or_default();
        index.apply(request, decision);
        before.into_iter().filter(|ip| index.holding(*ip).is_none()).collect()
    }
}
