//! The allocator's side of an explanation: whether the Service is PureLB's and why, the allocator's own
//! steps replayed (core's `allocate::reconcile` on the index the allocator would rebuild), the group it
//! allocates from, and how each address was chosen.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use purelb_core::allocate::{
    AllocationIndex, Decision, GroupSource, GroupState, How, Outcome, Ownership, ServiceKey, ServiceRequest,
    ownership, reconcile,
};
use purelb_core::api::{LOAD_BALANCER_CLASS, annotations};

use super::join;
use super::report::{Candidate, GroupReport, Holder, Recorded, Replay};
use crate::facts;
use crate::snapshot::Snapshot;

/// Whether PureLB handles a Service, and why, in words.
pub(super) struct OwnershipWhy {
    pub ours: bool,
    pub why: String,
}

/// Whether PureLB handles `svc` (core's [`ownership`]), and why.
pub(super) fn ownership_why(svc: &Service, classless_ours: bool) -> OwnershipWhy {
    let spec = svc.spec.clone().unwrap_or_default();
    let owned = ownership(svc, classless_ours);
    let ours = owned == Ownership::Ours;
    let why = match owned {
        Ownership::Ours => match spec.load_balancer_class.as_deref() {
            Some(c) => format!("type LoadBalancer with loadBalancerClass {c}"),
            None => format!(
                "type LoadBalancer without a loadBalancerClass: class-less Services are PureLB's by default (unless the allocator runs with --ignore-classless); {LOAD_BALANCER_CLASS} would make it explicit"
            ),
        },
        Ownership::NotLoadBalancer => format!(
            "spec.type is {}, not LoadBalancer: PureLB gives it nothing",
            spec.type_.as_deref().unwrap_or("ClusterIP")
        ),
        Ownership::OtherClass(Some(c)) => {
            format!(
                "loadBalancerClass {c} belongs to another controller; PureLB answers to {LOAD_BALANCER_CLASS}"
            )
        }
        Ownership::OtherClass(None) => {
            "class-less, and class-less Services are not PureLB's here".to_string()
        }
    };
    OwnershipWhy { ours, why }
}

/// The allocator's decision for one Service, replayed.
pub(super) struct Allocation {
    /// The Service.
    key: ServiceKey,
    /// The index as the allocator rebuilds it from every Service.
    index: AllocationIndex,
    /// The same after the replayed reconcile.
    pub replay_index: AllocationIndex,
    /// The request, as far as it can be read.
    request: ServiceRequest,
    /// Core's decision, when it decided.
    decision: Option<Decision>,
    /// The decision it would get if it held nothing yet (how each address would be chosen).
    fresh: Option<Decision>,
    /// The replay in the explanation's words.
    pub replay: Replay,
}

/// How one address came to the Service.
pub(super) struct Origin {
    pub group: Option<String>,
    pub pool: Option<String>,
    /// `lowestFree`, `requested`, `shared` or `kept`.
    pub how: &'static str,
    pub why: String,
    pub sharing_key: Option<String>,
    pub shared_with: Vec<Holder>,
}

/// Replays the allocator's steps for `svc` (core's `reconcile`) on a copy of the index it would rebuild.
pub(super) fn replay(snap: &Snapshot, svc: &Service) -> Allocation {
    let key = ServiceKey::of(svc);
    let (index, _) = facts::rebuild_index(&snap.groups, &snap.services, snap.classless_ours, None);
    let (fresh_index, _) =
        facts::rebuild_index(&snap.groups, &snap.services, snap.classless_ours, Some(&key));
    let mut replay_index = index.clone();
    let outcome = reconcile(&mut replay_index, svc);
    let request = outcome.request().clone();
    let decision = outcome.decision().cloned();
    let c = outcome.condition();
    let addresses: Vec<IpAddr> = match &outcome {
        Outcome::InvalidRequest { kept, .. } => {
            kept.as_ref().map(|h| h.addresses.clone()).unwrap_or_default()
        }
        Outcome::Conflict { .. } => vec![],
        Outcome::Decided { decision, .. } => decision.addresses(),
    };
    let replay = Replay {
        reason: c.reason,
        message: c.message.clone(),
        addresses: addresses.iter().map(ToString::to_string).collect(),
        group: decision.as_ref().and_then(|d| d.group()).map(ToString::to_string),
        trace: decision.as_ref().map(|d| d.trace.clone()).unwrap_or_default(),
        rejected: decision
            .as_ref()
            .map(|d| {
                d.rejected.iter().map(|c| Candidate { what: c.what.clone(), why: c.why.clone() }).collect()
            })
            .unwrap_or_default(),
    };
    let fresh = match &outcome {
        Outcome::InvalidRequest { .. } => None,
        _ => Some(fresh_index.decide(&request)),
    };
    Allocation { key, index, replay_index, request, decision, fresh, replay }
}

