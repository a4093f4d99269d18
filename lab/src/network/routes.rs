//! The router's kernel routes, as `ip -j route` reports them: destination and every next hop.
//!
//! Exposes [`RouterRoute`] and [`parse_routes`].

use std::net::IpAddr;

use serde_json::Value;

/// A route in the router's kernel table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterRoute {
    /// The destination with its prefix length, e.g. `198.51.100.5/32` or `2001:db8:100::5/128`.
    pub dst: String,
    /// Every next hop (more than one for an ECMP route), sorted.
    pub nexthops: Vec<IpAddr>,
}

/// Parses `ip -j route show` (one family); `host_len` is the prefix length of a host route (32 or 128),
/// which `ip` prints without one.
pub(crate) fn parse_routes(json: &str, host_len: u8) -> Result<Vec<RouterRoute>, String> {
    let routes: Vec<Value> = if json.trim().is_empty() {
        Vec::new()
    } else {
        serde_json::from_str(json)
            .map_err(|e| format!("`ip -j route` printed something that is not JSON: {e}"))?
    };
    let mut parsed: Vec<RouterRoute> = routes
        .iter()
        .filter_map(|route| {
            let dst = route.get("dst")?.as_str()?;
            let dst = if dst.contains('/') || dst == "default" {
                dst.to_owned()
            } else {
                format!("{dst}/{host_len}")
            };
            let gateways = match route.get("nexthops").and_then(Value::as_array) {
                Some(hops) => hops.iter().filter_map(|hop| hop.get("gateway")).collect(),
                None => route.get("gateway").into_iter().collect::<Vec<_>>(),
            };
            let mut nexthops: Vec<IpAddr> =
                gateways.into_iter().filter_map(|gateway| gateway.as_str()?.parse().ok()).collect();
            nexthops.sort();
            Some(RouterRoute { dst, nexthops })
        })
        .collect();
    parsed.sort_by(|a, b| a.dst.cmp(&b.dst));
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_multipath_routes_are_read() {
        let json = r#"[
            {"dst":"198.51.100.7","protocol":"bird","metric":32,"flags":[],
             "nexthops":[{"gateway":"192.0.2.12","dev":"eth0","weight":1,"flags":[]},
                         {"gateway":"192.0.2.11","dev":"eth0","weight":1,"flags":[]}]},
            {"dst":"198.51.100.0/24","gateway":"192.0.2.13","dev":"eth0","protocol":"bird","flags":[]}
        ]"#;
        let routes = parse_routes(json, 32).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[0].dst, "198.51.100.0/24");
        assert_eq!(routes[0].nexthops, vec![IpAddr::from([192, 0, 2, 13])]);
        assert_eq!(routes[1].dst, "198.51.100.7/32");
        assert_eq!(routes[1].nexthops, vec![IpAddr::from([192, 0, 2, 11]), IpAddr::from([192, 0, 2, 12])]);
    }

    #[test]
    fn no_routes_is_empty() {
        assert_eq!(parse_routes("", 128), Ok(Vec::new()));
        assert_eq!(parse_routes("[]", 128), Ok(Vec::new()));
    }
}
