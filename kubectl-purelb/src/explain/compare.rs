//! Where the record and the replay disagree, why a Service is pending, and what to change for each
//! reason code ([`fix_for`]: an exhaustive match on core's `Reason`).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Service;
use purelb_core::allocate::{GroupState, Reason};
use purelb_core::announce::report::ServiceReport;
use purelb_core::api::{annotations, conditions};

use super::allocation::Allocation;
use super::placement::Agents;
use super::report::{ConditionReport, ExpectedReport, Pending, Recorded, Replay};

/// Where what the allocator recorded disagrees with what core decides now.
pub(super) fn allocation_disagreements(
    ours: bool,
    ours_why: &str,
    recorded: &Recorded,
    alloc: &Allocation,
) -> Vec<String> {
    let replay = &alloc.replay;
    let replay_index = &alloc.replay_index;
    let has_ingress = !recorded.ingress.is_empty();
    let mut disagreements = Vec::new();
    if ours {
        if let Some(c) = &recorded.allocated
            && c.reason != replay.reason.as_str()
        {
            disagreements.push(format!(
                    "the allocator recorded {} ({}) but purelb-core decides {} now ({}){}",
                    c.reason,
                    c.status,
                    replay.reason,
                    replay.message,
                    if replay.reason == Reason::Allocated {
                        "; the allocator retries when a group or Service changes — if this stays, check that it runs (kubectl purelb status)"
                    } else {
                        ""
                    }
                ));
        }
        if replay.reason == Reason::Allocated && has_ingress && replay.addresses != recorded.ingress {
            disagreements.push(format!(
                "status.loadBalancer.ingress is {} but purelb-core gives {} now",
                recorded.ingress.join(", "),
                replay.addresses.join(", ")
            ));
        }
        // The allocator records addresses under the group written on the Service; a record naming a
        // group that does not hold them while another does is a disagreement.
        let holds = |group: &str, ip: std::net::IpAddr| {
            matches!(replay_index.group(group),
                Some(GroupState::Usable(slots)) if slots.iter().any(|s| s.pool.contains(ip)))
        };
        let first: Option<std::net::IpAddr> = replay.addresses.first().and_then(|a| a.parse().ok());
        let lies_in =
            first.and_then(|ip| replay_index.group_names().find(|g| holds(g, ip)).map(str::to_string));
        if let (Some(rec), Some(now), Some(ip)) = (&recorded.allocated_from, &lies_in, first)
            && rec != now
            && !holds(rec, ip)
        {
            disagreements.push(format!(
                "annotation {} says {rec} but the addresses belong to group {now} now",
                annotations::ALLOCATED_FROM
            ));
        }
        if has_ingress && recorded.allocated_from.is_none() {
            disagreements.push(format!(
                "the Service has addresses but no {} annotation: PureLB did not write them (another controller, or a hand edit)",
                annotations::ALLOCATED_FROM
            ));
        }
    } else if recorded.allocated_by.is_some() || recorded.allocated.is_some() {
        disagreements.push(format!(
            "PureLB's annotations or condition are still on a Service that is not PureLB's ({ours_why}); the allocator removes them when it runs"
        ));
    }
    disagreements
}

