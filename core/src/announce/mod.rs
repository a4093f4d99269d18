//! Announcement: where each address of a Service goes and why — on which node, on which interface,
//! with which prefix length.
//!
//! - Local or not: an address is local on a node when it lies in a subnet of the node's LAN interface.
//! - Local addresses: the live, non-excluded nodes whose subnets hold the address are candidates; the
//!   node that announces it now keeps it while it is one, else the winner is the lowest
//!   sha256(`node#address`) ([`elect_keeping`], [`elect`]). Only the winner adds it, to its LAN
//!   interface, with the subnet's prefix length.
//! - Non-local addresses: added to `kube-lb0` with the group's aggregation, on every live node
//!   (`externalTrafficPolicy: Cluster`) or only on nodes with a ready endpoint (`Local`) — never when
//!   the announced prefix overlaps a node's LAN subnet ([`plan_for_node`], from the nodes' Leases) or a
//!   subnet connected on the node itself ([`refuse_connected`], from its kernel): routing it would
//!   hijack that LAN (BIRD exports whatever is on `kube-lb0`).
//! - A local address with `externalTrafficPolicy: Local`: announced as Cluster, and the decision says
//!   the policy must be reset (the seed: "PureLB will reset External Traffic Policy to Cluster").
//!
//! Every answer carries its reasons so that `explain` can show them. [`facts`] turns watched objects
//! into these inputs; [`report`] decides which agent reports a Service's announcement and what it shows;
//! [`change`] says which placements a change of other nodes can reach.

pub mod change;
pub mod departure;
mod election;
pub mod facts;
pub mod report;
pub mod settings;
#[cfg(test)]
mod tests;
pub mod view;

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

pub use election::{Election, NodeCandidate, elect, elect_keeping, election_hash};

use crate::pool::{Family, PoolConfig, Subnet};

pub use crate::api::EXCLUDE_LABEL;

/// What PureLB knows about one node (from its Node object and its agent's Lease).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeFacts {
    /// The Kubernetes Node name.
    pub name: String,
    /// The subnets of its LAN interface, as its agent reports them.
    pub subnets: Vec<Subnet>,
    /// The LAN interface's name.
    pub interface: String,
    /// Its agent's Lease is current.
    pub live: bool,
    /// Carries [`EXCLUDE_LABEL`].
    pub excluded: bool,
    /// Its kubelet began a graceful node shutdown ([`facts::node_shutting_down`]): it hands its
    /// addresses over while its workloads still run.
    pub shutting_down: bool,
}

impl NodeFacts {
    /// Why the node is kept out of announcements whatever its Lease says (the exclude label, a
    /// graceful shutdown), if it is.
    pub fn kept_out(&self) -> Option<String> {
        if self.excluded {
            Some(format!("labelled {EXCLUDE_LABEL}"))
        } else if self.shutting_down {
            Some(format!("shutting down (its Ready condition says \"{}\")", facts::NODE_SHUTTING_DOWN))
        } else {
            None
        }
    }
}

/// What the announcement of one Service depends on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceFacts {
    /// The allocated addresses (`status.loadBalancer.ingress`).
    pub addresses: Vec<IpAddr>,
    /// `externalTrafficPolicy: Local`.
    pub local_traffic_policy: bool,
    /// Nodes with a ready endpoint of the Service (from EndpointSlices' `nodeName`).
    pub endpoint_nodes: BTreeSet<String>,
    /// Per address, the nodes that announce it now (from every Service holding it: `facts::incumbents`);
    /// an eligible one keeps it (see `elect_keeping`).
    pub incumbents: std::collections::BTreeMap<IpAddr, BTreeSet<String>>,
}

/// Where an address goes on one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// On the LAN interface (a local address this node won).
    Local {
        /// The LAN interface.
        interface: String,
        /// The prefix length (the subnet's).
        prefix_len: u8,
    },
    /// On the external LB interface (`kube-lb0`), for routing.
    NonLocal {
        /// The interface, e.g. `kube-lb0`.
        interface: String,
        /// The prefix length (the group's aggregation).
        prefix_len: u8,
    },
    /// Not on this node.
    Absent,
}

