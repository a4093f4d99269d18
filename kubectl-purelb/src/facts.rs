//! Kubernetes objects turned into purelb-core's inputs, the way the allocator and the agent turn them.
//! Pure: no I/O; "now" is passed in.
//!
//! - [`ingress_ips`], [`rebuild_index`]: the allocator's index, rebuilt as the allocator rebuilds it at
//!   start-up (every group; every PureLB Service's ingress claimed oldest first).
//! - [`group_pools`]: a group's pools, each parsed by core or with core's error (`validate`, `sg create`).
//! - [`LbnaSettings`]: the LBNodeAgent that configures the agents, read by their rule (core's
//!   `AgentConfig`), and why it is unusable when it is.
//! - [`node_facts`]: `NodeFacts` from the node Leases (`purelb-node-<node>`) and Node labels, with the
//!   reason for each node's liveness.
//!
//! The agent's other inputs (EndpointSlices, every group's pools, ingress) come from
//! `purelb_core::announce::facts`, as the agent takes them. The rules here still have private twins that
//! could move to core: `controller/src/allocator.rs::rebuild` (the rebuild order) and `agent/src/lease.rs`
//! (reading a node Lease).

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use purelb_core::allocate::{
    AllocationIndex, ClaimConflict, GroupError, PoolRead, ServiceKey, claim_existing, read_pools,
};
use purelb_core::announce::NodeFacts;
use purelb_core::announce::facts::{node_excluded, node_shutting_down};
use purelb_core::announce::settings::AgentConfig;
use purelb_core::api::{LBNodeAgent, ServiceGroup};
use purelb_core::pool::Subnet;
use serde::{Deserialize, Serialize};

/// The reason the plugin shows for a Service the allocator has written no condition on (yet).
pub const NOT_SEEN: &str = "NotSeen";

/// The node Lease contract (core's names: prefix, annotations, the subnets' reading).
pub use purelb_core::api::node_lease::{
    INTERFACE_ANNOTATION, LEASE_PREFIX, SUBNETS_ANNOTATION, parse_subnets,
};

/// The IPs of `status.loadBalancer.ingress` (core's reading, shared with the agent).
pub use purelb_core::announce::facts::ingress_ips;

/// An annotation of `svc`.
pub fn annotation<'a>(svc: &'a Service, key: &str) -> Option<&'a str> {
    svc.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

/// The allocator's index rebuilt from `groups` and `services`, leaving out `skip`; with the claims that
/// conflicted (the Service that claimed second, oldest first, is the one in conflict).
pub fn rebuild_index(
    groups: &[ServiceGroup],
    services: &[Service],
    classless_ours: bool,
    skip: Option<&ServiceKey>,
) -> (AllocationIndex, BTreeMap<ServiceKey, Vec<ClaimConflict>>) {
    let mut index = AllocationIndex::new();
    for g in groups {
        index.set_group(&g.namespace().unwrap_or_default(), &g.name_any(), &g.spec);
    }
    let others = services.iter().filter(|s| Some(&ServiceKey::of(s)) != skip);
    let conflicts = claim_existing(&mut index, others, classless_ours);
    (index, conflicts)
}

/// The pools of a group, each read by core as the allocator reads it (parsed, and which earlier pool of
/// the group it overlaps), or core's error when the group's pool fields cannot be read at all.
pub fn group_pools(g: &ServiceGroup) -> Result<Vec<PoolRead>, GroupError> {
    read_pools(&g.spec)
}

