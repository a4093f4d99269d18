//! Allocation: which addresses a LoadBalancer Service gets, from which ServiceGroup, and why — or the
//! stable reason it gets none, with the candidates that were rejected.
//!
//! - [`request`]: a Service read into a [`ServiceRequest`].
//! - [`index`]: the [`AllocationIndex`] of groups, pools and holdings.
//! - [`groups`]: a group's [`GroupState`] and the `Valid` [`GroupCondition`] it is shown with.
//! - [`holding`]: one address's [`Holding`] and the sharing rule.
//! - [`decide`]: [`AllocationIndex::decide`], the one function that decides.
//! - [`rebuild`]: [`claim_existing`], what Services already hold, claimed in a fixed order at start-up.
//! - [`reconcile`](mod@reconcile): [`reconcile()`], one Service's steps in order (read, claim what it shows,
//!   decide, classify, word the condition) as an [`Outcome`] the allocator commits and `explain` renders.

mod decide;
mod groups;
mod holding;
mod index;
#[cfg(test)]
mod proptests;
mod rebuild;
mod reconcile;
#[cfg(test)]
mod reconcile_tests;
mod request;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::IpAddr;

pub use crate::group::GroupKey;

pub use groups::{GroupCondition, PoolRead, read_pools};
pub use index::{
    AllocationIndex, ClaimConflict, GroupError, GroupState, GroupUsage, Held, HolderInfo, Holding, PoolSlot,
    ShareRefusal,
};
pub use rebuild::claim_existing;
pub use reconcile::{AllocatedCondition, Outcome, reconcile};
pub use request::{
    FamilyPolicy, GroupSource, Ownership, PortKey, RequestError, RequestSource, ServiceKey, ServiceRequest,
    ownership,
};

/// A stable reason code: the `reason` of the `purelb.io/Allocated` condition and of Warning events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The Service holds its addresses.
    Allocated,
    /// No ServiceGroup has the name the Service asks for (or `default`).
    NoServiceGroup,
    /// The group is defined in several namespaces.
    DuplicateServiceGroup,
    /// The group has a pool that cannot be read.
    InvalidServiceGroup,
    /// Every pool of the group is in use.
    PoolExhausted,
    /// The requested address is held by another Service that does not share it.
    AddressInUse,
    /// The requested address lies in no pool of any ServiceGroup.
    AddressNotInAnyGroup,
    /// Sharing is not possible: different key, or a port in common.
    SharingConflict,
    /// `externalTrafficPolicy: Local` Services may not share addresses.
    SharingRefusedWithLocalPolicy,
    /// The group has no pool of a family the Service requires.
    FamilyUnavailable,
    /// An annotation or field could not be read.
    InvalidRequest,
    /// Two Services already claim the same address without a valid share.
    AddressConflict,
}

impl Reason {
    /// The code as written in conditions and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allocated => "Allocated",
            Self::NoServiceGroup => "NoServiceGroup",
            Self::DuplicateServiceGroup => "DuplicateServiceGroup",
            Self::InvalidServiceGroup => "InvalidServiceGroup",
            Self::PoolExhausted => "PoolExhausted",
            Self::AddressInUse => "AddressInUse",
            Self::AddressNotInAnyGroup => "AddressNotInAnyGroup",
            Self::SharingConflict => "SharingConflict",
            Self::SharingRefusedWithLocalPolicy => "SharingRefusedWithLocalPolicy",
            Self::FamilyUnavailable => "FamilyUnavailable",
            Self::InvalidRequest => "InvalidRequest",
            Self::AddressConflict => "AddressConflict",
        }
    }

    /// The reason a code names, if it is one of ours (a condition read back from a Service).
    pub fn parse(code: &str) -> Option<Reason> {
        Self::ALL.into_iter().find(|r| r.as_str() == code)
    }

    /// Every reason code (for metrics and the reference documentation).
    pub const ALL: [Reason; 12] = [
        Self::Allocated,
        Self::NoServiceGroup,
        Self::DuplicateServiceGroup,
        Self::InvalidServiceGroup,
        Self::PoolExhausted,
        Self::AddressInUse,
        Self::AddressNotInAnyGroup,
        Self::SharingConflict,
        Self::SharingRefusedWithLocalPolicy,
        Self::FamilyUnavailable,
        Self::InvalidRequest,
        Self::AddressConflict,
    ];
}

