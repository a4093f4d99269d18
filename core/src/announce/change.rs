//! Which placements a change of other nodes' facts can reach: when a node's Lease expires or comes back,
//! or a node is excluded, only some addresses can move on this node, and an agent re-plans those first
//! (so the data plane moves before the reports are rewritten).
//!
//! The rules follow [`plan_for_node`](super::plan_for_node) and the sticky election:
//! - a local address on this node keeps its winner while an unchanged incumbent is still eligible, so it
//!   can move only when one of its incumbents changed, or when no unchanged incumbent is eligible (a
//!   fresh election) and a changed node's subnets hold it (before or after: its eligibility may differ);
//! - a non-local address on this node depends on the other nodes only through the refusal of a routed
//!   prefix over a node's LAN subnet, so it can move only when a changed node gained or lost a subnet
//!   that overlaps its routed prefix.
//!
//! Exposes [`NodeChange`], [`changed_nodes`] and [`placement_may_change`].

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::{NodeFacts, aggregation_prefix};
use crate::pool::{PoolConfig, Subnet};

/// A node whose facts differ between two views: what it was and what it is (`None`: not in that view).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeChange<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its facts before.
    pub before: Option<&'a NodeFacts>,
    /// Its facts after.
    pub after: Option<&'a NodeFacts>,
}

impl NodeChange<'_> {
    /// Whether its subnets hold `ip` before or after.
    fn holds(&self, ip: IpAddr) -> bool {
        [self.before, self.after].into_iter().flatten().any(|n| n.subnets.iter().any(|s| s.contains(ip)))
    }

    /// The subnets it has in one view and not in the other.
    fn subnets_changed(&self) -> impl Iterator<Item = &Subnet> {
        let empty: &[Subnet] = &[];
        let before = self.before.map_or(empty, |n| n.subnets.as_slice());
        let after = self.after.map_or(empty, |n| n.subnets.as_slice());
        let gone = before.iter().filter(move |s| !after.contains(s));
        let new = after.iter().filter(move |s| !before.contains(s));
        gone.chain(new)
    }
}

/// Every node whose facts differ between `before` and `after` (in name order of each list).
pub fn changed_nodes<'a>(before: &'a [NodeFacts], after: &'a [NodeFacts]) -> Vec<NodeChange<'a>> {
    let mut changes = Vec::new();
    for b in before {
        let a = after.iter().find(|a| a.name == b.name);
        if a != Some(b) {
            changes.push(NodeChange { name: &b.name, before: Some(b), after: a });
        }
    }
    for a in after.iter().filter(|a| !before.iter().any(|b| b.name == a.name)) {
        changes.push(NodeChange { name: &a.name, before: None, after: Some(a) });
    }
    changes
}

/// Whether node `me` (itself unchanged) can place `ip` differently after the `changed` nodes changed,
/// every other node, the pools and the Service being the same. `incumbents` are the nodes that announce
/// `ip` now; `after` is every node as it is now. See the module documentation.
pub fn placement_may_change(
    me: &NodeFacts,
    ip: IpAddr,
    incumbents: &BTreeSet<String>,
    changed: &[NodeChange<'_>],
    after: &[NodeFacts],
    pools: &[PoolConfig],
) -> bool {
    if changed.is_empty() {
        return false;
    }
    if me.subnets.iter().any(|s| s.contains(ip)) {
        if incumbents.iter().any(|i| changed.iter().any(|c| c.name == i.as_str())) {
            return true;
        }
        let kept = incumbents.iter().any(|i| after.iter().any(|n| n.name == *i && eligible(n, ip)));
        return !kept && changed.iter().any(|c| c.holds(ip));
    }
    let (prefix_len, _) = aggregation_prefix(ip, pools);
    let Some(routed) = Subnet::new(ip, prefix_len) else { return false };
    changed.iter().any(|c| c.subnets_changed().any(|s| s.overlaps(&routed)))
}

/// The election's eligibility ([`elect`](super::elect)): live, not kept out, a subnet holds `ip`.
fn eligible(node: &NodeFacts, ip: IpAddr) -> bool {
    node.live && node.kept_out().is_none() && node.subnets.iter().any(|s| s.contains(ip))
}

#[cfg(test)]
mod tests;
