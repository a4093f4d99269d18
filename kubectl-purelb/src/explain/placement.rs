//! The agents' side of an explanation: each node's answer for the Service, from the function its agent
//! calls (core's `announce::view::node_view`: the is-ours rule, the plan and the report), and where
//! each address goes in the explanation's words.
//!
//! This machine cannot see a node's kernel (the subnets connected there) or the local addresses an
//! agent yielded after another MAC announced them: those two inputs are the agent's own and are left
//! empty here.

use std::collections::BTreeSet;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use purelb_core::announce::facts as announce_facts;
use purelb_core::announce::report::{self as announce_report, ServiceReport};
use purelb_core::announce::view::{NodeContext, NodeView, node_view};
use purelb_core::announce::{NodeFacts, Placement, ServiceFacts};

use super::report::{ElectionCandidate, NodePlacement};
use crate::facts::{self, LbnaSettings, NodeReport};
use crate::snapshot::Snapshot;

/// Every node's answer for one Service, and what it rests on.
pub(super) struct Agents {
    /// The nodes, from their Leases, as the agents read them.
    pub nodes: Vec<NodeFacts>,
    /// The same, for the explanation.
    pub node_reports: Vec<NodeReport>,
    /// The agents' settings (LBNodeAgent).
    pub settings: LbnaSettings,
    /// The Service's facts as the agents read them (the ETP node set, the reporter).
    pub service: ServiceFacts,
    /// Each node's view, in node order.
    views: Vec<(String, NodeView)>,
}

/// Where one address goes.
pub(super) struct Placed {
    /// It lies in a node's LAN subnet (it has an election).
    pub local: bool,
    /// The nodes whose LAN subnets hold it.
    pub lan_nodes: Vec<String>,
    /// The nodes that add it, with interface and prefix length.
    pub announced_by: Vec<String>,
    pub election: Option<Vec<ElectionCandidate>>,
    pub winner: Option<String>,
    pub reset_traffic_policy: bool,
    pub per_node: Vec<NodePlacement>,
}

/// Asks every node's `node_view` about `svc`.
pub(super) fn agents(snap: &Snapshot, svc: &Service) -> Agents {
    let (nodes, node_reports) = facts::node_facts(&snap.nodes, &snap.leases, &snap.declared_nodes, snap.now);
    let settings = LbnaSettings::select(&snap.agents, &snap.install_namespace);
    let pools = announce_facts::pools(&snap.groups);
    let endpoints = announce_facts::endpoint_nodes(&snap.slices);
    let incumbents = announce_facts::incumbents(&snap.services);
    let service = announce_facts::service_facts(svc, &endpoints, &incumbents);
    let no_yield = BTreeSet::new();
    let views = nodes
        .iter()
        .map(|n| {
            let ctx = NodeContext {
                me: &n.name,
                nodes: &nodes,
                pools: &pools,
                extlbint: &settings.extlbint,
                connected: None,
                yielded: &no_yield,
            };
            (n.name.clone(), node_view(&ctx, svc, &endpoints, &incumbents))
        })
        .collect();
    Agents { nodes, node_reports, settings, service, views }
}

// === impl Agents ===

impl Agents {
    /// Whether the agents take the Service as theirs (it carries PureLB's `allocated-by` mark).
    pub fn ours(&self) -> bool {
        self.views.iter().any(|(_, v)| v.ours)
    }

    /// The node whose agent writes the Service's report.
    pub fn reporter(&self) -> Option<String> {
        announce_report::reporter(&self.service, &self.nodes)
    }

    /// What the reporting agent must show on the Service (nothing when no node reports it).
    pub fn expected(&self) -> ServiceReport {
        self.views.iter().find_map(|(_, v)| v.report.clone()).unwrap_or_default()
    }

    /// Where the Service's `i`-th address `ip` goes, node by node.
    pub fn placement(&self, i: usize, ip: IpAddr) -> Placed {
        let mut per_node = Vec::new();
        let mut announced_by = Vec::new();
        let mut election = None;
        let mut winner = None;
        let mut reset_traffic_policy = false;
        for (node, view) in &self.views {
            let Some(plan) = view.plans.get(i) else { continue };
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
            reset_traffic_policy |= plan.reset_traffic_policy;
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
        let lan_nodes = self
            .nodes
            .iter()
            .filter(|n| n.subnets.iter().any(|s| s.contains(ip)))
            .map(|n| format!("{} ({})", n.name, n.interface))
            .collect();
        Placed {
            local: election.is_some(),
            lan_nodes,
            announced_by,
            election,
            winner,
            reset_traffic_policy,
            per_node,
        }
    }
}
