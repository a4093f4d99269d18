//! What a Service should show about its announcement, and which agent writes it. Pure: no I/O.
//!
//! One writer per Service at a time, so that agents never fight over a field: the **reporter**, which
//! every agent computes alike from the same node Leases ([`reporter`]):
//! - the winner of the Service's first address that has a local winner (the node holding that address
//!   on its LAN reports it, as in the seed);
//! - else (only non-local addresses, or no eligible node) the live node with the lowest
//!   sha256(`node#first address`), which spreads the reporting of routed Services over the nodes;
//! - a Service without addresses (released, or no longer ours) but still showing our fields: the live
//!   node with the lowest name, which removes them.
//!
//! The reporter writes, for every address, the whole truth computed from every node's
//! `plan_for_node` ([`report`]): the annotation `purelb.io/announcing-IPv4` / `-IPv6` =
//! `<node>, <interface>` for a family whose address has a local winner, and the condition
//! `purelb.io/Announced`: `True`/`Announced` when every address is announced somewhere (message e.g.
//! `192.0.2.200 on node1/eth0; 198.51.100.5/32 on kube-lb0 of every live node`, or the nodes named
//! when only some of the live ones route it, as with `externalTrafficPolicy: Local`), else
//! `False`/`NotAnnounced` with the reasons. How it is written (per-node field managers) is in `k8s`.
//! While nodes disagree about liveness (for less than a Lease duration) two of them may both believe
//! they report; each writes the truth as it sees it and they converge when their views do.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::announce::{AddressPlan, Elections, NodeFacts, Placement, ServiceFacts, election_hash, plan_with};
use crate::api::{annotations, conditions};
use crate::pool::{Family, PoolConfig};
use crate::service::ServiceFields;

pub use crate::api::conditions::{
    ANNOUNCED_REASON as REASON_ANNOUNCED, NOT_ANNOUNCED_REASON as REASON_NOT_ANNOUNCED,
};
/// Nodes named in a non-local summary before "and N more".
const NAMES_SHOWN: usize = 5;

/// The `purelb.io/Announced` condition's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionReport {
    /// `True` / `False`.
    pub status: bool,
    /// [`REASON_ANNOUNCED`] or [`REASON_NOT_ANNOUNCED`].
    pub reason: String,
    /// What is announced where, or why not.
    pub message: String,
}

/// The agent-written fields of a Service: the announcing annotations and the condition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceReport {
    /// `purelb.io/announcing-IPv4` / `-IPv6` → `<node>, <interface>`.
    pub annotations: BTreeMap<String, String>,
    /// `purelb.io/Announced`.
    pub condition: Option<ConditionReport>,
}

impl ServiceReport {
    /// What `svc` shows now.
    pub fn observed(svc: &(impl ServiceFields + ?Sized)) -> ServiceReport {
        let annotations = [annotations::ANNOUNCING_IPV4, annotations::ANNOUNCING_IPV6]
            .into_iter()
            .filter_map(|k| Some((k.to_string(), svc.annotation(k)?.to_string())))
            .collect();
        let condition = svc.condition(conditions::ANNOUNCED).map(|c| ConditionReport {
            status: c.status == "True",
            reason: c.reason.to_string(),
            message: c.message.to_string(),
        });
        ServiceReport { annotations, condition }
    }

    /// Whether it shows nothing.
    pub fn is_empty(&self) -> bool {
        self.annotations.is_empty() && self.condition.is_none()
    }
}

/// The node that writes `svc`'s report (see the module header); None when no node is live.
pub fn reporter(svc: &ServiceFacts, nodes: &[NodeFacts]) -> Option<String> {
    reporter_with(svc, nodes, &Elections::new(svc))
}

/// [`reporter`] with the Service's elections shared with its plans.
pub(crate) fn reporter_with(
    svc: &ServiceFacts,
    nodes: &[NodeFacts],
    elections: &Elections,
) -> Option<String> {
    for (i, ip) in svc.addresses.iter().enumerate() {
        if let Some(winner) = elections.get(i, *ip, svc, nodes).winner {
            return Some(winner);
        }
    }
    let live = nodes.iter().filter(|n| n.live);
    match svc.addresses.first() {
        Some(ip) => live.min_by_key(|n| election_hash(&n.name, *ip)).map(|n| n.name.clone()),
        None => live.map(|n| n.name.clone()).min(),
    }
}

/// What `svc` should show, from every node's plan. Empty for a Service without addresses.
pub fn report(
    svc: &ServiceFacts,
    nodes: &[NodeFacts],
    pools: &[PoolConfig],
    extlbint: &str,
) -> ServiceReport {
    report_with(svc, nodes, pools, extlbint, &Elections::new(svc))
}

