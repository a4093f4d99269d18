//! The election of the node that announces a local address: among the live, non-excluded nodes whose
//! LAN subnets hold the address, the one with the lowest sha256(`node#address`). Every node computes the
//! same answer from the same Leases, so no coordination is needed, and addresses spread over nodes.
//!
//! It is sticky ([`elect_keeping`]): when a node already announces the address (the Services'
//! `purelb.io/announcing-IPv4` / `-IPv6`, written by the announcing side) and is still eligible, it
//! keeps it. So an address moves only when its holder stops being eligible (positive evidence: its
//! Lease expired or was deleted, it was excluded, its LAN changed), never because a node came back:
//! a node that returns from a partition or a restart takes nothing back.

use std::fmt::Write as _;
use std::net::IpAddr;

use sha2::{Digest, Sha256};

use super::NodeFacts;

/// One node's standing in an election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeCandidate {
    /// The node.
    pub node: String,
    /// sha256(`node#address`), hex.
    pub hash: String,
    /// Whether it may win.
    pub eligible: bool,
    /// Why (not).
    pub why: String,
}

/// The outcome: every node considered, eligible ones first in winning order, and the winner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Election {
    /// The address.
    pub address: IpAddr,
    /// Every node, eligible first (lowest hash first), then the others.
    pub candidates: Vec<NodeCandidate>,
    /// The lowest eligible hash, if any node is eligible — or the eligible incumbent.
    pub winner: Option<String>,
    /// The winner already announced it and keeps it (whatever the hashes say).
    pub kept_by_incumbent: bool,
}

/// sha256(`node#address`) as lower-case hex.
pub fn election_hash(node: &str, address: IpAddr) -> String {
    let digest = Sha256::digest(format!("{node}#{address}").as_bytes());
    let mut hex = String::with_capacity(64);
    for b in digest.iter() {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// Elects the node that announces the local address `address`, keeping it on an eligible node of
/// `incumbents` (the nodes that announce it now; several only while their reports disagree, when the
/// lowest hash among them wins, so every node still computes the same answer).
pub fn elect_keeping<'a>(
    address: IpAddr,
    nodes: &[NodeFacts],
    incumbents: impl IntoIterator<Item = &'a String>,
) -> Election {
    let mut e = elect(address, nodes);
    let incumbents: Vec<&String> = incumbents.into_iter().collect();
    let kept =
        e.candidates.iter().find(|c| c.eligible && incumbents.contains(&&c.node)).map(|c| c.node.clone());
    if let Some(node) = kept {
        e.kept_by_incumbent = true;
        e.winner = Some(node);
    }
    e
}

/// Elects the node that announces the local address `address` by the hashes alone.
pub fn elect(address: IpAddr, nodes: &[NodeFacts]) -> Election {
    let mut candidates: Vec<NodeCandidate> = nodes
        .iter()
        .map(|n| {
            let (eligible, why) = if !n.live {
                (false, "its agent's Lease is not current".to_string())
            } else if let Some(why) = n.kept_out() {
                (false, why)
            } else if let Some(s) = n.subnets.iter().find(|s| s.contains(address)) {
                (true, format!("{} holds {s}", n.interface))
            } else if n.interface.is_empty() {
                (false, "its agent reports no LAN interface".to_string())
            } else {
                (false, format!("no subnet of {} holds {address}", n.interface))
            };
            NodeCandidate { node: n.name.clone(), hash: election_hash(&n.name, address), eligible, why }
        })
        .collect();
    candidates.sort_by(|a, b| b.eligible.cmp(&a.eligible).then_with(|| a.hash.cmp(&b.hash)));
    let winner = candidates.first().filter(|c| c.eligible).map(|c| c.node.clone());
    Election { address, candidates, winner, kept_by_incumbent: false }
}
