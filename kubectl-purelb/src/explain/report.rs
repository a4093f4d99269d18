//! The shape of an explanation: [`Explanation`] and its parts, printed as JSON/YAML as they are and in
//! words by [`super::render`]; and what a Service records ([`Recorded::of`]).

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use purelb_core::allocate::Reason;
use purelb_core::api::{annotations, conditions};
use serde::Serialize;

use crate::facts::{self, LbnaSettings, NodeReport};

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
    pub reason: Reason,
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

pub(super) fn condition(svc: &Service, type_: &str) -> Option<ConditionReport> {
    let c: &Condition = svc.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)?;
    Some(ConditionReport {
        status: c.status.clone(),
        reason: c.reason.clone(),
        message: c.message.clone(),
        last_transition_time: c.last_transition_time.0.to_string(),
    })
}

// === impl Recorded ===

impl Recorded {
    /// What the allocator and the agents wrote on `svc`.
    pub fn of(svc: &Service) -> Self {
        let ann = |k: &str| facts::annotation(svc, k).map(str::to_string);
        Self {
            ingress: facts::ingress_ips(svc).iter().map(ToString::to_string).collect(),
            allocated_by: ann(annotations::ALLOCATED_BY),
            allocated_from: ann(annotations::ALLOCATED_FROM),
            announcing_ipv4: ann(annotations::ANNOUNCING_IPV4),
            announcing_ipv6: ann(annotations::ANNOUNCING_IPV6),
            allocated: condition(svc, conditions::ALLOCATED),
            announced: condition(svc, conditions::ANNOUNCED),
        }
    }
}