/// [`report`] with the Service's elections computed once for every node's plan.
pub(crate) fn report_with(
    svc: &ServiceFacts,
    nodes: &[NodeFacts],
    pools: &[PoolConfig],
    extlbint: &str,
    elections: &Elections,
) -> ServiceReport {
    let mut out = ServiceReport::default();
    if svc.addresses.is_empty() {
        return out;
    }
    let plans: Vec<(&NodeFacts, Vec<AddressPlan>)> =
        nodes.iter().map(|n| (n, plan_with(&n.name, svc, nodes, pools, extlbint, elections))).collect();
    let mut parts = Vec::new();
    let mut all = true;
    for (i, ip) in svc.addresses.iter().enumerate() {
        let local = plans.iter().find_map(|n| match n.1.get(i).map(|p| &p.placement) {
            Some(Placement::Local { interface, .. }) => Some((n.0.name.clone(), interface.clone())),
            _ => None,
        });
        let mut routed: Option<(String, u8)> = None;
        let mut routers: Vec<&str> = Vec::new();
        for n in &plans {
            if let Some(Placement::NonLocal { interface, prefix_len }) = n.1.get(i).map(|p| &p.placement) {
                routed.get_or_insert((interface.clone(), *prefix_len));
                routers.push(&n.0.name);
            }
        }
        let mut text = String::new();
        if let Some((node, interface)) = &local {
            text = format!("{ip} on {node}/{interface}");
            let key = match Family::of(*ip) {
                Family::V4 => annotations::ANNOUNCING_IPV4,
                Family::V6 => annotations::ANNOUNCING_IPV6,
            };
            out.annotations.entry(key.to_string()).or_insert_with(|| format!("{node}, {interface}"));
        }
        if let Some((interface, prefix_len)) = &routed {
            let nodes = if every_live_node(svc, nodes, &routers) {
                "every live node".to_string()
            } else {
                names(&routers)
            };
            text = if text.is_empty() {
                format!("{ip}/{prefix_len} on {interface} of {nodes}")
            } else {
                format!("{text} and on {interface} (/{prefix_len}) of {nodes}")
            };
        }
        if text.is_empty() {
            all = false;
            text = format!("{ip} is not announced: {}", why_not(*ip, i, &plans));
        }
        parts.push(text);
    }
    out.condition = Some(ConditionReport {
        status: all,
        reason: if all { REASON_ANNOUNCED } else { REASON_NOT_ANNOUNCED }.to_string(),
        message: parts.join("; "),
    });
    out
}

/// Whether the nodes routing an address are simply all that can: every live node not excluded, with
/// `externalTrafficPolicy: Cluster`. The report then says so instead of naming them, so that a node
/// coming or going (an agent restart, a rolling update) rewrites no Service: naming them would cost
/// every Service two status writes per node restart. `explain` names them.
/// `routers` are in `nodes` order (they come from one plan per node), so one ordered comparison does.
fn every_live_node(svc: &ServiceFacts, nodes: &[NodeFacts], routers: &[&str]) -> bool {
    let eligible = nodes.iter().filter(|n| n.live && n.kept_out().is_none()).map(|n| n.name.as_str());
    !svc.local_traffic_policy && routers.iter().copied().eq(eligible)
}

/// `node1, node2` or `node1, node2, … and 7 more`.
fn names(nodes: &[&str]) -> String {
    let shown = nodes.iter().take(NAMES_SHOWN).copied().collect::<Vec<_>>().join(", ");
    match nodes.len() {
        1 => format!("node {shown}"),
        n if n > NAMES_SHOWN => format!("{n} nodes ({shown} and {} more)", n - NAMES_SHOWN),
        n => format!("{n} nodes ({shown})"),
    }
}

