//! The node Lease contract between agents (and what `kubectl purelb` reads): one Lease per node,
//! `purelb-node-<node>` in the install namespace, labelled `purelb.io/lease=node`, annotated with the
//! node's LAN interface and its subnets.

use crate::pool::Subnet;

/// Prefix of every node Lease's name.
pub const LEASE_PREFIX: &str = "purelb-node-";
/// The label (key, value) that marks node Leases, so the watch sees only them.
pub const LEASE_LABEL: (&str, &str) = ("purelb.io/lease", "node");
/// Lease annotation: the LAN subnets, comma-separated CIDRs.
pub const SUBNETS_ANNOTATION: &str = "purelb.io/subnets";
/// Lease annotation: the LAN interface's name.
pub const INTERFACE_ANNOTATION: &str = "purelb.io/interface";

/// The name of `node`'s Lease.
pub fn lease_name(node: &str) -> String {
    format!("{LEASE_PREFIX}{node}")
}

/// `192.0.2.0/24,2001:db8:0:1::/64`.
pub fn format_subnets(subnets: &[Subnet]) -> String {
    subnets.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

/// Parses [`SUBNETS_ANNOTATION`]: the subnets read, and the entries that are not CIDRs.
pub fn parse_subnets(text: &str) -> (Vec<Subnet>, Vec<String>) {
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match Subnet::parse(part) {
            Ok(s) if !good.contains(&s) => good.push(s),
            Ok(_) => {}
            Err(_) => bad.push(part.to_string()),
        }
    }
    (good, bad)
}
