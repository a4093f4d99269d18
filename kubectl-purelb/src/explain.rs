//! `explain`: why a Service has the group, addresses, nodes and interfaces it has — or why it has none.
//!
//! Two sources, shown side by side and compared:
//! - what was recorded: `status.loadBalancer.ingress`, the `purelb.io/*` annotations, the conditions
//!   `purelb.io/Allocated` (allocator) and `purelb.io/Announced` (agents);
//! - what purelb-core decides now from the same objects: the allocator's index rebuilt as the allocator
//!   rebuilds it ([`crate::facts::rebuild_index`]), then `AllocationIndex::decide`; node facts from the
//!   agents' Leases, then `announce::plan_for_node` for every node.
//!
//! Nothing here decides: every verdict is core's, every sentence names the facts it rests on.
//! [`explain`] builds the structured [`Explanation`] (printed as JSON/YAML as is); [`render`] writes it in
//! plain words.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use purelb_core::allocate::{
    Decision, GroupSource, GroupState, How, Outcome, Ownership, Reason, ServiceKey, ownership, reconcile,
};
use purelb_core::announce::Placement;
use purelb_core::announce::facts as announce_facts;
use purelb_core::announce::report as announce_report;
use purelb_core::announce::view::{NodeContext, NodeView, node_view};
use purelb_core::api::{ALLOCATED_BY_VALUE, LOAD_BALANCER_CLASS, annotations, conditions};
use purelb_core::pool::Family;
use serde::Serialize;

use crate::facts::{self, LbnaSettings, NodeReport};
use crate::snapshot::{Snapshot, Source};
use crate::style::{bad, bold, dim, good, warn};

/// Why a Service cannot be explained.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("Service {key} not found{}", if .others.is_empty() { String::new() } else { format!(" (Services there: {})", .others.join(", ")) })]
    NotFound { key: ServiceKey, others: Vec<String> },
    #[error("the files hold no Service to explain")]
    NoService,
    #[error("the files hold several Services ({0}); name the one to explain")]
    Ambiguous(String),
}