impl Placement {
    /// The interface and prefix length, unless absent.
    pub fn target(&self) -> Option<(&str, u8)> {
        match self {
            Self::Local { interface, prefix_len } | Self::NonLocal { interface, prefix_len } => {
                Some((interface, *prefix_len))
            }
            Self::Absent => None,
        }
    }
}

/// The decision for one address on one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressPlan {
    /// The address.
    pub address: IpAddr,
    /// Where it goes on this node.
    pub placement: Placement,
    /// For a local address: the election among the nodes of its subnet.
    pub election: Option<Election>,
    /// The Service asks for `externalTrafficPolicy: Local` on a local address: reset it to Cluster.
    pub reset_traffic_policy: bool,
    /// The reasons, in plain words.
    pub reasons: Vec<String>,
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local { interface, prefix_len } => write!(f, "local on {interface} (/{prefix_len})"),
            Self::NonLocal { interface, prefix_len } => write!(f, "non-local on {interface} (/{prefix_len})"),
            Self::Absent => f.write_str("not announced here"),
        }
    }
}

/// The prefix length a non-local address is announced with: the aggregation of the first pool that
/// holds it; the full length (/32, /128) when no pool does (the group was deleted), with a reason.
pub fn aggregation_prefix(address: IpAddr, pools: &[PoolConfig]) -> (u8, String) {
    match pools.iter().find(|p| p.range.contains(address)) {
        Some(p) => {
            let len = p.aggregation.prefix_len(&p.subnet);
            (len, format!("aggregation {} of pool {} gives /{len}", p.aggregation, p.range))
        }
        None => {
            let len = Family::of(address).max_prefix();
            (len, format!("no pool holds {address} any more; announced as /{len}"))
        }
    }
}

/// The same plan, with every non-local placement whose prefix overlaps one of `connected` (the subnets
/// of addresses on this node's other interfaces, as its kernel shows them) turned absent, with the
/// reason: a routed prefix must never cover a network the node is attached to.
pub fn refuse_connected(mut plan: AddressPlan, connected: &[Subnet]) -> AddressPlan {
    let Placement::NonLocal { interface, prefix_len } = &plan.placement else { return plan };
    let Some(routed) = Subnet::new(plan.address, *prefix_len) else { return plan };
    if let Some(s) = connected.iter().find(|s| s.overlaps(&routed)) {
        plan.reasons.push(format!(
            "refused: announcing {routed} on {interface} would overlap {s}, connected on this node, and routing it would hijack that network"
        ));
        plan.placement = Placement::Absent;
    }
    plan
}

/// Where each address of `svc` goes on node `me`. `nodes` holds every node (including `me`),
/// `pools` every pool of every ServiceGroup, `extlbint` the non-local interface name.
pub fn plan_for_node(
    me: &str,
    svc: &ServiceFacts,
    nodes: &[NodeFacts],
    pools: &[PoolConfig],
    extlbint: &str,
) -> Vec<AddressPlan> {
    plan_with(me, svc, nodes, pools, extlbint, &Elections::new(svc))
}

/// The elections of one Service's addresses, each held once it is first needed: an election does not
/// depend on the node asking, so one Service's plans on every node (its report) and its reporter share
/// them instead of hashing every node again for each.
pub(crate) struct Elections(Vec<std::cell::OnceCell<Election>>);

impl Elections {
    /// None held yet, one per address of `svc`.
    pub(crate) fn new(svc: &ServiceFacts) -> Self {
        Self(svc.addresses.iter().map(|_| std::cell::OnceCell::new()).collect())
    }

    /// The election of `svc`'s address number `i` (`ip`) among `nodes`.
    pub(crate) fn get(&self, i: usize, ip: IpAddr, svc: &ServiceFacts, nodes: &[NodeFacts]) -> Election {
        let elect = || elect_keeping(ip, nodes, svc.incumbents.get(&ip).into_iter().flatten());
        match self.0.get(i) {
            Some(cell) => cell.get_or_init(elect).clone(),
            None => elect(),
        }
    }
}