/// The distinct final reasons of the live nodes' plans for address `i`.
fn why_not(ip: IpAddr, i: usize, plans: &[(&NodeFacts, Vec<AddressPlan>)]) -> String {
    let mut reasons: Vec<&str> = Vec::new();
    for (_, p) in plans.iter().filter(|(n, _)| n.live) {
        if let Some(r) = p.get(i).and_then(|p| p.reasons.last())
            && !reasons.contains(&r.as_str())
        {
            reasons.push(r);
        }
    }
    if reasons.is_empty() {
        return format!("no node that could announce {ip} is live");
    }
    let more = reasons.len().saturating_sub(3);
    let mut text = reasons.into_iter().take(3).collect::<Vec<_>>().join("; ");
    if more > 0 {
        text.push_str(&format!("; and {more} more reasons"));
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::announce::elect;
    use crate::pool::Subnet;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn node(name: &str, live: bool) -> NodeFacts {
        NodeFacts {
            name: name.into(),
            subnets: vec![
                Subnet::parse("192.0.2.0/24").unwrap(),
                Subnet::parse("2001:db8:0:1::/64").unwrap(),
            ],
            interface: "eth0".into(),
            live,
            excluded: false,
            shutting_down: false,
        }
    }

    fn nodes() -> Vec<NodeFacts> {
        vec![node("node1", true), node("node2", true), node("node3", true)]
    }

    fn pools() -> Vec<PoolConfig> {
        vec![PoolConfig::parse("198.51.100.0/24", "198.51.100.0/24", "/32", None).unwrap()]
    }

    fn svc(addrs: &[&str]) -> ServiceFacts {
        ServiceFacts { addresses: addrs.iter().map(|a| ip(a)).collect(), ..Default::default() }
    }

    #[test]
    fn the_local_winner_reports_and_names_itself() {
        let s = svc(&["192.0.2.200"]);
        let winner = elect(ip("192.0.2.200"), &nodes()).winner.unwrap();
        assert_eq!(reporter(&s, &nodes()).unwrap(), winner);
        let r = report(&s, &nodes(), &pools(), "kube-lb0");
        assert_eq!(r.annotations[annotations::ANNOUNCING_IPV4], format!("{winner}, eth0"));
        let c = r.condition.unwrap();
        assert!(c.status);
        assert_eq!(c.reason, REASON_ANNOUNCED);
        assert_eq!(c.message, format!("192.0.2.200 on {winner}/eth0"));
    }

    #[test]
    fn dual_stack_names_each_familys_winner() {
        let s = svc(&["192.0.2.200", "2001:db8:0:1::200"]);
        let r = report(&s, &nodes(), &pools(), "kube-lb0");
        let w6 = elect(ip("2001:db8:0:1::200"), &nodes()).winner.unwrap();
        assert_eq!(r.annotations[annotations::ANNOUNCING_IPV6], format!("{w6}, eth0"));
        assert_eq!(r.annotations.len(), 2);
    }

    #[test]
    fn non_local_summary_stays_the_same_while_nodes_come_and_go() {
        let s = svc(&["198.51.100.5"]);
        let r = report(&s, &nodes(), &pools(), "kube-lb0");
        assert!(r.annotations.is_empty());
        let all = r.condition.unwrap();
        assert_eq!(all.message, "198.51.100.5/32 on kube-lb0 of every live node");
        // A node restarting (its Lease gone) or excluded changes nothing to write.
        let mut ns = nodes();
        ns[1].live = false;
        assert_eq!(report(&s, &ns, &pools(), "kube-lb0").condition.unwrap(), all);
        ns[1].live = true;
        ns[2].excluded = true;
        assert_eq!(report(&s, &ns, &pools(), "kube-lb0").condition.unwrap(), all);
    }

    #[test]
    fn non_local_summary_names_the_nodes_when_only_some_route_it() {
        let mut s = svc(&["198.51.100.5"]);
        s.local_traffic_policy = true;
        s.endpoint_nodes = ["node1".to_string(), "node3".to_string()].into();
        let r = report(&s, &nodes(), &pools(), "kube-lb0");
        assert_eq!(r.condition.unwrap().message, "198.51.100.5/32 on kube-lb0 of 2 nodes (node1, node3)");
        // With endpoints on every node it still names them: they follow the pods, not the nodes.
        s.endpoint_nodes = ["node1", "node2", "node3"].map(String::from).into();
        let r = report(&s, &nodes(), &pools(), "kube-lb0");
        assert_eq!(
            r.condition.unwrap().message,
            "198.51.100.5/32 on kube-lb0 of 3 nodes (node1, node2, node3)"
        );
    }

    #[test]
    fn every_node_agrees_on_one_live_reporter() {
        let s = svc(&["198.51.100.5"]);
        // Every node agrees on one reporter, a live one.
        let mut ns = nodes();
        let first = reporter(&s, &ns).unwrap();
        ns.iter_mut().find(|n| n.name == first).unwrap().live = false;
        let second = reporter(&s, &ns).unwrap();
        assert_ne!(first, second);
    }

    #[test]
    fn an_address_announced_nowhere_says_why() {
        let mut s = svc(&["198.51.100.5"]);
        s.local_traffic_policy = true;
        let r = report(&s, &nodes(), &pools(), "kube-lb0");
        let c = r.condition.unwrap();
        assert!(!c.status);
        assert_eq!(c.reason, REASON_NOT_ANNOUNCED);
        assert!(
            c.message.starts_with("198.51.100.5 is not announced: externalTrafficPolicy: Local"),
            "{}",
            c.message
        );
    }

    #[test]
    fn a_service_without_addresses_reports_nothing_and_the_lowest_live_node_cleans_up() {
        let s = svc(&[]);
        assert!(report(&s, &nodes(), &pools(), "kube-lb0").is_empty());
        let ns = vec![node("node2", true), node("node1", false), node("node3", true)];
        assert_eq!(reporter(&s, &ns).unwrap(), "node2");
        assert!(reporter(&s, &[node("node1", false)]).is_none());
    }

    #[test]
    fn many_nodes_are_summarised() {
        assert_eq!(names(&["a"]), "node a");
        assert_eq!(names(&["a", "b", "c", "d", "e", "f", "g"]), "7 nodes (a, b, c, d, e and 2 more)");
    }
}
