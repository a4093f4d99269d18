//! `pools`: per group and pool, size, used, free and utilisation — computed by purelb-core from the
//! allocator's index rebuilt from the snapshot (`Pool::size`/`in_use`/`available`,
//! `AllocationIndex::usage`), never by counting here. `--show-services` lists who holds which address.

use std::fmt::Write as _;

use purelb_core::allocate::GroupState;
use serde::Serialize;

use crate::facts;
use crate::snapshot::Snapshot;
use crate::style::{Format, bad, table, warn};

/// Usage of every group.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolsReport {
    pub groups: Vec<GroupReport>,
    /// Addresses held by Services that lie in no pool of any group.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outside_pools: Vec<Holding>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupReport {
    pub name: String,
    pub namespaces: Vec<String>,
    /// `usable`, `invalid` or `duplicate`.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Addresses in the group's pools (a string: IPv6 pools can hold more than 2^64).
    pub size: String,
    pub used: u64,
    pub free: String,
    /// Percent used.
    pub utilisation: f64,
    pub pools: Vec<PoolReport>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolReport {
    /// The field it is declared in.
    pub field: String,
    pub pool: String,
    pub subnet: String,
    pub aggregation: String,
    pub size: String,
    pub used: u64,
    pub free: String,
    pub utilisation: f64,
    /// With `--show-services`: who holds which address.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub holders: Vec<Holding>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Holding {
    pub address: String,
    pub services: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sharing_key: Option<String>,
}

fn percent(used: u128, size: u128) -> f64 {
    if size == 0 {
        return 0.0;
    }
    // Rounded to 0.1 %; exact enough for display of any size.
    let tenths = used.saturating_mul(1000) / size;
    tenths as f64 / 10.0
}

fn small(n: u128) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The usage report of the snapshot's groups; `show_services` fills in the holders.
pub fn report(snap: &Snapshot, show_services: bool) -> PoolsReport {
    let (index, _) = facts::rebuild_index(&snap.groups, &snap.services, snap.classless_ours, None);
    let mut groups = Vec::new();
    let mut placed = std::collections::BTreeSet::new();
    for name in index.group_names() {
        let namespaces: Vec<String> = index.group_namespaces(name).into_iter().collect();
        let mut g = GroupReport {
            name: name.to_string(),
            namespaces,
            state: "usable".into(),
            problem: None,
            size: "0".into(),
            used: 0,
            free: "0".into(),
            utilisation: 0.0,
            pools: Vec::new(),
        };
        match index.group(name) {
            Some(GroupState::Usable(slots)) => {
                if let Some(u) = index.usage(name) {
                    let size = u.allocated.saturating_add(u.available);
                    g.size = size.to_string();
                    g.used = small(u.allocated);
                    g.free = u.available.to_string();
                    g.utilisation = percent(u.allocated, size);
                }
                for slot in slots {
                    let p = &slot.pool;
                    let mut holders = Vec::new();
                    if show_services {
                        for (ip, holding) in index.addresses().filter(|(ip, _)| p.contains(**ip)) {
                            placed.insert(*ip);
                            holders.push(Holding {
                                address: ip.to_string(),
                                services: holding.holders.keys().map(ToString::to_string).collect(),
                                sharing_key: holding.sharing_key.clone(),
                            });
                        }
                    }
                    g.pools.push(PoolReport {
                        field: slot.field.clone(),
                        pool: p.config().range.to_string(),
                        subnet: p.config().subnet.to_string(),
                        aggregation: p.config().aggregation.to_string(),
                        size: p.size().to_string(),
                        used: small(p.in_use()),
                        free: p.available().to_string(),
                        utilisation: percent(p.in_use(), p.size()),
                        holders,
                    });
                }
            }
            Some(state @ GroupState::Invalid(_)) => {
                g.state = "invalid".into();
                g.problem = Some(state.condition(name).message);
            }
            Some(state @ GroupState::Duplicate(_)) => {
                g.state = "duplicate".into();
                g.problem = Some(state.condition(name).message);
            }
            None => {}
        }
        groups.push(g);
    }
    let outside_pools = if show_services {
        index
            .addresses()
            .filter(|(ip, _)| !placed.contains(*ip))
            .map(|(ip, h)| Holding {
                address: ip.to_string(),
                services: h.holders.keys().map(ToString::to_string).collect(),
                sharing_key: h.sharing_key.clone(),
            })
            .collect()
    } else {
        Vec::new()
    };
    PoolsReport { groups, outside_pools }
}

