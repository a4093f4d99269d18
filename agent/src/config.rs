//! The agent's configuration, read from the `LBNodeAgent` in the install namespace, and the choice of
//! the LAN interface it implies. Pure: no I/O. Reading the LBNodeAgent itself (trimming, the anchored
//! pattern, the defaults) is `purelb_core::announce::settings`, shared with `kubectl purelb`.
//!
//! - Which LBNodeAgent: the one named `default`; else the first by name; none at all = the defaults
//!   (`localint: default`, `extlbint: kube-lb0`, `sendgarp: true`).
//! - `localint: default`: the interface of the default route (IPv4 first, as the netlink module reports).
//! - Any other `localint` is a regular expression (Rust `regex` syntax) matched against the **whole**
//!   interface name: it is anchored as `^(?:<localint>)$`, so `eth` matches `eth` and not `eth0` or
//!   `veth12`, and `eth.*` or `enp[0-9]s[0-9]+` say what they mean. Among the matching interfaces (never
//!   the `extlbint` one), the lowest-index one that has a global address the agent did not add wins.
//! - A pattern that does not compile is an error: the caller keeps its previous configuration and
//!   reports it with a Warning event on the LBNodeAgent.
//! - The LAN subnets are the LAN interface's global addresses that the agent did not add (IFA_PROTO),
//!   host bits masked, IPv4 and IPv6.

pub use purelb_core::announce::settings::{AgentConfig, LocalInt};
use purelb_core::pool::Subnet;

use crate::netlink::LinkInfo;

/// Why no LAN interface is usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoLan {
    #[error("there is no default route")]
    NoDefaultRoute,
    #[error("the default route's interface {0} is not in the link list")]
    DefaultRouteInterfaceMissing(String),
    #[error("no interface matches localint {0}")]
    NoMatch(String),
    #[error("the interfaces matching localint {localint} ({interfaces}) have no global address")]
    NoGlobalAddress { localint: String, interfaces: String },
}

/// The LAN interface `localint` selects among `links`; `default_route` is the default route's
/// interface.
pub fn lan_interface<'a>(
    config: &AgentConfig,
    links: &'a [LinkInfo],
    default_route: Option<&str>,
) -> Result<&'a LinkInfo, NoLan> {
    match &config.localint {
        LocalInt::DefaultRoute => {
            let name = default_route.ok_or(NoLan::NoDefaultRoute)?;
            links
                .iter()
                .find(|l| l.name == name)
                .ok_or_else(|| NoLan::DefaultRouteInterfaceMissing(name.to_owned()))
        }
        LocalInt::Pattern { regex, .. } => {
            let mut matching: Vec<&LinkInfo> =
                links.iter().filter(|l| l.name != config.extlbint && regex.is_match(&l.name)).collect();
            matching.sort_by_key(|l| l.index);
            if matching.is_empty() {
                return Err(NoLan::NoMatch(config.localint.to_string()));
            }
            matching.iter().find(|l| !lan_subnets(l).is_empty()).copied().ok_or_else(|| {
                NoLan::NoGlobalAddress {
                    localint: config.localint.to_string(),
                    interfaces: matching.iter().map(|l| l.name.as_str()).collect::<Vec<_>>().join(", "),
                }
            })
        }
    }
}