/// Where what the agents wrote disagrees with what the reporting agent must write (core's report, as
/// that agent computes it); and that report.
pub(super) fn report_disagreements(
    ours: bool,
    svc: &Service,
    agents: &Agents,
) -> (Vec<String>, ExpectedReport) {
    let mut disagreements = Vec::new();
    // What the agents should have written (core's report, as the reporting agent computes it) against
    // what they wrote.
    let expected = agents.expected();
    let observed = ServiceReport::observed(svc);
    let reporter = agents.reporter();
    let who = match &reporter {
        Some(r) => format!("the agent on {r} reports this Service: is it running?"),
        None => "no node is live to report it".to_string(),
    };
    if ours || !observed.is_empty() {
        let keys: BTreeSet<&String> =
            expected.annotations.keys().chain(observed.annotations.keys()).collect();
        for key in keys {
            match (expected.annotations.get(key), observed.annotations.get(key)) {
                (Some(e), Some(o)) if e == o => {}
                (Some(e), Some(o)) => disagreements.push(format!(
                    "the agents report {key}: {o} but the plan from the Leases read now gives {e} (a stale annotation, or the Leases changed since)"
                )),
                (Some(e), None) => disagreements.push(format!("{key} should be {e:?} but no agent has written it; {who}")),
                (None, Some(o)) => disagreements.push(format!(
                    "{key}: {o} is set but no node announces that family's address on its LAN now (stale)"
                )),
                (None, None) => {}
            }
        }
        match (&expected.condition, &observed.condition) {
            (Some(e), Some(o)) if e.status == o.status && e.reason == o.reason && e.message == o.message => {}
            (Some(e), Some(o)) => disagreements.push(format!(
                "the agents report {} {} ({}) but the plan from the Leases read now gives {} ({})",
                conditions::ANNOUNCED,
                o.reason,
                o.message,
                e.reason,
                e.message
            )),
            (Some(e), None) => disagreements.push(format!(
                "{} is not set (it should say {}: {}); {who}",
                conditions::ANNOUNCED,
                e.reason,
                e.message
            )),
            (None, Some(o)) => disagreements.push(format!(
                "{} says {} ({}) but the Service has no address to announce (stale)",
                conditions::ANNOUNCED,
                o.reason,
                o.message
            )),
            (None, None) => {}
        }
    }
    let expected_report = ExpectedReport {
        reporter,
        annotations: expected.annotations.clone(),
        announced: expected.condition.as_ref().map(|c| ConditionReport {
            status: if c.status { "True".into() } else { "False".into() },
            reason: c.reason.clone(),
            message: c.message.clone(),
            last_transition_time: String::new(),
        }),
    };

    (disagreements, expected_report)
}

/// Why a PureLB Service without an address has none, and what to change.
pub(super) fn pending(ours: bool, recorded: &Recorded, replay: &Replay) -> Option<Pending> {
    let ingress_empty = recorded.ingress.is_empty();
    if ours && ingress_empty {
        Some(match &recorded.allocated {
            Some(c) => {
                Pending { reason: c.reason.clone(), message: c.message.clone(), fix: fix_for(&c.reason) }
            }
            None => Pending {
                reason: crate::facts::NOT_SEEN.into(),
                message: format!(
                    "no {} condition: the allocator has not written this Service (is it running? kubectl purelb status). purelb-core would decide {}: {}",
                    conditions::ALLOCATED,
                    replay.reason,
                    replay.message
                ),
                fix: if replay.reason == Reason::Allocated {
                    "start the allocator (kubectl purelb install; kubectl purelb status)".into()
                } else {
                    fix(replay.reason).into()
                },
            },
        })
    } else {
        None
    }
}

/// What to do about a condition's reason code; a code that is not one of ours gets "see the message".
pub fn fix_for(reason: &str) -> String {
    Reason::parse(reason).map_or("see the message", fix).into()
}

/// What to do about each reason: an exhaustive match, so a new reason cannot go without advice.
fn fix(reason: Reason) -> &'static str {
    match reason {
        Reason::Allocated => "nothing: the Service holds its addresses",
        Reason::NoServiceGroup => {
            "create the group (kubectl purelb sg create NAME) or set purelb.io/service-group to an existing one (kubectl purelb sg list)"
        }
        Reason::DuplicateServiceGroup => {
            "delete or rename all but one of the ServiceGroups with that name (kubectl purelb validate shows where they are)"
        }
        Reason::InvalidServiceGroup => "fix the group's pools (kubectl purelb validate names the field)",
        Reason::PoolExhausted => {
            "free an address (delete a Service of the group) or add a pool to the group (kubectl purelb pools shows usage)"
        }
        Reason::AddressInUse => {
            "request another address, or set the same purelb.io/allow-shared-ip key on both Services (with different ports)"
        }
        Reason::AddressNotInAnyGroup => {
            "request an address inside a pool (kubectl purelb pools), or add a pool that contains it"
        }
        Reason::SharingConflict => {
            "use the key the address is held under, or a port the other Services do not use"
        }
        Reason::SharingRefusedWithLocalPolicy => {
            "remove purelb.io/allow-shared-ip or use externalTrafficPolicy: Cluster"
        }
        Reason::FamilyUnavailable => {
            "add a pool of that family to the group, or change spec.ipFamilies / ipFamilyPolicy"
        }
        Reason::InvalidRequest => "correct the annotation or field the message names",
        Reason::AddressConflict => "change or delete one of the Services that claim the address",
    }
}