/// The agents' settings: from the LBNodeAgent named `default` in the install namespace, else the first by
/// name there, else the defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LbnaSettings {
    /// `namespace/name` of the LBNodeAgent used, if any.
    pub from: Option<String>,
    /// `localint`, as the agents read it (anchored, or `default`).
    pub localint: String,
    /// `extlbint`: where non-local addresses go (trimmed, as the agents read it).
    pub extlbint: String,
    /// Why the chosen LBNodeAgent is unusable: the agents then keep the settings they had, which this
    /// reading cannot know; the defaults are shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl LbnaSettings {
    /// The settings the agents in `namespace` use, read by the agents' own rule (core's
    /// `AgentConfig::from_agent`: which LBNodeAgent, fields trimmed, `localint` anchored).
    pub fn select(agents: &[LBNodeAgent], namespace: &str) -> LbnaSettings {
        let here = agents.iter().filter(|a| a.namespace().as_deref() == Some(namespace));
        let chosen = LBNodeAgent::select(here);
        let from = chosen.map(|a| format!("{namespace}/{}", a.name_any()));
        let (config, problem) = match chosen.map_or(Ok(AgentConfig::default()), AgentConfig::from_agent) {
            Ok(c) => (c, None),
            Err(e) => (
                AgentConfig::default(),
                Some(format!(
                    "{e}: the agents keep the settings they had before (the defaults when they started with it); shown here: the defaults"
                )),
            ),
        };
        LbnaSettings { from, localint: config.localint.to_string(), extlbint: config.extlbint, problem }
    }
}

/// A node described directly (the offline `--nodes` file's simple form), instead of by Node and Lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeclaredNode {
    /// The node's name.
    pub name: String,
    /// Its LAN interface.
    #[serde(default)]
    pub interface: String,
    /// Its LAN subnets (CIDRs).
    #[serde(default)]
    pub subnets: Vec<String>,
    /// Whether its agent is alive (default true).
    #[serde(default = "yes")]
    pub live: bool,
    /// Whether it carries the exclude-from-external-load-balancers label (default false).
    #[serde(default)]
    pub excluded: bool,
    /// Whether its kubelet began a graceful node shutdown (default false).
    #[serde(default)]
    pub shutting_down: bool,
}

fn yes() -> bool {
    true
}

/// What a node Lease says, read once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseReading {
    /// `holderIdentity`.
    pub holder: Option<String>,
    /// `renewTime`.
    pub renew_time: Option<String>,
    /// `leaseDurationSeconds`.
    pub duration_seconds: Option<i32>,
    /// `renewTime + leaseDurationSeconds`.
    pub expires: Option<String>,
    /// Entries of `purelb.io/subnets` that are not CIDRs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bad_subnets: Vec<String>,
}

/// One node as PureLB sees it, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeReport {
    /// The node.
    pub name: String,
    /// Live, as far as a one-shot reader can tell.
    pub live: bool,
    /// Why (not).
    pub why: String,
    /// The LAN interface its agent reports.
    pub interface: String,
    /// The LAN subnets its agent reports.
    pub subnets: Vec<String>,
    /// Carries the exclude label.
    pub excluded: bool,
    /// Its kubelet began a graceful node shutdown (Ready: "node is shutting down").
    pub shutting_down: bool,
    /// A Node object exists.
    pub has_node_object: bool,
    /// The Lease, when there is one.
    pub lease: Option<LeaseReading>,
}

/// Node facts for core and a report per node, sorted by name: from Node objects (labels), their agents'
/// Leases, and declared nodes (which win over both). Liveness: `renewTime + leaseDurationSeconds` not
/// before `now` and a holder set.
pub fn node_facts(
    nodes: &[Node],
    leases: &[Lease],
    declared: &[DeclaredNode],
    now: Timestamp,
) -> (Vec<NodeFacts>, Vec<NodeReport>) {
    let mut by_name: BTreeMap<String, (Option<&Node>, Option<&Lease>)> = BTreeMap::new();
    for n in nodes {
        by_name.entry(n.name_any()).or_default().0 = Some(n);
    }
    for l in leases {
        if let Some(node) = l.name_any().strip_prefix(LEASE_PREFIX).filter(|n| !n.is_empty()) {
            by_name.entry(node.to_string()).or_default().1 = Some(l);
        }
    }
    let mut facts = Vec::new();
    let mut reports = Vec::new();
    for d in declared {
        by_name.remove(&d.name);
        let subnets: Vec<Subnet> = d.subnets.iter().filter_map(|s| Subnet::parse(s).ok()).collect();
        facts.push(NodeFacts {
            name: d.name.clone(),
            subnets: subnets.clone(),
            interface: d.interface.clone(),
            live: d.live,
            excluded: d.excluded,
            shutting_down: d.shutting_down,
        });
        reports.push(NodeReport {
            name: d.name.clone(),
            live: d.live,
            why: format!("declared {} in the nodes file", if d.live { "live" } else { "not live" }),
            interface: d.interface.clone(),
            subnets: subnets.iter().map(ToString::to_string).collect(),
            excluded: d.excluded,
            shutting_down: d.shutting_down,
            has_node_object: false,
            lease: None,
        });
    }
    for (name, (node, lease)) in by_name {
        let excluded = node.is_some_and(node_excluded);
        let shutting_down = node.is_some_and(node_shutting_down);
        let read = match lease {
            None => LeaseRead {
                live: false,
                why: format!("no Lease {LEASE_PREFIX}{name}: no agent runs on it"),
                interface: String::new(),
                subnets: vec![],
                reading: None,
            },
            Some(l) => read_lease(l, now),
        };
        let LeaseRead { live, why, interface, subnets, reading } = read;
        facts.push(NodeFacts {
            name: name.clone(),
            subnets: subnets.clone(),
            interface: interface.clone(),
            live,
            excluded,
            shutting_down,
        });
        reports.push(NodeReport {
            name,
            live,
            why,
            interface,
            subnets: subnets.iter().map(ToString::to_string).collect(),
            excluded,
            shutting_down,
            has_node_object: node.is_some(),
            lease: reading,
        });
    }
    facts.sort_by(|a, b| a.name.cmp(&b.name));
    reports.sort_by(|a, b| a.name.cmp(&b.name));
    (facts, reports)
}