/// The subnets of a LAN interface: its global addresses the agent did not add, host bits masked,
/// without duplicates, in the order the kernel lists them.
pub fn lan_subnets(link: &LinkInfo) -> Vec<Subnet> {
    let mut out: Vec<Subnet> = Vec::new();
    for a in link.addresses.iter().filter(|a| !a.ours) {
        if let Some(s) = Subnet::new(a.address, a.prefix_len)
            && !out.contains(&s)
        {
            out.push(s);
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::netlink::LinkAddress;
    use kube::ResourceExt;
    use purelb_core::api::{LBNodeAgent, LBNodeAgentLocal, LBNodeAgentSpec};

    fn link(index: u32, name: &str, addrs: &[(&str, u8, bool)]) -> LinkInfo {
        LinkInfo {
            index,
            name: name.into(),
            mac: Some([2, 0, 0, 0, 0, index as u8]),
            up: true,
            addresses: addrs
                .iter()
                .map(|(a, p, ours)| LinkAddress { address: a.parse().unwrap(), prefix_len: *p, ours: *ours })
                .collect(),
        }
    }

    fn links() -> Vec<LinkInfo> {
        vec![
            // Only global-scope addresses are listed, so lo has none.
            link(1, "lo", &[]),
            link(2, "eth0", &[("192.0.2.11", 24, false), ("192.0.2.200", 24, true)]),
            link(3, "eth1", &[("10.0.0.5", 16, false), ("2001:db8:0:1::11", 64, false)]),
            link(4, "kube-lb0", &[("198.51.100.1", 32, true)]),
            link(5, "veth0", &[]),
        ]
    }

    fn cfg(localint: &str) -> AgentConfig {
        AgentConfig::from_local(&LBNodeAgentLocal { localint: localint.into(), ..Default::default() })
            .unwrap()
    }

    fn agent(name: &str, localint: &str) -> LBNodeAgent {
        LBNodeAgent::new(
            name,
            LBNodeAgentSpec {
                local: Some(LBNodeAgentLocal { localint: localint.into(), ..Default::default() }),
            },
        )
    }

    #[test]
    fn defaults_are_the_crd_defaults() {
        let c = AgentConfig::default();
        assert_eq!(c.localint, LocalInt::DefaultRoute);
        assert_eq!(c.extlbint, "kube-lb0");
        assert!(c.sendgarp);
    }

    #[test]
    fn default_takes_the_default_route_interface() {
        let l = links();
        assert_eq!(lan_interface(&cfg("default"), &l, Some("eth1")).unwrap().name, "eth1");
        assert_eq!(lan_interface(&cfg("default"), &l, None).unwrap_err(), NoLan::NoDefaultRoute);
        assert_eq!(
            lan_interface(&cfg("default"), &l, Some("wg0")).unwrap_err(),
            NoLan::DefaultRouteInterfaceMissing("wg0".into())
        );
    }

    #[test]
    fn pattern_is_anchored() {
        let l = links();
        // `eth` alone matches no interface: it would have to be the whole name.
        assert_eq!(lan_interface(&cfg("eth"), &l, None).unwrap_err(), NoLan::NoMatch("^(?:eth)$".into()));
        assert_eq!(lan_interface(&cfg("eth1"), &l, None).unwrap().name, "eth1");
        // An unanchored engine would let `th0` pick eth0.
        assert!(lan_interface(&cfg("th0"), &l, None).is_err());
        // Alternatives are grouped before anchoring: `eth1|lo` is `^(?:eth1|lo)$`.
        assert_eq!(lan_interface(&cfg("eth1|veth0"), &l, None).unwrap().name, "eth1");
    }

    #[test]
    fn pattern_prefers_the_lowest_index_with_an_address() {
        let l = links();
        assert_eq!(lan_interface(&cfg("eth.*"), &l, None).unwrap().name, "eth0");
        // veth0 matches but has no address; eth1 does.
        assert_eq!(lan_interface(&cfg("(v)?eth[01]"), &l, Some("eth0")).unwrap().name, "eth0");
        let err = lan_interface(&cfg("veth0"), &l, None).unwrap_err();
        assert_eq!(
            err,
            NoLan::NoGlobalAddress { localint: "^(?:veth0)$".into(), interfaces: "veth0".into() }
        );
        assert_eq!(
            err.to_string(),
            "the interfaces matching localint ^(?:veth0)$ (veth0) have no global address"
        );
    }

    #[test]
    fn pattern_never_picks_the_external_interface() {
        let l = links();
        assert!(lan_interface(&cfg("kube-lb0"), &l, None).is_err());
        assert_eq!(lan_interface(&cfg(".*"), &l, None).unwrap().name, "eth0");
    }

    #[test]
    fn a_pattern_that_does_not_compile_is_an_error() {
        let e = AgentConfig::from_local(&LBNodeAgentLocal { localint: "eth(".into(), ..Default::default() })
            .unwrap_err();
        assert!(e.to_string().contains("\"eth(\""), "{e}");
        // Go's RE2 (the API server's CEL) takes `\Q...\E`; Rust's regex does not.
        let e =
            AgentConfig::from_local(&LBNodeAgentLocal { localint: r"\Qeth\E0".into(), ..Default::default() })
                .unwrap_err();
        assert!(!e.to_string().contains('\n'), "one line: {e}");
    }

    #[test]
    fn subnets_skip_our_own_addresses_and_mask_host_bits() {
        let l = links();
        let s: Vec<String> = lan_subnets(&l[1]).iter().map(ToString::to_string).collect();
        assert_eq!(s, ["192.0.2.0/24"]);
        let s: Vec<String> = lan_subnets(&l[2]).iter().map(ToString::to_string).collect();
        assert_eq!(s, ["10.0.0.0/16", "2001:db8:0:1::/64"]);
    }

    #[test]
    fn select_prefers_default_then_first_by_name() {
        let a = [agent("zeta", "eth0"), agent("default", "eth1"), agent("alpha", "eth2")];
        assert_eq!(LBNodeAgent::select(&a).unwrap().name_any(), "default");
        let b = [agent("zeta", "eth0"), agent("alpha", "eth2")];
        assert_eq!(LBNodeAgent::select(&b).unwrap().name_any(), "alpha");
        assert!(LBNodeAgent::select(&[]).is_none());
    }
}
