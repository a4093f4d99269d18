//! A ServiceGroup being written, and the checks each answer or flag goes through before it is accepted:
//! the name (a DNS subdomain, not taken in any namespace), each pool (core's own `PoolConfig::parse`, then
//! no overlap with another group's pools), and the default subnet (the nodes' InternalIP /24 or /64).
//! Pure.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use purelb_core::api::{PoolSpec, ServiceGroup, ServiceGroupLocal, ServiceGroupSpec};
use purelb_core::pool::{AddressRange, Family, PoolConfig, PoolError, Subnet};

use crate::facts;

/// Why an answer or a flag is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DraftError {
    #[error(
        "{0:?} is not a valid name: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"
    )]
    BadName(String),
    #[error(
        "a ServiceGroup named {name} exists in namespace {namespace}: group names are unique across the cluster"
    )]
    NameTaken { name: String, namespace: String },
    /// Core's parsers refused a subnet, pool or aggregation.
    #[error("{0}")]
    Pool(#[from] PoolError),
    #[error("{what} is {is}, not {wanted}")]
    WrongFamily { what: String, is: Family, wanted: Family },
    #[error("{range} overlaps pool {other} of ServiceGroup {namespace}/{group} ({field})")]
    Overlap { range: String, other: String, namespace: String, group: String, field: String },
    #[error("no node subnet holds {pool} and a range is not a subnet: give its subnet ({flag})")]
    NoSubnet { pool: String, flag: &'static str },
}

/// The group as answered so far.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Draft {
    pub name: String,
    pub namespace: String,
    pub v4: Option<PoolSpec>,
    pub v6: Option<PoolSpec>,
}

impl Draft {
    /// The ServiceGroup object.
    pub fn group(&self) -> ServiceGroup {
        let mut g = ServiceGroup::new(
            &self.name,
            ServiceGroupSpec {
                local: Some(ServiceGroupLocal {
                    v4pools: self.v4.iter().cloned().collect(),
                    v6pools: self.v6.iter().cloned().collect(),
                    ..Default::default()
                }),
            },
        );
        g.metadata.namespace = Some(self.namespace.clone());
        g
    }
}

/// The name is a DNS subdomain and no group has it (names are cluster-wide).
pub fn check_name(name: &str, existing: &[ServiceGroup]) -> Result<(), DraftError> {
    let name = name.trim();
    let ok_chars = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    let ends = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if name.is_empty()
        || name.len() > 253
        || !ok_chars
        || !ends(name.chars().next())
        || !ends(name.chars().last())
    {
        return Err(DraftError::BadName(name.to_owned()));
    }
    if let Some(g) = existing.iter().find(|g| g.name_any() == name) {
        return Err(DraftError::NameTaken {
            name: name.to_owned(),
            namespace: g.namespace().unwrap_or_default(),
        });
    }
    Ok(())
}

/// A subnet of `family`.
pub fn check_subnet(subnet: &str, family: Family) -> Result<Subnet, DraftError> {
    let s = Subnet::parse(subnet)?;
    if s.family() != family {
        return Err(DraftError::WrongFamily { what: s.to_string(), is: s.family(), wanted: family });
    }
    Ok(s)
}

/// A pool checked by core's parser and against every existing group's pools.
pub fn check_pool(
    subnet: &str,
    pool: &str,
    aggregation: &str,
    family: Family,
    existing: &[ServiceGroup],
) -> Result<PoolConfig, DraftError> {
    let config = PoolConfig::parse(subnet, pool, aggregation, Some(family))?;
    for g in existing {
        for read in facts::group_pools(g).unwrap_or_default() {
            let field = &read.field;
            if let Ok(p) = &read.parsed
                && p.range.overlaps(&config.range)
            {
                return Err(DraftError::Overlap {
                    range: config.range.to_string(),
                    other: p.range.to_string(),
                    namespace: g.namespace().unwrap_or_default(),
                    group: g.name_any(),
                    field: field.clone(),
                });
            }
        }
    }
    Ok(config)
}

/// The subnets of the nodes' InternalIP addresses: /24 for IPv4, /64 for IPv6, most common first.
pub fn node_subnets(nodes: &[Node], family: Family) -> Vec<Subnet> {
    let mut counted: Vec<(Subnet, usize)> = Vec::new();
    for n in nodes {
        for a in n.status.iter().flat_map(|s| s.addresses.iter().flatten()) {
            let Ok(ip) = a.address.parse::<IpAddr>() else { continue };
            if a.type_ != "InternalIP" || Family::of(ip) != family {
                continue;
            }
            let prefix = if family == Family::V4 { 24 } else { 64 };
            let Some(s) = Subnet::new(ip, prefix) else { continue };
            match counted.iter_mut().find(|(c, _)| *c == s) {
                Some((_, n)) => *n += 1,
                None => counted.push((s, 1)),
            }
        }
    }
    counted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.to_string().cmp(&b.0.to_string())));
    counted.into_iter().map(|(s, _)| s).collect()
}

/// The subnet for a pool given without one: the nodes' subnet that holds the whole pool, else the pool
/// itself when it is a CIDR (a routed pool). The second value says why.
pub fn default_subnet(pool: &str, family: Family, nodes: &[Subnet]) -> Result<(String, String), DraftError> {
    let range = AddressRange::parse(pool)?;
    if range.family() != family {
        return Err(DraftError::WrongFamily { what: pool.to_owned(), is: range.family(), wanted: family });
    }
    if let Some(s) = nodes.iter().find(|s| s.contains_range(&range)) {
        return Ok((
            s.to_string(),
            format!("the nodes' subnet {s} (their InternalIP addresses) holds the pool"),
        ));
    }
    if let Some(s) = range.as_subnet() {
        return Ok((
            s.to_string(),
            format!("no node subnet holds {pool}; the pool itself is used as its subnet (a routed pool)"),
        ));
    }
    Err(DraftError::NoSubnet {
        pool: pool.to_owned(),
        flag: if family == Family::V4 { "--v4-subnet" } else { "--v6-subnet" },
    })
}

