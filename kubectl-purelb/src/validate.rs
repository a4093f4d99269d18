//! `validate`: what is wrong with the ServiceGroups and LBNodeAgents, from the cluster or from files.
//!
//! Errors (the allocator or the agents cannot use the object as written): a pool core's parser refuses
//! (`PoolConfig::parse`), the legacy fields half given, two pools of one group overlapping, a group name
//! defined in two namespaces, pools of two groups overlapping, a `localint` that is not a regular
//! expression the agent can compile (it anchors it as `^(?:…)$`), an `extlbint` that is no interface name.
//! Warnings: no group named `default`, a group without pools, LBNodeAgents the agents ignore, and — when
//! nodes are known — a pool with `aggregation: default` whose subnet is on no node (meant to be local, no
//! node can announce it; a routed pool says so with an explicit aggregation such as `/32`).

use std::fmt::Write as _;
use std::net::IpAddr;

use kube::ResourceExt;
use purelb_core::api::DEFAULT_GROUP;
use purelb_core::pool::{Aggregation, PoolConfig, Subnet};
use serde::Serialize;

use crate::facts::{self, LbnaSettings};
use crate::snapshot::Snapshot;
use crate::style::{Format, bad, bold, good, warn};

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub severity: Severity,
    /// `ServiceGroup ns/name`, `LBNodeAgent ns/name`, or `cluster`.
    pub object: String,
    /// The field, when one is at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
    /// What to change.
    pub hint: String,
}

/// Everything `validate` found.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub findings: Vec<Finding>,
    /// Where each group lives: `name (namespace)`.
    pub groups: Vec<String>,
    pub errors: usize,
    pub warnings: usize,
    pub groups_checked: usize,
    pub agents_checked: usize,
    pub nodes_known: usize,
}

impl Report {
    /// Whether the command fails: errors, or (strict) warnings.
    pub fn fails(&self, strict: bool) -> bool {
        self.errors > 0 || (strict && self.warnings > 0)
    }
}

fn finding(
    severity: Severity,
    object: String,
    field: Option<String>,
    message: String,
    hint: &str,
) -> Finding {
    Finding { severity, object, field, message, hint: hint.to_string() }
}

