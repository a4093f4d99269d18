//! `explain`: why a Service has the group, addresses, nodes and interfaces it has — or why it has none.
//!
//! Two sources, shown side by side and compared:
//! - what was recorded: `status.loadBalancer.ingress`, the `purelb.io/*` annotations, the conditions
//!   `purelb.io/Allocated` (allocator) and `purelb.io/Announced` (agents) ([`Recorded`]);
//! - what purelb-core decides now from the same objects, through the functions the daemons call: the
//!   allocator's `allocate::reconcile` on the index the allocator rebuilds ([`allocation`]), and every
//!   node's `announce::view::node_view` on the node facts read from the agents' Leases ([`placement`]).
//!
//! Nothing here decides: every verdict is core's, every sentence names the facts it rests on.
//! [`explain`] builds the structured [`Explanation`] ([`report`]; printed as JSON/YAML as is), [`compare`]
//! finds where record and replay disagree, and [`render`] writes it in plain words.

mod allocation;
mod compare;
mod placement;
mod render;
mod report;

use std::collections::BTreeSet;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;
use purelb_core::allocate::{Ownership, ServiceKey, ownership};
use purelb_core::api::{ALLOCATED_BY_VALUE, annotations};
use purelb_core::pool::Family;

pub use compare::fix_for;
pub use render::render;
pub use report::*;

use crate::facts;
use crate::snapshot::{Snapshot, Source};

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

/// Explains `svc` from the snapshot.
pub fn explain(snap: &Snapshot, svc: &Service) -> Explanation {
    let key = ServiceKey::of(svc);
    let recorded = Recorded::of(svc);
    let allocation::OwnershipWhy { ours, why: ours_why } =
        allocation::ownership_why(svc, snap.classless_ours);
    let alloc = allocation::replay(snap, svc);
    let agents = placement::agents(snap, svc);
    let addresses = facts::ingress_ips(svc)
        .iter()
        .enumerate()
        .map(|(i, &ip)| {
            let family = Family::of(ip);
            let origin = alloc.origin(ip, &recorded);
            let placed = agents.placement(i, ip);
            AddressReport {
                address: ip.to_string(),
                family: family.to_string(),
                group: origin.group,
                pool: origin.pool,
                how: origin.how.into(),
                why: origin.why,
                sharing_key: origin.sharing_key,
                shared_with: origin.shared_with,
                local: placed.local,
                lan_nodes: placed.lan_nodes,
                announced_by: placed.announced_by,
                election: placed.election,
                winner: placed.winner,
                reset_traffic_policy: placed.reset_traffic_policy,
                agents_report: match family {
                    Family::V4 => recorded.announcing_ipv4.clone(),
                    Family::V6 => recorded.announcing_ipv6.clone(),
                },
                per_node: placed.per_node,
            }
        })
        .collect();
    let mut disagreements = compare::allocation_disagreements(ours, &ours_why, &recorded, &alloc);
    let (report_disagreements, agents_should_report) = compare::report_disagreements(ours, svc, &agents);
    disagreements.extend(report_disagreements);
    let pending = compare::pending(ours, &recorded, &alloc.replay);
    let notes = notes(snap, &recorded, &agents);
    Explanation {
        service: key.to_string(),
        source: match snap.source {
            Source::Cluster => "cluster".into(),
            Source::Files(_) => "files".into(),
        },
        ours,
        ours_why,
        group: alloc.group(),
        recorded,
        replay: alloc.replay,
        addresses,
        external_traffic_policy: svc
            .spec
            .as_ref()
            .and_then(|s| s.external_traffic_policy.clone())
            .unwrap_or_else(|| "Cluster".into()),
        endpoint_nodes: agents
            .service
            .local_traffic_policy
            .then(|| agents.service.endpoint_nodes.iter().cloned().collect()),
        agents_should_report,
        nodes: agents.node_reports,
        agent_settings: agents.settings,
        pending,
        disagreements,
        notes,
    }
}

/// What this reading cannot know, or did not find.
fn notes(snap: &Snapshot, recorded: &Recorded, agents: &placement::Agents) -> Vec<String> {
    let mut notes = vec![
        "node liveness is read once here: renewTime + leaseDurationSeconds against this machine's clock; the agents judge it by watching each Lease change over time, so near expiry (or with clock skew) they may see it differently".to_string(),
    ];
    if !recorded.ingress.is_empty() && !agents.ours() && !agents.nodes.is_empty() {
        notes.push(format!(
            "no agent announces these addresses: agents announce only a LoadBalancer Service that PureLB allocated (annotation {}: {})",
            annotations::ALLOCATED_BY,
            ALLOCATED_BY_VALUE
        ));
    }
    if agents.node_reports.is_empty() {
        notes.push(format!(
            "no nodes are known (no Node objects, no {}* Leases in {}): where addresses go cannot be told",
            facts::LEASE_PREFIX,
            snap.install_namespace
        ));
    }
    if let Source::Files(files) = &snap.source {
        notes.push(format!("read from files ({}), not from a cluster", files.join(", ")));
    }
    notes
}

fn join<T: ToString>(items: &[T]) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
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