/// An example pool CIDR and range inside `subnet`, for the prompt: the top sixteenth of the subnet as a
/// CIDR (the subnet itself when it is that small) and the 21 addresses starting at its three-quarter mark
/// (fewer when the subnet has fewer).
pub fn example_pools(subnet: &Subnet) -> (String, String) {
    use purelb_core::pool::{ip_to_u128, u128_to_ip};
    let family = subnet.family();
    let bits = family.max_prefix() - subnet.prefix_len();
    let cidr = if bits >= 4 {
        let block = bits - 4;
        let start = ip_to_u128(subnet.last()) & !((1u128 << block) - 1);
        format!("{}/{}", u128_to_ip(start, family), family.max_prefix() - block)
    } else {
        subnet.to_string()
    };
    let first = ip_to_u128(subnet.network());
    let size = ip_to_u128(subnet.last()) - first;
    let from = first + size / 4 * 3;
    let to = (from + 20).min(ip_to_u128(subnet.last()));
    (cidr, format!("{}-{}", u128_to_ip(from, family), u128_to_ip(to, family)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The prompt's examples lie inside the subnet the user typed, and core's parser accepts them.
    #[test]
    fn example_pools_are_valid_pools_of_the_subnet() {
        for (subnet, family, want) in [
            ("203.0.113.0/24", Family::V4, Some(("203.0.113.240/28", "203.0.113.189-203.0.113.209"))),
            ("10.0.0.0/8", Family::V4, Some(("10.240.0.0/12", "10.191.255.253-10.192.0.17"))),
            ("192.0.2.4/30", Family::V4, None),
            ("192.0.2.7/32", Family::V4, None),
            ("2001:db8:100::/64", Family::V6, None),
            ("2001:db8::/127", Family::V6, None),
        ] {
            let s = check_subnet(subnet, family).unwrap();
            let (cidr, range) = example_pools(&s);
            if let Some((c, r)) = want {
                assert_eq!((cidr.as_str(), range.as_str()), (c, r), "{subnet}");
            }
            for pool in [&cidr, &range] {
                check_pool(subnet, pool, "default", family, &[])
                    .unwrap_or_else(|e| panic!("{subnet}: {pool}: {e}"));
            }
        }
    }
    use crate::testing::*;

    #[test]
    fn names_are_dns_subdomains_and_unique_across_namespaces() {
        let existing = [group("other", "web", &[("192.0.2.0/24", "192.0.2.0/28")], &[])];
        assert!(check_name("db", &existing).is_ok());
        assert!(check_name("Web", &existing).unwrap_err().to_string().contains("not a valid name"));
        assert!(check_name("-x", &existing).is_err());
        assert_eq!(
            check_name("web", &existing).unwrap_err().to_string(),
            "a ServiceGroup named web exists in namespace other: group names are unique across the cluster"
        );
    }

    #[test]
    fn pools_go_through_cores_parser_and_the_overlap_check() {
        let existing = [group("other", "web", &[("192.0.2.0/24", "192.0.2.0/28")], &[])];
        let e = check_pool("192.0.2.0/24", "198.51.100.1-198.51.100.9", "default", Family::V4, &existing)
            .unwrap_err();
        assert_eq!(e.to_string(), "pool 198.51.100.1-198.51.100.9 is not inside subnet 192.0.2.0/24");
        let e = check_pool("192.0.2.0/24", "192.0.2.10-192.0.2.20", "default", Family::V4, &existing)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "192.0.2.10-192.0.2.20 overlaps pool 192.0.2.0/28 of ServiceGroup other/web (spec.local.v4pools[0])"
        );
        assert!(
            check_pool("192.0.2.0/24", "192.0.2.16-192.0.2.20", "/33", Family::V4, &existing)
                .unwrap_err()
                .to_string()
                .contains("aggregation")
        );
        assert!(check_pool("192.0.2.0/24", "192.0.2.16-192.0.2.20", "/32", Family::V4, &existing).is_ok());
        assert!(
            check_pool("2001:db8::/64", "2001:db8::/120", "default", Family::V4, &existing)
                .unwrap_err()
                .to_string()
                .contains("IPv6 pool in an IPv4 list")
        );
    }

    #[test]
    fn the_default_subnet_is_the_nodes_or_the_pools_own() {
        let mut n: Node = yaml(
            "apiVersion: v1\nkind: Node\nmetadata: {name: a}\nstatus:\n  addresses:\n  - {type: InternalIP, address: 192.0.2.11}\n  - {type: InternalIP, address: '2001:db8:0:1::11'}\n  - {type: Hostname, address: a}\n",
        );
        let nodes = node_subnets(std::slice::from_mut(&mut n), Family::V4);
        assert_eq!(nodes.iter().map(ToString::to_string).collect::<Vec<_>>(), ["192.0.2.0/24"]);
        assert_eq!(node_subnets(&[n], Family::V6)[0].to_string(), "2001:db8:0:1::/64");
        assert_eq!(default_subnet("192.0.2.200-192.0.2.220", Family::V4, &nodes).unwrap().0, "192.0.2.0/24");
        assert_eq!(default_subnet("198.51.100.0/28", Family::V4, &nodes).unwrap().0, "198.51.100.0/28");
        assert!(
            default_subnet("198.51.100.1-198.51.100.5", Family::V4, &nodes)
                .unwrap_err()
                .to_string()
                .contains("--v4-subnet")
        );
    }
}