/// Everything `explain` knows about one Service.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    /// `namespace/name`.
    pub service: String,
    /// `cluster` or `files`.
    pub source: String,
    /// Whether PureLB handles it, and why.
    pub ours: bool,
    pub ours_why: String,
    /// The group it allocates from, and why.
    pub group: GroupReport,
    /// What the allocator and the agents wrote.
    pub recorded: Recorded,
    /// What purelb-core decides now from the same objects.
    pub replay: Replay,
    /// Each address the Service holds: why it, and where it is announced.
    pub addresses: Vec<AddressReport>,
    /// `spec.externalTrafficPolicy`.
    pub external_traffic_policy: String,
    /// For `Local`: the nodes with a ready endpoint (EndpointSlices).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_nodes: Option<Vec<String>>,
    /// The agents' settings used (LBNodeAgent).
    pub agent_settings: LbnaSettings,
    /// What the agents should have written, from core's report on the Leases read now.
    pub agents_should_report: ExpectedReport,
    /// Every node and whether it can announce.
    pub nodes: Vec<NodeReport>,
    /// Why it has no address, and what to change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
    /// Where the record and the replay disagree.
    pub disagreements: Vec<String>,
    /// What this reading cannot know.
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupReport {
    /// The group's name.
    pub name: String,
    /// `annotation` or `default`.
    pub source: String,
    /// Why this group.
    pub why: String,
    /// Namespaces that define it.
    pub defined_in: Vec<String>,
    /// `usable`, `invalid`, `duplicate` or `missing`.
    pub state: String,
    /// Its pools, as `range (field)`.
    pub pools: Vec<String>,
    /// Why it cannot be used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ConditionReport {
    pub status: String,
    pub reason: String,
    pub message: String,
    pub last_transition_time: String,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Recorded {
    pub ingress: Vec<String>,
    pub allocated_by: Option<String>,
    pub allocated_from: Option<String>,
    pub announcing_ipv4: Option<String>,
    pub announcing_ipv6: Option<String>,
    /// `purelb.io/Allocated`.
    pub allocated: Option<ConditionReport>,
    /// `purelb.io/Announced`.
    pub announced: Option<ConditionReport>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    pub what: String,
    pub why: String,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Replay {
    /// The reason code core gives now.
    pub reason: String,
    /// Its message.
    pub message: String,
    /// The addresses core gives now.
    pub addresses: Vec<String>,
    /// The group they come from.
    pub group: Option<String>,
    /// Core's steps.
    pub trace: Vec<String>,
    /// What core considered and turned down.
    pub rejected: Vec<Candidate>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Holder {
    pub service: String,
    pub ports: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodePlacement {
    pub node: String,
    /// `local`, `nonLocal` or `absent`.
    pub placement: String,
    pub interface: Option<String>,
    pub prefix_len: Option<u8>,
    pub reasons: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ElectionCandidate {
    pub node: String,
    pub eligible: bool,
    pub why: String,
    pub hash: String,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AddressReport {
    pub address: String,
    pub family: String,
    pub group: Option<String>,
    pub pool: Option<String>,
    /// `lowestFree`, `requested`, `shared` or `kept`.
    pub how: String,
    /// Why this address, in words.
    pub why: String,
    /// The sharing key it is held under.
    pub sharing_key: Option<String>,
    /// The other Services holding it.
    pub shared_with: Vec<Holder>,
    /// Whether it lies in a node's LAN subnet.
    pub local: bool,
    /// The nodes whose LAN subnets hold it (live or not).
    pub lan_nodes: Vec<String>,
    /// The nodes that add it, with the interface and prefix length.
    pub announced_by: Vec<String>,
    /// For a local address: the election, winner first.
    pub election: Option<Vec<ElectionCandidate>>,
    pub winner: Option<String>,
    /// Local address with externalTrafficPolicy: Local: the agent resets it to Cluster.
    pub reset_traffic_policy: bool,
    /// What the agents report for it (`purelb.io/announcing-IPvN`), for a local address.
    pub agents_report: Option<String>,
    /// Every node's placement and reasons.
    pub per_node: Vec<NodePlacement>,
}

/// The agent-written fields core computes for the Service, and the node that writes them.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExpectedReport {
    /// The node whose agent writes them.
    pub reporter: Option<String>,
    /// `purelb.io/announcing-IPv4` / `-IPv6`.
    pub annotations: std::collections::BTreeMap<String, String>,
    /// `purelb.io/Announced` (without a transition time).
    pub announced: Option<ConditionReport>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    /// The condition's reason code (or core's, when there is no condition).
    pub reason: String,
    /// The condition's message.
    pub message: String,
    /// What to change.
    pub fix: String,
}

/// The Service `key` of the snapshot, or the only Service in it when `key` is None.
pub fn find_target<'a>(snap: &'a Snapshot, key: Option<&ServiceKey>) -> Result<&'a Service, ExplainError> {
    match key {
        Some(key) => snap.services.iter().find(|s| ServiceKey::of(s) == *key).ok_or_else(|| {
            let others = snap
                .services
                .iter()
                .filter(|s| s.namespace().as_deref() == Some(key.namespace.as_str()))
                .filter(|s| ownership(s, true) == Ownership::Ours)
                .map(|s| s.name_any())
                .take(10)
                .collect();
            ExplainError::NotFound { key: key.clone(), others }
        }),
        None => match snap.services.as_slice() {
            [] => Err(ExplainError::NoService),
            [one] => Ok(one),
            many => Err(ExplainError::Ambiguous(
                many.iter().map(|s| ServiceKey::of(s).to_string()).collect::<Vec<_>>().join(", "),
            )),
        },
    }
}

fn condition(svc: &Service, type_: &str) -> Option<ConditionReport> {
    let c: &Condition = svc.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)?;
    Some(ConditionReport {
        status: c.status.clone(),
        reason: c.reason.clone(),
        message: c.message.clone(),
        last_transition_time: c.last_transition_time.0.to_string(),
    })
}

/// Explains `svc` from the snapshot.
pub fn explain(snap: &Snapshot, svc: &Service) -> Explanation {
    let key = ServiceKey::of(svc);
    let ann = |k: &str| facts::annotation(svc, k).map(str::to_string);
    let spec = svc.spec.clone().unwrap_or_default();
    let etp = spec.external_traffic_policy.clone().unwrap_or_else(|| "Cluster".into());
    let ingress = facts::ingress_ips(svc);
    let recorded = Recorded {
        ingress: ingress.iter().map(ToString::to_string).collect(),
        allocated_by: ann(annotations::ALLOCATED_BY),
        allocated_from: ann(annotations::ALLOCATED_FROM),
        announcing_ipv4: ann(annotations::ANNOUNCING_IPV4),
        announcing_ipv6: ann(annotations::ANNOUNCING_IPV6),
        allocated: condition(svc, conditions::ALLOCATED),
        announced: condition(svc, conditions::ANNOUNCED),
    };
    let (ours, ours_why) = match ownership(svc, snap.classless_ours) {
        Ownership::Ours => (
            true,
            match spec.load_balancer_class.as_deref() {
                Some(c) => format!("type LoadBalancer with loadBalancerClass {c}"),
                None => format!(
                    "type LoadBalancer without a loadBalancerClass: class-less Services are PureLB's by default (unless the allocator runs with --ignore-classless); {LOAD_BALANCER_CLASS} would make it explicit"
                ),
            },
        ),
        Ownership::NotLoadBalancer => (
            false,
            format!(
                "spec.type is {}, not LoadBalancer: PureLB gives it nothing",
                spec.type_.as_deref().unwrap_or("ClusterIP")
            ),
        ),
        Ownership::OtherClass(c) => (
            false,
            match c {
                Some(c) => format!(
                    "loadBalancerClass {c} belongs to another controller; PureLB answers to {LOAD_BALANCER_CLASS}"
                ),
                None => "class-less, and class-less Services are not PureLB's here".to_string(),
            },
        ),
    };

    // === the allocator's decision, replayed ===
    let (index, _) = facts::rebuild_index(&snap.groups, &snap.services, snap.classless_ours, None);
    let (fresh_index, _) =
        facts::rebuild_index(&snap.groups, &snap.services, snap.classless_ours, Some(&key));
    // The allocator's own steps (core's `reconcile`), on a copy of the index as it would rebuild it.
    let mut replay_index = index.clone();
    let outcome = reconcile(&mut replay_index, svc);
    let req = outcome.request().clone();
    let decision: Option<Decision> = outcome.decision().cloned();
    let replay = {
        let c = outcome.condition();
        let addresses: Vec<IpAddr> = match &outcome {
            Outcome::InvalidRequest { kept, .. } => {
                kept.as_ref().map(|h| h.addresses.clone()).unwrap_or_default()
            }
            Outcome::Conflict { .. } => vec![],
            Outcome::Decided { decision, .. } => decision.addresses(),
        };
        Replay {
            reason: c.reason.as_str().into(),
            message: c.message.clone(),
            addresses: addresses.iter().map(ToString::to_string).collect(),
            group: decision.as_ref().and_then(|d| d.group()).map(str::to_string),
            trace: decision.as_ref().map(|d| d.trace.clone()).unwrap_or_default(),
            rejected: decision
                .as_ref()
                .map(|d| {
                    d.rejected
                        .iter()
                        .map(|c| Candidate { what: c.what.clone(), why: c.why.clone() })
                        .collect()
                })
                .unwrap_or_default(),
        }
    };
    // The decision a Service would get if it held nothing yet (how each address would be chosen).
    let fresh = match &outcome {
        Outcome::InvalidRequest { .. } => None,
        _ => Some(fresh_index.decide(&req)),
    };

    // === the group ===
    let group = {
        let name = req.group.clone();
        let (source, why) = match req.group_source {
            GroupSource::Annotation => {
                ("annotation", format!("annotation {}: {name}", annotations::SERVICE_GROUP))
            }
            GroupSource::Default => {
                ("default", format!("no {} annotation: the group named {name}", annotations::SERVICE_GROUP))
            }
        };
        let defined_in: Vec<String> = index.group_namespaces(&name).into_iter().collect();
        let (state, pools, problem) = match index.group(&name) {
            None => ("missing", vec![], Some(format!("no ServiceGroup is named {name}"))),
            Some(GroupState::Usable(slots)) => (
                "usable",
                slots.iter().map(|s| format!("{} ({})", s.pool.config().range, s.field)).collect(),
                None,
            ),
            Some(GroupState::Invalid(why)) => ("invalid", vec![], Some(why.clone())),
            Some(GroupState::Duplicate(nss)) => {
                ("duplicate", vec![], Some(purelb_core::allocate::duplicate_group_message(&name, nss)))
            }
        };
        GroupReport { name, source: source.into(), why, defined_in, state: state.into(), pools, problem }
    };

    // === where each address goes ===
    let (node_facts, node_reports) =
        facts::node_facts(&snap.nodes, &snap.leases, &snap.declared_nodes, snap.now);
    let settings = LbnaSettings::select(&snap.agents, &snap.install_namespace);
    // The agent's own inputs, computed by the same core functions it uses.
    let pools = announce_facts::pools(&snap.groups);
    let endpoints = announce_facts::endpoint_nodes(&snap.slices);
    let incumbents = announce_facts::incumbents(&snap.services);
    // The Service's facts as the agents read them (for showing the ETP node set and the reporter).
    let svc_facts = announce_facts::service_facts(svc, &endpoints, &incumbents);
    let local_policy = svc_facts.local_traffic_policy;
    let endpoint_nodes = svc_facts.endpoint_nodes.clone();
    // Each node's answer, from the function its agent calls (`node_view`: the is-ours rule, the plan and
    // the report). This machine cannot see a node's kernel (connected subnets) or the addresses it
    // yielded after a conflict: those are the agent's own.
    let no_yield = BTreeSet::new();
    let views: Vec<(String, NodeView)> = node_facts
        .iter()
        .map(|n| {
            let ctx = NodeContext {
                me: &n.name,
                nodes: &node_facts,
                pools: &pools,
                extlbint: &settings.extlbint,
                connected: None,
                yielded: &no_yield,
            };
            (n.name.clone(), node_view(&ctx, svc, &endpoints, &incumbents))
        })
        .collect();
    let announced_by_agents = views.iter().any(|(_, v)| v.ours);
    let plans: Vec<(&String, &Vec<purelb_core::announce::AddressPlan>)> =
        views.iter().map(|(n, v)| (n, &v.plans)).collect();

    let mut addresses = Vec::new();
    for (i, ip) in ingress.iter().enumerate() {
        let family = Family::of(*ip);
        let assignment = decision
            .as_ref()
            .and_then(|d| d.outcome.as_ref().ok())
            .and_then(|a| a.iter().find(|a| a.address == *ip));
        let fresh_assignment = fresh
            .as_ref()
            .and_then(|d| d.outcome.as_ref().ok())
            .and_then(|a| a.iter().find(|a| a.address == *ip));
        let holding = index.holding(*ip);
        let shared_with: Vec<Holder> = holding
            .map(|h| {
                h.holders
                    .iter()
                    .filter(|(k, _)| **k != key)
                    .map(|(k, info)| Holder {
                        service: k.to_string(),
                        ports: info.ports.iter().map(ToString::to_string).collect(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let sharing_key = holding.and_then(|h| h.sharing_key.clone());
        let (how, why) = match (fresh_assignment.map(|a| &a.how), assignment.map(|a| &a.how)) {
            (Some(How::LowestFree), _) => (
                "lowestFree",
                "the lowest free address of the group's first pool with room (every lower address is held by another Service)".to_string(),
            ),
            (Some(How::Requested(source)), _) => ("requested", format!("requested by {source}")),
            (Some(How::Shared { key, with }), _) => {
                ("shared", format!("shared under sharing key {key:?} with {}", join(with)))
            }
            (_, Some(How::Shared { key, with })) => {
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
        let group_name = assignment
            .map(|a| a.group.clone())
            .or_else(|| index.held(&key).map(|h| h.group.clone()).filter(|g| !g.is_empty()));
        let pool = assignment.map(|a| a.pool.clone()).filter(|p| !p.is_empty());

        let mut per_node = Vec::new();
        let mut announced_by = Vec::new();
        let mut election = None;
        let mut winner = None;
        let mut reset = false;
        for &(node, node_plans) in &plans {
            let Some(plan) = node_plans.get(i) else { continue };
            if election.is_none()
                && let Some(e) = &plan.election
            {
                winner = e.winner.clone();
                election = Some(
                    e.candidates
                        .iter()
                        .map(|c| ElectionCandidate {
                            node: c.node.clone(),
                            eligible: c.eligible,
                            why: c.why.clone(),
                            hash: c.hash.clone(),
                        })
                        .collect::<Vec<_>>(),
                );
            }
            reset |= plan.reset_traffic_policy;
            let (placement, interface, prefix_len) = match &plan.placement {
                Placement::Local { interface, prefix_len } => {
                    ("local", Some(interface.clone()), Some(*prefix_len))
                }
                Placement::NonLocal { interface, prefix_len } => {
                    ("nonLocal", Some(interface.clone()), Some(*prefix_len))
                }
                Placement::Absent => ("absent", None, None),
            };
            if let (Some(ifname), Some(len)) = (&interface, prefix_len) {
                announced_by.push(format!("{node} on {ifname} as {ip}/{len}"));
            }
            per_node.push(NodePlacement {
                node: node.clone(),
                placement: placement.into(),
                interface,
                prefix_len,
                reasons: plan.reasons.clone(),
            });
        }
        let local = election.is_some();
        let lan_nodes: Vec<String> = node_facts
            .iter()
            .filter(|n| n.subnets.iter().any(|s| s.contains(*ip)))
            .map(|n| format!("{} ({})", n.name, n.interface))
            .collect();
        let agents_report = match family {
            Family::V4 => recorded.announcing_ipv4.clone(),
            Family::V6 => recorded.announcing_ipv6.clone(),
        };
        addresses.push(AddressReport {
            address: ip.to_string(),
            family: family.to_string(),
            group: group_name,
            pool,
            how: how.into(),
            why,
            sharing_key,
            shared_with,
            local,
            lan_nodes,
            announced_by,
            election,
            winner,
            reset_traffic_policy: reset,
            agents_report,
            per_node,
        });
    }

    // === disagreements ===
    let mut disagreements = Vec::new();
    if ours {
        if let Some(c) = &recorded.allocated
            && c.reason != replay.reason
        {
            disagreements.push(format!(
                    "the allocator recorded {} ({}) but purelb-core decides {} now ({}){}",
                    c.reason,
                    c.status,
                    replay.reason,
                    replay.message,
                    if replay.reason == Reason::Allocated.as_str() {
                        "; the allocator retries when a group or Service changes — if this stays, check that it runs (kubectl purelb status)"
                    } else {
                        ""
                    }
                ));
        }
        if replay.reason == Reason::Allocated.as_str()
            && !ingress.is_empty()
            && replay.addresses != recorded.ingress
        {
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
                Some(purelb_core::allocate::GroupState::Usable(slots)) if slots.iter().any(|s| s.pool.contains(ip)))
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
        if !ingress.is_empty() && recorded.allocated_from.is_none() {
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
    // What the agents should have written (core's report, as the reporting agent computes it) against
    // what they wrote.
    let expected = views.iter().find_map(|(_, v)| v.report.clone()).unwrap_or_default();
    let observed = announce_report::ServiceReport::observed(svc);
    let reporter = announce_report::reporter(&svc_facts, &node_facts);
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

    // === pending ===
    let pending = if ours && ingress.is_empty() {
        Some(match &recorded.allocated {
            Some(c) => {
                Pending { reason: c.reason.clone(), message: c.message.clone(), fix: fix_for(&c.reason) }
            }
            None => Pending {
                reason: "NotSeen".into(),
                message: format!(
                    "no {} condition: the allocator has not written this Service (is it running? kubectl purelb status). purelb-core would decide {}: {}",
                    conditions::ALLOCATED,
                    replay.reason,
                    replay.message
                ),
                fix: if replay.reason == Reason::Allocated.as_str() {
                    "start the allocator (kubectl purelb install; kubectl purelb status)".into()
                } else {
                    fix_for(&replay.reason)
                },
            },
        })
    } else {
        None
    };

    let mut notes = vec![
        "node liveness is read once here: renewTime + leaseDurationSeconds against this machine's clock; the agents judge it by watching each Lease change over time, so near expiry (or with clock skew) they may see it differently".to_string(),
    ];
    if !ingress.is_empty() && !announced_by_agents && !node_facts.is_empty() {
        notes.push(format!(
            "no agent announces these addresses: agents announce only a LoadBalancer Service that PureLB allocated (annotation {}: {})",
            annotations::ALLOCATED_BY,
            ALLOCATED_BY_VALUE
        ));
    }
    if node_reports.is_empty() {
        notes.push(format!(
            "no nodes are known (no Node objects, no {}* Leases in {}): where addresses go cannot be told",
            facts::LEASE_PREFIX,
            snap.install_namespace
        ));
    }
    if let Source::Files(files) = &snap.source {
        notes.push(format!("read from files ({}), not from a cluster", files.join(", ")));
    }
    Explanation {
        service: key.to_string(),
        source: match snap.source {
            Source::Cluster => "cluster".into(),
            Source::Files(_) => "files".into(),
        },
        ours,
        ours_why,
        group,
        recorded,
        replay,
        addresses,
        external_traffic_policy: etp,
        endpoint_nodes: local_policy.then(|| endpoint_nodes.into_iter().collect()),
        agent_settings: settings,
        agents_should_report: expected_report,
        nodes: node_reports,
        pending,
        disagreements,
        notes,
    }
}

/// What to change for a reason code.
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

fn join<T: ToString>(items: &[T]) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// The explanation in plain words.
pub fn render(e: &Explanation) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{} {}", bold("Service"), bold(&e.service));
    if !e.ours {
        let _ = writeln!(o, "  not PureLB's: {}", e.ours_why);
        render_disagreements(&mut o, e);
        return o;
    }
    let _ = writeln!(o, "  PureLB's: {}", e.ours_why);
    let _ = writeln!(o, "  externalTrafficPolicy: {}", e.external_traffic_policy);

    let _ = writeln!(o, "\n{} {}", bold("Group"), bold(&e.group.name));
    let _ = writeln!(o, "  why: {}", e.group.why);
    match &e.group.problem {
        None => {
            let _ = writeln!(
                o,
                "  defined in namespace {}; pools: {}",
                e.group.defined_in.join(", "),
                if e.group.pools.is_empty() { "none".to_string() } else { e.group.pools.join(", ") }
            );
        }
        Some(p) => {
            let _ = writeln!(o, "  {}: {p}", bad(&e.group.state));
        }
    }

    if let Some(p) = &e.pending {
        let _ = writeln!(o, "\n{} {}", bold("Pending:"), bad(&p.reason));
        let _ = writeln!(o, "  {}", p.message);
        let _ = writeln!(o, "  to fix: {}", p.fix);
    }

    for a in &e.addresses {
        let _ = writeln!(o, "\n{} {} ({})", bold("Address"), bold(&a.address), a.family);
        let from = match (&a.pool, &a.group) {
            (Some(p), Some(g)) => format!("pool {p} of group {g}"),
            (None, Some(g)) => format!("group {g}"),
            _ => "no group".to_string(),
        };
        let _ = writeln!(o, "  from {from}: {}", a.why);
        if !a.shared_with.is_empty() || a.sharing_key.is_some() {
            let others: Vec<String> = a
                .shared_with
                .iter()
                .map(|h| {
                    format!(
                        "{} ({})",
                        h.service,
                        if h.ports.is_empty() { "no ports".into() } else { h.ports.join(", ") }
                    )
                })
                .collect();
            let _ = writeln!(
                o,
                "  sharing key {}; also held by: {}",
                a.sharing_key.as_deref().unwrap_or("(none)"),
                if others.is_empty() { "nobody else".into() } else { others.join(", ") }
            );
        }
        if a.local {
            let _ = writeln!(o, "  local: it lies in the LAN subnet of {}", a.lan_nodes.join(", "));
            let _ = writeln!(o, "  election (lowest sha256(node#address) among eligible nodes wins):");
            for (rank, c) in a.election.iter().flatten().enumerate() {
                let mark = if c.eligible { good("eligible") } else { warn("not eligible") };
                let _ = writeln!(
                    o,
                    "    {}. {}  {mark}: {}  {}",
                    rank + 1,
                    c.node,
                    c.why,
                    dim(&c.hash[..12.min(c.hash.len())])
                );
            }
            match &a.winner {
                Some(w) => {
                    let _ = writeln!(o, "  winner: {}", bold(w));
                }
                None => {
                    let _ =
                        writeln!(o, "  winner: {}", bad("none — no node is eligible, nobody announces it"));
                }
            }
            if a.reset_traffic_policy {
                let _ = writeln!(
                    o,
                    "  externalTrafficPolicy: Local is not supported for a local address: the agent resets it to Cluster"
                );
            }
        } else if !e.nodes.is_empty() {
            let _ =
                writeln!(o, "  not local: no node's LAN subnet holds it; it is routed (kube-lb0 and BGP)");
        }
        if a.announced_by.is_empty() {
            if !e.nodes.is_empty() {
                let _ = writeln!(o, "  announced by: {}", warn("no node"));
            }
        } else {
            let _ = writeln!(o, "  announced by: {}", a.announced_by.join("; "));
        }
        for p in a.per_node.iter().filter(|p| p.placement == "absent" && !a.local) {
            let _ = writeln!(o, "    {}: {}", p.node, p.reasons.join("; "));
        }
        if let Some(report) = &a.agents_report {
            let _ = writeln!(o, "  agents report: {report}");
        }
    }

    if let Some(nodes) = &e.endpoint_nodes {
        let _ = writeln!(
            o,
            "\n{} nodes with a ready endpoint: {}",
            bold("externalTrafficPolicy: Local —"),
            if nodes.is_empty() { "none".to_string() } else { nodes.join(", ") }
        );
    }

    let _ = writeln!(o, "\n{}", bold("Recorded"));
    let r = &e.recorded;
    let _ =
        writeln!(o, "  ingress: {}", if r.ingress.is_empty() { "none".into() } else { r.ingress.join(", ") });
    for (k, v) in [
        (annotations::ALLOCATED_BY, &r.allocated_by),
        (annotations::ALLOCATED_FROM, &r.allocated_from),
        (annotations::ANNOUNCING_IPV4, &r.announcing_ipv4),
        (annotations::ANNOUNCING_IPV6, &r.announcing_ipv6),
    ] {
        if let Some(v) = v {
            let _ = writeln!(o, "  {k}: {v}");
        }
    }
    for (t, c) in [(conditions::ALLOCATED, &r.allocated), (conditions::ANNOUNCED, &r.announced)] {
        match c {
            Some(c) => {
                let status = if c.status == "True" { good(&c.status) } else { bad(&c.status) };
                let _ = writeln!(
                    o,
                    "  {t}: {status} {} — {} (since {})",
                    c.reason, c.message, c.last_transition_time
                );
            }
            None => {
                let _ = writeln!(o, "  {t}: {}", dim("not set"));
            }
        }
    }

    let x = &e.agents_should_report;
    if !x.annotations.is_empty() || x.announced.is_some() {
        let _ = writeln!(
            o,
            "  {}",
            dim(&format!(
                "from the Leases read now the agents should report (the agent on {} writes it):",
                x.reporter.as_deref().unwrap_or("no live node")
            ))
        );
        for (k, v) in &x.annotations {
            let _ = writeln!(o, "    {k}: {v}");
        }
        if let Some(c) = &x.announced {
            let _ = writeln!(o, "    {}: {} {} — {}", conditions::ANNOUNCED, c.status, c.reason, c.message);
        }
    }

    let _ = writeln!(o, "\n{}", bold("Replayed with purelb-core on the objects read now"));
    let _ = writeln!(o, "  {}: {}", e.replay.reason, e.replay.message);
    for step in &e.replay.trace {
        let _ = writeln!(o, "    - {step}");
    }
    for c in &e.replay.rejected {
        let _ = writeln!(o, "    rejected {}: {}", c.what, c.why);
    }

    if !e.nodes.is_empty() {
        let _ = writeln!(
            o,
            "\n{} {}",
            bold("Nodes"),
            dim(&format!(
                "(agent settings: {}; extlbint {})",
                e.agent_settings.from.as_deref().unwrap_or("defaults, no LBNodeAgent"),
                e.agent_settings.extlbint
            ))
        );
        for n in &e.nodes {
            let live = if n.live { good("live") } else { warn("not live") };
            let lan = if n.subnets.is_empty() {
                "no LAN subnets".to_string()
            } else {
                format!("{} {}", n.interface, n.subnets.join(","))
            };
            let excluded = if n.excluded {
                format!(", {}", warn("excluded by label"))
            } else if n.shutting_down {
                format!(", {}", warn("shutting down"))
            } else {
                String::new()
            };
            let _ = writeln!(o, "  {}  {live}{excluded}  {lan}  {}", n.name, dim(&n.why));
        }
    }
    render_disagreements(&mut o, e);
    for n in &e.notes {
        let _ = writeln!(o, "{}", dim(&format!("note: {n}")));
    }
    o
}

fn render_disagreements(o: &mut String, e: &Explanation) {
    if e.disagreements.is_empty() {
        if e.ours {
            let _ = writeln!(o, "\n{}", good("The record and the replay agree."));
        }
        return;
    }
    let _ = writeln!(o, "\n{}", warn("The record and the replay disagree:"));
    for d in &e.disagreements {
        let _ = writeln!(o, "  - {d}");
    }
}

/// The nodes that hold `ip` according to the explanation (for tests and status).
pub fn announcing_nodes(e: &Explanation, ip: IpAddr) -> BTreeSet<String> {
    e.addresses
        .iter()
        .filter(|a| a.address == ip.to_string())
        .flat_map(|a| a.per_node.iter().filter(|p| p.placement != "absent").map(|p| p.node.clone()))
        .collect()
}

#[cfg(test)]
mod tests;