/// The report as a table (`wide` adds the subnet, aggregation and field of each pool).
pub fn render(r: &PoolsReport, format: Format, show_services: bool) -> String {
    let wide = format == Format::Wide;
    let mut header = vec!["GROUP", "NAMESPACE", "POOL", "SIZE", "USED", "FREE", "USE%"];
    if wide {
        header.extend(["SUBNET", "AGGREGATION", "FIELD"]);
    }
    let mut rows = Vec::new();
    for g in &r.groups {
        let ns = g.namespaces.join(",");
        if let Some(problem) = &g.problem {
            let mut row =
                vec![g.name.clone(), ns, bad(&g.state), "-".into(), "-".into(), "-".into(), "-".into()];
            if wide {
                row.extend(["-".into(), "-".into(), problem.clone()]);
            }
            rows.push(row);
            continue;
        }
        if g.pools.is_empty() {
            rows.push(vec![
                g.name.clone(),
                ns.clone(),
                warn("no pools"),
                "0".into(),
                "0".into(),
                "0".into(),
                "-".into(),
            ]);
        }
        for p in &g.pools {
            let util = format!("{:.1}%", p.utilisation);
            let util = if p.free == "0" {
                bad(&util)
            } else if p.utilisation >= 80.0 {
                warn(&util)
            } else {
                util
            };
            let mut row = vec![
                g.name.clone(),
                ns.clone(),
                p.pool.clone(),
                p.size.clone(),
                p.used.to_string(),
                p.free.clone(),
                util,
            ];
            if wide {
                row.extend([p.subnet.clone(), p.aggregation.clone(), p.field.clone()]);
            }
            rows.push(row);
        }
    }
    if r.groups.is_empty() {
        return "No ServiceGroups. Create one: kubectl purelb sg create NAME\n".to_string();
    }
    let mut out = table(&header, &rows);
    if show_services {
        let mut rows = Vec::new();
        for g in &r.groups {
            for p in &g.pools {
                for h in &p.holders {
                    rows.push(vec![
                        h.address.clone(),
                        g.name.clone(),
                        p.pool.clone(),
                        h.services.join(", "),
                        h.sharing_key.clone().unwrap_or_default(),
                    ]);
                }
            }
        }
        for h in &r.outside_pools {
            rows.push(vec![
                h.address.clone(),
                warn("(no pool)"),
                "-".into(),
                h.services.join(", "),
                h.sharing_key.clone().unwrap_or_default(),
            ]);
        }
        out.push('\n');
        if rows.is_empty() {
            out.push_str("No Service holds a PureLB address.\n");
        } else {
            let _ = write!(out, "{}", table(&["ADDRESS", "GROUP", "POOL", "SERVICES", "SHARING KEY"], &rows));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    #[test]
    fn counts_come_from_the_rebuilt_index() {
        let mut snap = snapshot();
        snap.groups.push(group("ns", "web", &[("192.0.2.0/24", "192.0.2.10-192.0.2.19")], &[]));
        snap.services.push(allocated("a", "x", "web", &["192.0.2.10"]));
        snap.services.push(allocated("a", "y", "web", &["192.0.2.11"]));
        snap.services.push(allocated("b", "z", "web", &["198.51.100.1"]));
        let r = report(&snap, true);
        let g = &r.groups[0];
        assert_eq!((g.size.as_str(), g.used, g.free.as_str(), g.utilisation), ("10", 2, "8", 20.0));
        assert_eq!(g.pools[0].holders.len(), 2);
        assert_eq!(g.pools[0].holders[0].services, ["a/x"]);
        assert_eq!(r.outside_pools[0].address, "198.51.100.1");
        let text = anstream::adapter::strip_str(&render(&r, Format::Wide, true)).to_string();
        assert!(text.contains("web    ns         192.0.2.10-192.0.2.19  10    2     8     20.0%"), "{text}");
        assert!(text.contains("192.0.2.11    web"), "{text}");
    }

    #[test]
    fn invalid_and_duplicate_groups_are_shown_with_the_problem() {
        let mut snap = snapshot();
        snap.groups.push(group("a", "dup", &[("192.0.2.0/24", "192.0.2.10/31")], &[]));
        snap.groups.push(group("b", "dup", &[("192.0.2.0/24", "192.0.2.20/31")], &[]));
        snap.groups.push(group("a", "bad", &[("192.0.2.0/24", "198.51.100.0/30")], &[]));
        let r = report(&snap, false);
        let states: Vec<(&str, &str)> =
            r.groups.iter().map(|g| (g.name.as_str(), g.state.as_str())).collect();
        assert_eq!(states, [("bad", "invalid"), ("dup", "duplicate")]);
        assert!(r.groups[0].problem.as_deref().unwrap_or_default().contains("is not inside subnet"));
    }

    #[test]
    fn an_ipv6_64_counts_without_overflow() {
        let mut snap = snapshot();
        snap.groups.push(group("ns", "v6", &[], &[("2001:db8::/64", "2001:db8::/64")]));
        let r = report(&snap, false);
        assert_eq!(r.groups[0].size, "18446744073709551616");
    }
}
