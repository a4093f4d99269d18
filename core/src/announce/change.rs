//! What a change of other nodes' facts can reach: when a node's Lease expires, is deleted or comes back,
//! or a node is excluded, only some Services can look different from this node, and an agent re-plans
//! only those ([`view_may_change`]) instead of every Service.
//!
//! The rules follow [`plan_for_node`](super::plan_for_node), the sticky election and `report`:
//! - a local address on this node keeps its winner while an unchanged incumbent is still eligible, so it
//!   can move only when one of its incumbents changed, or when no unchanged incumbent is eligible (a
//!   fresh election) and a changed node's subnets hold it (before or after: its eligibility may differ);
//! - a non-local address on this node depends on the other nodes only through the refusal of a routed
//!   prefix over a node's LAN subnet, so it can move only when a changed node gained or lost a subnet
//!   that overlaps its routed prefix ([`placement_may_change`]);
//! - a node's report of a Service (when it is its reporter) can change only when an address's election
//!   can (an incumbent changed, or a changed node's subnets hold it), when a changed node starts or stops
//!   routing an address whose report names its routers (`externalTrafficPolicy: Local`, or some eligible
//!   node holds the address), when an address is announced nowhere before or after (its reasons name
//!   nodes), or when the reporter itself can change: for a Service without a local winner, a changed node
//!   that ranks above this one for its first address came or went.
//!
//! Exposes [`NodeChange`], [`changed_nodes`], [`placement_may_change`] and [`view_may_change`].

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::{NodeFacts, ServiceFacts, aggregation_prefix, election_hash};
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
    refusal_may_change(ip, changed, pools)
}

/// Whether node `me`'s view of `svc` (its placements, and the report it must show when it is the
/// Service's reporter; `was_reporter`: it was before the change) can differ after the `changed` nodes
/// changed (from `before` to `after`), `me`, the pools and the Service being the same. See the module
/// documentation. A Service without addresses (one whose fields a reporter clears) always may.
pub fn view_may_change(
    me: &NodeFacts,
    svc: &ServiceFacts,
    was_reporter: bool,
    changed: &[NodeChange<'_>],
    before: &[NodeFacts],
    after: &[NodeFacts],
    pools: &[PoolConfig],
) -> bool {
    if changed.is_empty() {
        return false;
    }
    if changed.iter().any(|c| c.name == me.name) || svc.addresses.is_empty() {
        return true;
    }
    let none = BTreeSet::new();
    for ip in &svc.addresses {
        let incumbents = svc.incumbents.get(ip).unwrap_or(&none);
        // This node's own placement, then the address's election, which every node's view shares. (Its
        // routed prefix's refusal needs no rule of its own: when this node holds the address its own
        // LAN overlaps the prefix, so it stays refused; else the placement rule covers it.)
        if placement_may_change(me, *ip, incumbents, changed, after, pools)
            || changed.iter().any(|c| c.holds(*ip) || incumbents.iter().any(|i| i == c.name))
        {
            return true;
        }
    }
    // Every election is as it was, so is whether a local winner reports the Service, and which.
    let winner = svc.addresses.iter().find_map(|ip| after.iter().find(|n| eligible(n, *ip)).map(|_| *ip));
    let reporter_may_change = winner.is_none() && {
        let first = svc.addresses[0];
        let mine = election_hash(&me.name, first);
        let live = |n: Option<&NodeFacts>| n.is_some_and(|n| n.live);
        changed.iter().any(|c| {
            let came = !live(c.before) && live(c.after);
            let went = live(c.before) && !live(c.after);
            // A node ranked above this one came (it may now report what this one did) or went (it may
            // have reported what this one now does).
            (came && was_reporter || went && !was_reporter) && election_hash(c.name, first) < mine
        })
    };
    if reporter_may_change {
        return true;
    }
    if !was_reporter {
        // Not the reporter before, and no change can make it one: no report to show either way.
        return false;
    }
    svc.addresses.iter().any(|ip| report_text_may_change(*ip, svc, changed, before, after, pools))
}

/// With every election and refusal of `ip` as it was: whether the report's words for it can change.
fn report_text_may_change(
    ip: IpAddr,
    svc: &ServiceFacts,
    changed: &[NodeChange<'_>],
    before: &[NodeFacts],
    after: &[NodeFacts],
    pools: &[PoolConfig],
) -> bool {
    // Refused over a node's LAN, it is routed nowhere (the refusal is as it was: no LAN over it changed).
    let (prefix_len, _) = aggregation_prefix(ip, pools);
    let refused = Subnet::new(ip, prefix_len)
        .is_some_and(|routed| after.iter().any(|n| n.subnets.iter().any(|s| s.overlaps(&routed))));
    let routes = |n: &NodeFacts| {
        !refused
            && n.live
            && n.kept_out().is_none()
            && !n.subnets.iter().any(|s| s.contains(ip))
            && (!svc.local_traffic_policy || svc.endpoint_nodes.contains(&n.name))
    };
    let announced = |nodes: &[NodeFacts]| nodes.iter().any(|n| eligible(n, ip) || routes(n));
    if !announced(before) || !announced(after) {
        // Announced nowhere: the report gives every live node's reasons, which name nodes.
        return true;
    }
    let routers_changed = changed.iter().any(|c| c.before.is_some_and(routes) != c.after.is_some_and(routes));
    if !routers_changed {
        return false;
    }
    // Routers came or went (some are left: it is announced): the words change when they name the
    // routers, with `externalTrafficPolicy: Local` or when an eligible node holds the address (it is
    // then not "every live node"); else they say "every live node" before and after.
    svc.local_traffic_policy || after.iter().any(|n| eligible(n, ip))
}

/// Whether the refusal of `ip`'s routed prefix (it must not overlap any node's LAN) can differ: a changed
/// node gained or lost a subnet that overlaps it.
fn refusal_may_change(ip: IpAddr, changed: &[NodeChange<'_>], pools: &[PoolConfig]) -> bool {
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