/// Validates the snapshot's groups and agents (and pools against nodes, when nodes are known).
pub fn validate(snap: &Snapshot) -> Report {
    let mut out = Vec::new();
    let sg = |g: &purelb_core::api::ServiceGroup| {
        format!("ServiceGroup {}/{}", g.namespace().unwrap_or_default(), g.name_any())
    };

    // Every pool, parsed by core.
    let mut parsed: Vec<(String, String, String, PoolConfig)> = Vec::new(); // (object, group name, field, pool)
    for g in &snap.groups {
        let pools = match facts::group_pools(g) {
            Ok(pools) => pools,
            Err(e) => {
                out.push(finding(
                    Severity::Error,
                    sg(g),
                    Some("spec.local".into()),
                    e.to_string(),
                    "the allocator refuses the whole group (InvalidServiceGroup) until this is fixed",
                ));
                continue;
            }
        };
        if pools.is_empty() {
            out.push(finding(
                Severity::Warning,
                sg(g),
                Some("spec.local".into()),
                "the group has no pools: Services that name it stay pending (FamilyUnavailable)".into(),
                "add spec.local.v4pools or v6pools",
            ));
        }
        for read in pools {
            match read.parsed {
                Err(e) => out.push(finding(
                    Severity::Error,
                    sg(g),
                    Some(read.field),
                    e.to_string(),
                    "the allocator refuses the whole group (InvalidServiceGroup) until this is fixed",
                )),
                Ok(p) => {
                    if let Some((other_field, other)) = &read.overlaps {
                        out.push(finding(
                            Severity::Error,
                            sg(g),
                            Some(read.field.clone()),
                            format!(
                                "pool {} overlaps pool {other} ({other_field}) of the same group",
                                p.range
                            ),
                            "make the pools of a group disjoint",
                        ));
                    }
                    parsed.push((sg(g), g.name_any(), read.field, p));
                }
            }
        }
    }

    // One name, several namespaces.
    let mut names: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for g in &snap.groups {
        names.entry(g.name_any()).or_default().push(g.namespace().unwrap_or_default());
    }
    for (name, nss) in names.iter().filter(|(_, nss)| nss.len() > 1) {
        out.push(finding(
            Severity::Error,
            format!("ServiceGroup {name}"),
            None,
            format!(
                "{} (DuplicateServiceGroup: the allocator uses none of them)",
                purelb_core::allocate::duplicate_group_message(name, nss)
            ),
            "kubectl purelb sg list shows where each is",
        ));
    }

    // Pools of different groups overlapping.
    for (i, (obj_a, name_a, field_a, a)) in parsed.iter().enumerate() {
        for (obj_b, name_b, field_b, b) in parsed.iter().skip(i + 1) {
            if name_a != name_b && a.range.overlaps(&b.range) {
                out.push(finding(
                    Severity::Error,
                    obj_a.clone(),
                    Some(field_a.clone()),
                    format!("pool {} overlaps pool {} ({field_b}) of {obj_b}", a.range, b.range),
                    "an address must belong to one group: the groups' usage counts it twice and purelb.io/allocated-from depends on which group a Service names; make the pools disjoint",
                ));
            }
        }
    }

    if !snap.groups.is_empty() && !names.contains_key(DEFAULT_GROUP) {
        out.push(finding(
            Severity::Warning,
            "cluster".into(),
            None,
            format!("no ServiceGroup is named {DEFAULT_GROUP}: Services without purelb.io/service-group stay pending (NoServiceGroup)"),
            "create one: kubectl purelb sg create default",
        ));
    }

    // LBNodeAgents.
    let used = LbnaSettings::select(&snap.agents, &snap.install_namespace);
    for a in &snap.agents {
        let id = format!("{}/{}", a.namespace().unwrap_or_default(), a.name_any());
        let obj = format!("LBNodeAgent {id}");
        let local = a.spec.local.clone().unwrap_or_default();
        // The agent's own reading of it (trimmed, anchored), so validate and the agent never disagree.
        if let Err(e) = purelb_core::announce::settings::AgentConfig::from_local(&local) {
            out.push(finding(
                Severity::Error,
                obj.clone(),
                Some("spec.local.localint".into()),
                format!("{:?} is not a regular expression the agent can compile: {}", e.pattern, e.reason),
                "use `default` (the default route's interface) or a valid pattern such as `eth[0-9]+`",
            ));
        }
        let name = &local.extlbint;
        if name.is_empty()
            || name.len() > 15
            || name == "."
            || name == ".."
            || name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace())
        {
            out.push(finding(
                Severity::Error,
                obj.clone(),
                Some("spec.local.extlbint".into()),
                format!("{name:?} is not an interface name (1 to 15 characters, no '/', ':' or whitespace)"),
                "the default is kube-lb0",
            ));
        }
        if a.namespace().as_deref() != Some(snap.install_namespace.as_str()) {
            out.push(finding(
                Severity::Warning,
                obj,
                None,
                format!(
                    "the agents read LBNodeAgents in {} only: this one is ignored",
                    snap.install_namespace
                ),
                "move it to the install namespace",
            ));
        } else if used.from.as_deref() != Some(id.as_str()) {
            out.push(finding(
                Severity::Warning,
                obj,
                None,
                format!(
                    "the agents use {} (the one named default, else the first by name): this one is ignored",
                    used.from.as_deref().unwrap_or("?")
                ),
                "keep one LBNodeAgent, named default",
            ));
        }
    }

    // Pools against the nodes' LANs.
    let (node_facts, _) = facts::node_facts(&snap.nodes, &snap.leases, &snap.declared_nodes, snap.now);
    // Every node on one LAN reports the same subnets: each once, in the order first seen.
    let mut lan: Vec<Subnet> = Vec::new();
    for s in node_facts.iter().flat_map(|n| n.subnets.iter().copied()) {
        if !lan.contains(&s) {
            lan.push(s);
        }
    }
    let internal_ips: Vec<IpAddr> = snap
        .nodes
        .iter()
        .flat_map(|n| n.status.iter().flat_map(|s| s.addresses.iter().flatten()))
        .filter(|a| a.type_ == "InternalIP")
        .filter_map(|a| a.address.parse().ok())
        .collect();
    let nodes_known = node_facts.len();
    for (obj, _, field, p) in &parsed {
        if p.aggregation != Aggregation::Default {
            continue;
        }
        let (known, on_a_node, seen) = if !lan.is_empty() {
            (
                true,
                lan.iter().any(|s| s.contains(p.subnet.network()) || p.subnet.contains(s.network())),
                format!(
                    "the nodes' LAN subnets (from their agents' Leases): {}",
                    lan.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                ),
            )
        } else if !internal_ips.is_empty() {
            (
                true,
                internal_ips.iter().any(|ip| p.subnet.contains(*ip)),
                format!(
                    "the nodes' InternalIP addresses: {}",
                    internal_ips.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                ),
            )
        } else {
            (false, true, String::new())
        };
        if known && !on_a_node {
            out.push(finding(
                Severity::Warning,
                obj.clone(),
                Some(field.clone()),
                format!("subnet {} of pool {} is on no node ({seen}): no node can announce its addresses as local", p.subnet, p.range),
                "for a local pool use the nodes' subnet; for a routed pool (kube-lb0 and BGP) give an explicit aggregation such as /32",
            ));
        }
    }

    out.sort_by(|a, b| (a.severity, &a.object, &a.field).cmp(&(b.severity, &b.object, &b.field)));
    out.dedup();
    let errors = out.iter().filter(|f| f.severity == Severity::Error).count();
    let warnings = out.len() - errors;
    let mut groups: Vec<String> = snap
        .groups
        .iter()
        .map(|g| format!("{} ({})", g.name_any(), g.namespace().unwrap_or_default()))
        .collect();
    groups.sort();
    Report {
        findings: out,
        groups,
        errors,
        warnings,
        groups_checked: snap.groups.len(),
        agents_checked: snap.agents.len(),
        nodes_known,
    }
}

/// The report in plain words.
pub fn render(r: &Report, _format: Format) -> String {
    let mut o = String::new();
    for f in &r.findings {
        let label = match f.severity {
            Severity::Error => bad("error"),
            Severity::Warning => warn("warning"),
        };
        let field = f.field.as_ref().map(|f| format!(" {f}")).unwrap_or_default();
        let _ = writeln!(o, "{label}: {}{field}: {}", bold(&f.object), f.message);
        let _ = writeln!(o, "  hint: {}", f.hint);
    }
    if !r.groups.is_empty() {
        let _ = writeln!(o, "ServiceGroups: {}", r.groups.join(", "));
    }
    let summary = format!(
        "{} error(s), {} warning(s) in {} ServiceGroup(s), {} LBNodeAgent(s); {} node(s) known",
        r.errors, r.warnings, r.groups_checked, r.agents_checked, r.nodes_known
    );
    let _ = writeln!(
        o,
        "{}",
        if r.errors > 0 {
            bad(&summary)
        } else if r.warnings > 0 {
            warn(&summary)
        } else {
            good(&summary)
        }
    );
    o
}

#[cfg(test)]
mod tests;