// === impl Allocation ===

impl Allocation {
    /// The group the Service allocates from, why that one, and whether it can be used.
    pub fn group(&self) -> GroupReport {
        let name = self.request.group.to_string();
        let (source, why) = match self.request.group_source {
            GroupSource::Annotation => {
                ("annotation", format!("annotation {}: {name}", annotations::SERVICE_GROUP))
            }
            GroupSource::Default => {
                ("default", format!("no {} annotation: the group named {name}", annotations::SERVICE_GROUP))
            }
        };
        let defined_in: Vec<String> = self.index.group_namespaces(name.as_str()).into_iter().collect();
        let (state, pools, problem) = match self.index.group(name.as_str()) {
            None => ("missing", vec![], Some(format!("no ServiceGroup is named {name}"))),
            Some(GroupState::Usable(slots)) => (
                "usable",
                slots.iter().map(|s| format!("{} ({})", s.pool.config().range, s.field)).collect(),
                None,
            ),
            Some(state @ GroupState::Invalid(_)) => ("invalid", vec![], Some(state.condition(&name).message)),
            Some(state @ GroupState::Duplicate(_)) => {
                ("duplicate", vec![], Some(state.condition(&name).message))
            }
        };
        GroupReport { name, source: source.into(), why, defined_in, state: state.into(), pools, problem }
    }

    /// How `ip` came to the Service: its group and pool, how it was chosen, and who shares it.
    pub fn origin(&self, ip: IpAddr, recorded: &Recorded) -> Origin {
        let assigned = |d: &Option<Decision>| {
            d.as_ref()
                .and_then(|d| d.outcome.as_ref().ok())
                .and_then(|a| a.iter().find(|a| a.address == ip))
                .cloned()
        };
        let assignment = assigned(&self.decision);
        let fresh_assignment = assigned(&self.fresh);
        let holding = self.index.holding(ip);
        let shared_with: Vec<Holder> = holding
            .map(|h| {
                h.holders
                    .iter()
                    .filter(|(k, _)| **k != self.key)
                    .map(|(k, info)| Holder {
                        service: k.to_string(),
                        ports: info.ports.iter().map(ToString::to_string).collect(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let sharing_key = holding.and_then(|h| h.sharing_key.clone());
        let (how, why) = match (fresh_assignment.as_ref().map(|a| &a.how), assignment.as_ref().map(|a| &a.how)) {
            (Some(How::LowestFree), _) => (
                "lowestFree",
                "the lowest free address of the group's first pool with room (every lower address is held by another Service)".to_string(),
            ),
            (Some(How::Requested(source)), _) => ("requested", format!("requested by {source}")),
            (Some(How::Shared { key, with }), _) | (_, Some(How::Shared { key, with })) => {
                ("shared", format!("shared under sharing key {key:?} with {}", join(with)))
            }
            _ => (
                "kept",
                match recorded.allocated.as_ref().filter(|c| c.status == "True") {
                    Some(c) => format!(
                        "held since it was allocated, and the allocator keeps a working address; it was recorded as: {}",
                        c.message
                    ),
                    None => "held since it was allocated; the allocator keeps a working address".to_string(),
                },
            ),
        };
        let group = assignment
            .as_ref()
            .map(|a| a.group.to_string())
            .or_else(|| self.index.held(&self.key).and_then(|h| h.group.as_ref()).map(ToString::to_string));
        let pool = assignment.map(|a| a.pool).filter(|p| !p.is_empty());
        Origin { group, pool, how, why, sharing_key, shared_with }
    }
}