/// [`plan_for_node`] with the Service's elections shared with other plans of it.
pub(crate) fn plan_with(
    me: &str,
    svc: &ServiceFacts,
    nodes: &[NodeFacts],
    pools: &[PoolConfig],
    extlbint: &str,
    elections: &Elections,
) -> Vec<AddressPlan> {
    let this = nodes.iter().find(|n| n.name == me);
    let plan = |(i, ip): (usize, &IpAddr)| {
        let election = || elections.get(i, *ip, svc, nodes);
        plan_address(*ip, this, me, svc, election, nodes, pools, extlbint)
    };
    svc.addresses.iter().enumerate().map(plan).collect()
}

#[allow(clippy::too_many_arguments)]
fn plan_address(
    ip: IpAddr,
    this: Option<&NodeFacts>,
    me: &str,
    svc: &ServiceFacts,
    election: impl FnOnce() -> Election,
    nodes: &[NodeFacts],
    pools: &[PoolConfig],
    extlbint: &str,
) -> AddressPlan {
    let mut reasons = Vec::new();
    let absent = |reasons: Vec<String>| AddressPlan {
        address: ip,
        placement: Placement::Absent,
        election: None,
        reset_traffic_policy: false,
        reasons,
    };
    let Some(this) = this else {
        reasons.push(format!("node {me} has no facts yet (no live agent Lease)"));
        return absent(reasons);
    };
    if let Some(subnet) = this.subnets.iter().find(|s| s.contains(ip)) {
        reasons.push(format!("{ip} is local: it lies in {subnet} of {} on {me}", this.interface));
        let election = election();
        let reset = svc.local_traffic_policy;
        if reset {
            reasons.push(
                "externalTrafficPolicy: Local is not supported for a local address: it is reset to Cluster"
                    .to_string(),
            );
        }
        let placement = if election.winner.as_deref() == Some(me) {
            reasons.push(if election.kept_by_incumbent {
                format!("{me} already announces it and is still eligible: it keeps it")
            } else {
                format!("{me} won the election")
            });
            Placement::Local { interface: this.interface.clone(), prefix_len: subnet.prefix_len() }
        } else {
            reasons.push(match &election.winner {
                Some(w) if election.kept_by_incumbent => {
                    format!("{w} already announces it and is still eligible: it keeps it, not {me}")
                }
                Some(w) => format!("{w} won the election, not {me}"),
                None => "no node is eligible".to_string(),
            });
            Placement::Absent
        };
        return AddressPlan {
            address: ip,
            placement,
            election: Some(election),
            reset_traffic_policy: reset,
            reasons,
        };
    }
    reasons.push(format!("{ip} is not local on {me}: no subnet of {} holds it", this.interface));
    if !this.live {
        reasons.push(format!("{me} is not live"));
        return absent(reasons);
    }
    if let Some(why) = this.kept_out() {
        reasons.push(format!("{me} is {why}"));
        return absent(reasons);
    }
    if svc.local_traffic_policy && !svc.endpoint_nodes.contains(me) {
        reasons.push(format!("externalTrafficPolicy: Local and {me} has no ready endpoint"));
        return absent(reasons);
    }
    reasons.push(if svc.local_traffic_policy {
        format!("externalTrafficPolicy: Local and {me} has a ready endpoint")
    } else {
        "externalTrafficPolicy: Cluster: every live node announces it".to_string()
    });
    let (prefix_len, why) = aggregation_prefix(ip, pools);
    reasons.push(why);
    if let Some(routed) = Subnet::new(ip, prefix_len)
        && let Some((node, lan)) =
            nodes.iter().find_map(|n| n.subnets.iter().find(|s| s.overlaps(&routed)).map(|s| (n, s)))
    {
        reasons.push(format!(
            "refused: announcing {routed} on {extlbint} would overlap {lan}, the LAN of {}, and routing it would hijack that LAN",
            node.name
        ));
        return absent(reasons);
    }
    AddressPlan {
        address: ip,
        placement: Placement::NonLocal { interface: extlbint.to_string(), prefix_len },
        election: None,
        reset_traffic_policy: false,
        reasons,
    }
}