/// What a node Lease says of its node: whether it is live and why, its LAN interface and subnets, and
/// the Lease's own fields as read.
struct LeaseRead {
    live: bool,
    why: String,
    interface: String,
    subnets: Vec<Subnet>,
    reading: Option<LeaseReading>,
}

/// A Lease's holder and term: who holds it, when it was renewed, for how long, and so until when.
pub struct LeaseTerm {
    pub holder: Option<String>,
    pub renewed: Option<Timestamp>,
    pub duration_seconds: Option<i32>,
    /// `renewTime + leaseDurationSeconds`, when both are set.
    pub expires: Option<Timestamp>,
}

impl LeaseTerm {
    /// The term of `lease` (an empty holder is no holder).
    pub fn of(lease: &Lease) -> LeaseTerm {
        let spec = lease.spec.clone().unwrap_or_default();
        let renewed = spec.renew_time.map(|t| t.0);
        let duration_seconds = spec.lease_duration_seconds;
        let expires = match (renewed, duration_seconds) {
            (Some(r), Some(d)) => r.checked_add(SignedDuration::from_secs(i64::from(d))).ok(),
            _ => None,
        };
        LeaseTerm {
            holder: spec.holder_identity.filter(|h| !h.is_empty()),
            renewed,
            duration_seconds,
            expires,
        }
    }
}

fn read_lease(lease: &Lease, now: Timestamp) -> LeaseRead {
    let ann = lease.annotations();
    let interface = ann.get(INTERFACE_ANNOTATION).cloned().unwrap_or_default();
    let (subnets, bad) = parse_subnets(ann.get(SUBNETS_ANNOTATION).map_or("", String::as_str));
    let LeaseTerm { holder, renewed, duration_seconds, expires } = LeaseTerm::of(lease);
    let (live, why) = match (&holder, expires) {
        (None, _) => (false, "its Lease has no holder (the agent released it)".to_string()),
        (Some(_), None) => (false, "its Lease has no renewTime or leaseDurationSeconds".to_string()),
        (Some(_), Some(e)) if e < now => {
            let ago = now.duration_since(e).as_secs();
            (
                false,
                format!(
                    "its Lease expired at {e}, {ago} s ago (renewTime + leaseDurationSeconds is past): its agent stopped or is cut off from the API server; a cut-off agent keeps the addresses it holds (fail-static) until another node announces them"
                ),
            )
        }
        (Some(_), Some(e)) => {
            (true, format!("its Lease is current until {e} (renewTime + leaseDurationSeconds)"))
        }
    };
    let reading = LeaseReading {
        holder,
        renew_time: renewed.map(|r| r.to_string()),
        duration_seconds,
        expires: expires.map(|e| e.to_string()),
        bad_subnets: bad,
    };
    LeaseRead { live, why, interface, subnets, reading: Some(reading) }
}

#[cfg(test)]
mod tests;