/// Written as its code (`PoolExhausted`), as in conditions and events.
impl serde::Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What every surface says about a group name defined in several namespaces (the allocator's condition
/// on Services and on the groups, `explain`, `validate`).
pub fn duplicate_group_message(name: &str, namespaces: &[String]) -> String {
    format!(
        "ServiceGroup {name:?} is defined in namespaces {}; group names must be unique across the cluster, delete or rename all but one",
        namespaces.join(", ")
    )
}

/// How an address was chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum How {
    /// The lowest free address of the group's first pool of that family with room.
    LowestFree,
    /// Asked for by the Service.
    Requested(RequestSource),
    /// Shared with Services holding it under the same key, on other ports.
    Shared {
        /// The sharing key.
        key: String,
        /// The other holders.
        with: Vec<ServiceKey>,
    },
    /// Already held by this Service and still right for it.
    Kept,
}

impl fmt::Display for How {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LowestFree => f.write_str("lowest free address"),
            Self::Requested(source) => write!(f, "requested by {source}"),
            Self::Shared { key, with } => {
                let with: Vec<String> = with.iter().map(ToString::to_string).collect();
                write!(f, "shared under key {key:?} with {}", with.join(", "))
            }
            Self::Kept => f.write_str("already held"),
        }
    }
}

/// One address of a decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// The address.
    pub address: IpAddr,
    /// The group it belongs to (`purelb.io/allocated-from`).
    pub group: GroupKey,
    /// The pool it lies in, as written in the group.
    pub pool: String,
    /// Why this address.
    pub how: How,
}

/// Why a Service gets no (new) address: a stable code and a message naming the facts and the fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The reason code.
    pub reason: Reason,
    /// What failed, on which object, and what to change.
    pub message: String,
}

/// A candidate (group, pool or address) that was considered and turned down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// What was considered, e.g. `pool 192.0.2.200-192.0.2.220 of group localaddr`.
    pub what: String,
    /// Why it was turned down.
    pub why: String,
}

/// The allocator's answer for one Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The Service.
    pub key: ServiceKey,
    /// The group the Service asks for (its annotation, or `default`).
    pub asked_group: GroupKey,
    /// The addresses it should hold (in `ipFamilies` order), or why it cannot.
    pub outcome: Result<Vec<Assignment>, Failure>,
    /// On failure: addresses the Service already holds and keeps (a failed change never takes away a
    /// working address).
    pub kept: Vec<IpAddr>,
    /// The steps taken, in plain words, for `explain` and the condition message.
    pub trace: Vec<String>,
    /// What was considered and turned down.
    pub rejected: Vec<Candidate>,
}

impl Decision {
    /// The group the addresses came from (`purelb.io/allocated-from`): the one the Service asks for
    /// when any address came from it (a requested address may lie in another group), else the first
    /// address's. Whether an address held after an edit of that group is kept depends on this.
    pub fn group(&self) -> Option<&GroupKey> {
        let assignments = self.outcome.as_ref().ok()?;
        assignments
            .iter()
            .find(|a| a.group == self.asked_group)
            .or_else(|| assignments.first())
            .map(|a| &a.group)
    }

    /// The addresses, in order (empty on failure).
    pub fn addresses(&self) -> Vec<IpAddr> {
        self.outcome.as_ref().map(|a| a.iter().map(|a| a.address).collect()).unwrap_or_default()
    }

    /// The condition reason: `Allocated` or the failure's code.
    pub fn reason(&self) -> Reason {
        match &self.outcome {
            Ok(_) => Reason::Allocated,
            Err(f) => f.reason,
        }
    }

    /// The condition message: one line a user can act on.
    pub fn message(&self) -> String {
        match &self.outcome {
            Ok(assignments) => assignments
                .iter()
                .map(|a| format!("{} from pool {} ({}; {})", a.address, a.group, a.pool, a.how))
                .collect::<Vec<_>>()
                .join("; "),
            Err(f) if self.kept.is_empty() => f.message.clone(),
            Err(f) => {
                let kept: Vec<String> = self.kept.iter().map(ToString::to_string).collect();
                format!("keeps {}; the change was refused: {}", kept.join(", "), f.message)
            }
        }
    }
}
