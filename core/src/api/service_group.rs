//! The `ServiceGroup` CRD (`purelb.io/v1`, short name `sg`): named sets of address pools that Services
//! allocate from. Accepts the seed's `spec.local.v4pools`/`v6pools` lists, the single `v4pool`/`v6pool`
//! and the legacy `subnet`/`pool`/`aggregation` fields.
//!
//! The schema carries CEL rules (`x-kubernetes-validations`, built by [`rules`]) so the API server itself
//! refuses a malformed pool with a message naming the field; the allocator still re-checks everything it
//! reads (CEL cannot see other objects, and old objects may predate a rule).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A ServiceGroup: a name Services refer to (`purelb.io/service-group`) and the pools behind it.
// Clippy reads the repeated `type_` of the `printcolumn(...)` lists as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "purelb.io",
    version = "v1",
    kind = "ServiceGroup",
    doc = "A named set of address pools that LoadBalancer Services allocate from (purelb.io/service-group).",
    namespaced,
    shortname = "sg",
    status = "ServiceGroupStatus",
    printcolumn(
        name = "Pools",
        type_ = "string",
        description = "The group's pools as the allocator understood them",
        json_path = ".status.pools"
    ),
    printcolumn(
        name = "Allocated",
        type_ = "integer",
        description = "Addresses in use",
        json_path = ".status.allocated"
    ),
    printcolumn(
        name = "Available",
        type_ = "string",
        description = "Addresses still free",
        json_path = ".status.available"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
pub struct ServiceGroupSpec {
    /// Pools of addresses announced by PureLB's node agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<ServiceGroupLocal>,
}

/// The `local` pools of a ServiceGroup.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = rules::legacy_requires("pool", "subnet"),
    validation = rules::legacy_requires("subnet", "pool"),
    validation = rules::legacy_requires("subnet", "aggregation"),
    validation = rules::when_set(&["subnet", "pool"], rules::pool_inside_subnet("self.subnet", "self.pool")),
    validation = rules::when_set(
        &["subnet", "aggregation"],
        rules::aggregation_fits_family("self.subnet", "self.aggregation")
    )
)]
pub struct ServiceGroupLocal {
    /// IPv4 pools.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = rules::list_of_family("v4pools", Family::V4))]
    pub v4pools: Vec<PoolSpec>,
    /// IPv6 pools.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = rules::list_of_family("v6pools", Family::V6))]
    pub v6pools: Vec<PoolSpec>,
    /// A single IPv4 pool (older form of `v4pools`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = rules::pool_of_family("v4pool", Family::V4))]
    pub v4pool: Option<PoolSpec>,
    /// A single IPv6 pool (older form of `v6pools`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = rules::pool_of_family("v6pool", Family::V6))]
    pub v6pool: Option<PoolSpec>,
    /// Legacy: the subnet of a single pool of either family, as a CIDR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = rules::subnet_is_cidr("subnet"))]
    pub subnet: Option<String>,
    /// Legacy: a single pool of either family, a CIDR or an `a-b` range inside `subnet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(
        validation = rules::pool_syntax("pool"),
        validation = rules::range_same_family("pool"),
        validation = rules::range_ipv6_hex_only("pool"),
        validation = rules::range_ordered("pool")
    )]
    pub pool: Option<String>,
    /// Legacy: the aggregation of the single pool, `default` or `/NN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(validation = rules::aggregation_syntax("aggregation"))]
    pub aggregation: Option<String>,
}

/// One pool: addresses `pool` (a CIDR or an `a-b` range) inside `subnet`, announced with `aggregation`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = rules::pool_inside_subnet("self.subnet", "self.pool"),
    validation = rules::aggregation_fits_family("self.subnet", "self.aggregation")
)]
pub struct PoolSpec {
    /// The subnet the pool lies in, as a CIDR (`192.0.2.0/24`).
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = rules::subnet_is_cidr("subnet"))]
    pub subnet: String,
    /// The addresses to allocate: a CIDR (`192.0.2.0/28`) or a range (`192.0.2.200-192.0.2.220`).
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(
        validation = rules::pool_syntax("pool"),
        validation = rules::range_same_family("pool"),
        validation = rules::range_ipv6_hex_only("pool"),
        validation = rules::range_ordered("pool")
    )]
    pub pool: String,
    /// The prefix length addresses are announced with on `kube-lb0`: `default` (the subnet's) or `/NN`.
    #[serde(default = "default_aggregation")]
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(validation = rules::aggregation_syntax("aggregation"))]
    pub aggregation: String,
}

fn default_aggregation() -> String {
    "default".to_string()
}

/// One pool of a group as `crate::pool` read it: its field path, and the pool or why it is unusable.
pub type ParsedPool = (String, Result<crate::pool::PoolConfig, crate::pool::PoolError>);

/// The family a pool was declared for: which list (or legacy field) it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeclaredFamily {
    /// From `v4pools` / `v4pool`.
    V4,
    /// From `v6pools` / `v6pool`.
    V6,
    /// From the legacy `subnet`/`pool`/`aggregation`: the addresses tell.
    Any,
}

/// Why the legacy single-pool fields cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolSpecError {
    /// `spec.local.pool` was given without `spec.local.subnet` or the other way round.
    #[error("spec.local.{missing} is required when spec.local.{given} is set")]
    LegacyIncomplete {
        /// The field that is missing.
        missing: &'static str,
        /// The field that is present.
        given: &'static str,
    },
}

impl ServiceGroupLocal {
    /// Every pool parsed by `crate::pool`, with the family its place declares: (field path, the pool or
    /// why it cannot be read). The one place a group's text becomes pools, for the allocator, the agent
    /// and the plugin alike.
    pub fn parsed_pools(&self) -> Result<Vec<ParsedPool>, PoolSpecError> {
        use crate::pool::{Family, PoolConfig};
        Ok(self
            .pools()?
            .into_iter()
            .map(|(field, declared, p)| {
                let family = match declared {
                    DeclaredFamily::V4 => Some(Family::V4),
                    DeclaredFamily::V6 => Some(Family::V6),
                    DeclaredFamily::Any => None,
                };
                let parsed = PoolConfig::parse(&p.subnet, &p.pool, &p.aggregation, family);
                (field, parsed)
            })
            .collect())
    }

    /// Every pool of the group, in declaration order (v4pools, v4pool, v6pools, v6pool, legacy), each with
    /// the field path it came from (for messages) and the family its place declares.
    pub fn pools(&self) -> Result<Vec<(String, DeclaredFamily, PoolSpec)>, PoolSpecError> {
        let mut out = Vec::new();
        for (i, p) in self.v4pools.iter().enumerate() {
            out.push((format!("spec.local.v4pools[{i}]"), DeclaredFamily::V4, p.clone()));
        }
        if let Some(p) = &self.v4pool {
            out.push(("spec.local.v4pool".into(), DeclaredFamily::V4, p.clone()));
        }
        for (i, p) in self.v6pools.iter().enumerate() {
            out.push((format!("spec.local.v6pools[{i}]"), DeclaredFamily::V6, p.clone()));
        }
        if let Some(p) = &self.v6pool {
            out.push(("spec.local.v6pool".into(), DeclaredFamily::V6, p.clone()));
        }
        match (&self.subnet, &self.pool) {
            (Some(subnet), Some(pool)) => out.push((
                "spec.local".into(),
                DeclaredFamily::Any,
                PoolSpec {
                    subnet: subnet.clone(),
                    pool: pool.clone(),
                    aggregation: self.aggregation.clone().unwrap_or_else(default_aggregation),
                },
            )),
            (Some(_), None) => {
                return Err(PoolSpecError::LegacyIncomplete { missing: "pool", given: "subnet" });
            }
            (None, Some(_)) => {
                return Err(PoolSpecError::LegacyIncomplete { missing: "subnet", given: "pool" });
            }
            (None, None) => {}
        }
        Ok(out)
    }
}

/// What the allocator reports about a group: usage and validity.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceGroupStatus {
    /// The group's pools, comma separated, as the allocator understood them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pools: Option<String>,
    /// Addresses in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    // The API server knows no `uint64` format; the schema says int64 (>= 0) and the type stays unsigned.
    #[schemars(with = "Option<i64>", range(min = 0))]
    pub allocated: Option<u64>,
    /// Addresses still free (a string: an IPv6 pool may hold more than 2^63).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<String>,
    /// `Valid`: whether the allocator can use this group, and why not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The address family a pool list or field is for (used by the CEL rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

/// The CEL rules of the ServiceGroup schema, one small function each.
///
/// Arguments are CEL expressions (`"self"`, `"self.pool"`) so one rule serves `v4pools[]`, `v4pool`,
/// `v6pools[]`, `v6pool` and the legacy fields. Three constraints shape the expressions:
/// - A rule that fails with an evaluation error rejects the object with an unhelpful message, so every
///   rule first checks what the functions it calls need (`isCIDR` before `cidr()`, `isIP` before
///   `containsIP`) and passes when another rule already reports the problem.
/// - The API server refuses a CRD whose rules' estimated worst-case cost is over budget, and it estimates
///   from the fields' `maxLength`/`maxItems`. It can bound `split(..)[i]`, `substring`, `replace`, but not
///   the result of a `map()` (nor anything computed from it, e.g. `join`), so values are recomputed where
///   they are used instead of being built with `map` or bound (`cel.bind` is not offered to CRD rules).
///   The generated text is long; the functions that write it are short.
/// - The same rules are evaluated client-side by kube-cel in the unit tests, so they stick to functions
///   both implement.
mod rules {
    use super::Family;
    use kube::core::{Message, Reason, Rule};

    /// Prefix lengths `/0`..`/128` (`/NN` without leading zeros).
    const PREFIX_ANY: &str = "^/([0-9]|[1-9][0-9]|1[01][0-9]|12[0-8])$";
    /// Prefix lengths `/0`..`/32`.
    const PREFIX_V4: &str = "^/([0-9]|[12][0-9]|3[0-2])$";

    /// A static failure message.
    fn text(message: String) -> Message {
        Message::Message(message)
    }

    /// `v` is an `a-b` range of two addresses (blanks around either address allowed).
    fn is_range(v: &str) -> String {
        format!("({v}.split('-').size() == 2 && {v}.split('-').all(a, isIP(a.trim())))")
    }

    /// The two addresses of range `v` are of different families (only one spells IPv6 with `:`).
    fn mixed_families(v: &str) -> String {
        format!("({v}.split('-')[0].contains(':') != {v}.split('-')[1].contains(':'))")
    }

    /// Address `i` (0 or 1) of range `v`, without blanks, in lower case.
    fn range_end(v: &str, i: usize) -> String {
        format!("{v}.split('-')[{i}].trim().lowerAscii()")
    }

    /// The integer value of dotted-quad IPv4 address `a` (`isIP` has ruled out leading zeros and
    /// out-of-range octets, so `int()` cannot fail).
    fn ipv4_int(a: &str) -> String {
        let octet = |k: usize| format!("int({a}.split('.')[{k}])");
        format!("{} * 16777216 + {} * 65536 + {} * 256 + {}", octet(0), octet(1), octet(2), octet(3))
    }

    /// IPv6 address `a` with its `::` replaced by the zero groups it stands for, leaving exactly eight
    /// `:`-separated groups (the first or last may be empty: `::1` becomes `:0:0:0:0:0:0:1`). With `::`,
    /// `a` has `n = size(a.split(':')) - 1` colons and needs `8 - n` more `0:` groups.
    fn ipv6_eight_groups(a: &str) -> String {
        format!("{a}.replace('::', ':' + '0:0:0:0:0:0:0:'.substring(0, 2 * (9 - size({a}.split(':')))))")
    }

    /// IPv6 address `a` (lower case, hex groups only) as 32 hex digits, each group zero-padded to four
    /// (the last four characters of `'0000' + g`), so that string order is address order.
    fn ipv6_hex32(a: &str) -> String {
        let groups = ipv6_eight_groups(a);
        let padded = |k: usize| {
            format!("('0000' + {groups}.split(':')[{k}]).substring(size({groups}.split(':')[{k}]))")
        };
        (0..8).map(padded).collect::<Vec<_>>().join(" + ")
    }

    /// `!(every field in fields is set) || rule`: the rule of a pair of optional (legacy) fields.
    pub(super) fn when_set(fields: &[&str], rule: Rule) -> Rule {
        let guard: Vec<String> = fields.iter().map(|f| format!("!has(self.{f})")).collect();
        Rule { rule: format!("{} || ({})", guard.join(" || "), rule.rule), ..rule }
    }

    /// Legacy form: `needed` must be set when `given` is.
    pub(super) fn legacy_requires(needed: &str, given: &str) -> Rule {
        Rule::new(format!("!has(self.{given}) || has(self.{needed})"))
            .message(text(format!("{needed} is required when {given} is set (legacy single-pool form)")))
            .field_path(format!(".{needed}"))
            .reason(Reason::FieldValueRequired)
    }

    /// `subnet` is a CIDR.
    pub(super) fn subnet_is_cidr(field: &str) -> Rule {
        Rule::new("isCIDR(self)")
            .message(text(format!("{field} must be a CIDR such as 192.0.2.0/24 or 2001:db8::/64")))
    }

    /// `pool` is a CIDR or an `a-b` range of two addresses.
    pub(super) fn pool_syntax(field: &str) -> Rule {
        Rule::new(format!("isCIDR(self) || {}", is_range("self"))).message(text(format!(
            "{field} must be a CIDR (192.0.2.0/28) or a range of two addresses (192.0.2.200-192.0.2.220)"
        )))
    }

    /// Both ends of a range are of one family.
    pub(super) fn range_same_family(field: &str) -> Rule {
        Rule::new(format!("!{} || !{}", is_range("self"), mixed_families("self")))
            .message(text(format!("{field}: both addresses of a range must be of the same family")))
    }

    /// An IPv6 range is written in hex groups: the order check below cannot read an embedded dotted IPv4
    /// tail (`64:ff9b::192.0.2.1`); a CIDR may still use one.
    pub(super) fn range_ipv6_hex_only(field: &str) -> Rule {
        Rule::new(format!(
            "!{} || {} || !self.contains(':') || !self.contains('.')",
            is_range("self"),
            mixed_families("self")
        ))
        .message(text(format!(
            "{field}: write the addresses of an IPv6 range in hex groups, without a dotted IPv4 tail"
        )))
    }

    /// The first address of a range is not above the last: IPv4 compares integer values, IPv6 compares
    /// 32-hex-digit spellings. Mixed families and dotted IPv6 pass here (the two rules above report them).
    pub(super) fn range_ordered(field: &str) -> Rule {
        let (first, last) = (range_end("self", 0), range_end("self", 1));
        let compare = format!(
            "{first}.contains(':') ? {} <= {} : {} <= {}",
            ipv6_hex32(&first),
            ipv6_hex32(&last),
            ipv4_int(&first),
            ipv4_int(&last)
        );
        Rule::new(format!(
            "!{} || {} || self.contains('.') && self.contains(':') || ({compare})",
            is_range("self"),
            mixed_families("self")
        ))
        .message(text(format!("{field}: the first address of a range must not be above the last")))
    }

    /// The pool lies inside the subnet: a CIDR pool is contained in it, a range has both ends in it.
    pub(super) fn pool_inside_subnet(subnet: &str, pool: &str) -> Rule {
        Rule::new(format!(
            "!isCIDR({subnet}) || (isCIDR({pool}) ? cidr({subnet}).containsCIDR({pool}) : \
             (!{} || {pool}.split('-').all(a, cidr({subnet}).containsIP(a.trim()))))",
            is_range(pool)
        ))
        .message("pool must lie inside subnet")
        .field_path(".pool")
    }

    /// `aggregation` is `default` or a prefix length `/0`..`/128` (the family bound is checked next).
    pub(super) fn aggregation_syntax(field: &str) -> Rule {
        Rule::new(format!("self == 'default' || self.matches('{PREFIX_ANY}')")).message(text(format!(
            "{field} must be 'default' or a prefix length /0 to /32 (IPv4) or /0 to /128 (IPv6)"
        )))
    }

    /// An IPv4 subnet's pool aggregates with at most `/32`.
    pub(super) fn aggregation_fits_family(subnet: &str, aggregation: &str) -> Rule {
        Rule::new(format!(
            "!isCIDR({subnet}) || {subnet}.contains(':') || !{aggregation}.matches('{PREFIX_ANY}') || \
             {aggregation}.matches('{PREFIX_V4}')"
        ))
        .message("aggregation of an IPv4 pool must be 'default' or /0 to /32")
        .field_path(".aggregation")
    }

    /// CEL: pool `p` (an expression) is written in `family`'s addresses, judged by its spelling (`:` is
    /// IPv6), so a malformed address still gets this message rather than an evaluation error.
    fn is_of_family(p: &str, family: Family) -> String {
        match family {
            Family::V4 => format!("!{p}.subnet.contains(':') && !{p}.pool.contains(':')"),
            Family::V6 => format!("{p}.subnet.contains(':') && {p}.pool.contains(':')"),
        }
    }

    fn family_message(field: &str, family: Family) -> String {
        match family {
            Family::V4 => format!("{field} holds IPv4 pools only; put IPv6 pools in v6pools"),
            Family::V6 => format!("{field} holds IPv6 pools only; put IPv4 pools in v4pools"),
        }
    }

    /// Every pool of list `field` is of `family`.
    pub(super) fn list_of_family(field: &str, family: Family) -> Rule {
        Rule::new(format!("self.all(p, {})", is_of_family("p", family)))
            .message(text(family_message(field, family)))
    }

    /// The single pool `field` is of `family`.
    pub(super) fn pool_of_family(field: &str, family: Family) -> Rule {
        Rule::new(is_of_family("self", family)).message(text(family_message(field, family)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;
    use kube::core::cel::{ErrorKind, Validator};
    use serde_json::{Value, json};

    // === deserialisation and pools() ===

    /// The seed's `virtualsub` group, verbatim.
    const SEED_VIRTUALSUB: &str = "\
apiVersion: purelb.io/v1
kind: ServiceGroup
metadata:
  name: virtualsub
spec:
  local:
    v4pools:
    - subnet: '172.31.1.0/24'
      pool: '172.31.1.0/24'
      aggregation: '/32'
";

    fn pool(subnet: &str, pool: &str, aggregation: &str) -> PoolSpec {
        PoolSpec { subnet: subnet.into(), pool: pool.into(), aggregation: aggregation.into() }
    }

    fn local_of(yaml: &str) -> ServiceGroupLocal {
        let sg: ServiceGroup = serde_saphyr::from_str(yaml).unwrap();
        sg.spec.local.unwrap()
    }

    #[test]
    fn seed_virtualsub_deserialises_and_lists_its_pool() {
        let sg: ServiceGroup = serde_saphyr::from_str(SEED_VIRTUALSUB).unwrap();
        assert_eq!(sg.metadata.name.as_deref(), Some("virtualsub"));
        assert_eq!(sg.metadata.namespace, None);
        let pools = sg.spec.local.unwrap().pools().unwrap();
        assert_eq!(
            pools,
            vec![(
                "spec.local.v4pools[0]".to_string(),
                DeclaredFamily::V4,
                pool("172.31.1.0/24", "172.31.1.0/24", "/32")
            )]
        );
    }

    #[test]
    fn single_pools_keep_their_family_and_default_aggregation() {
        let local = local_of(
            "apiVersion: purelb.io/v1\nkind: ServiceGroup\nmetadata: {name: single}\nspec:\n  local:\n    \
             v4pool: {subnet: 192.0.2.0/24, pool: 192.0.2.200-192.0.2.220}\n    \
             v6pool: {subnet: '2001:db8::/64', pool: '2001:db8::100/120', aggregation: /128}\n",
        );
        assert_eq!(
            local.pools().unwrap(),
            vec![
                (
                    "spec.local.v4pool".to_string(),
                    DeclaredFamily::V4,
                    pool("192.0.2.0/24", "192.0.2.200-192.0.2.220", "default")
                ),
                (
                    "spec.local.v6pool".to_string(),
                    DeclaredFamily::V6,
                    pool("2001:db8::/64", "2001:db8::100/120", "/128")
                ),
            ]
        );
    }

    #[test]
    fn legacy_fields_make_one_pool_of_either_family() {
        let local = local_of(
            "apiVersion: purelb.io/v1\nkind: ServiceGroup\nmetadata: {name: legacy}\nspec:\n  local:\n    \
             subnet: 192.0.2.0/24\n    pool: 192.0.2.0/28\n",
        );
        assert_eq!(
            local.pools().unwrap(),
            vec![(
                "spec.local".to_string(),
                DeclaredFamily::Any,
                pool("192.0.2.0/24", "192.0.2.0/28", "default")
            )]
        );
    }

    #[test]
    fn lists_come_before_singles_and_legacy() {
        let local = ServiceGroupLocal {
            v4pools: vec![pool("192.0.2.0/24", "192.0.2.0/28", "default")],
            v6pools: vec![pool("2001:db8::/64", "2001:db8::/120", "default")],
            v4pool: Some(pool("198.51.100.0/24", "198.51.100.0/28", "/32")),
            subnet: Some("203.0.113.0/24".into()),
            pool: Some("203.0.113.0/28".into()),
            ..Default::default()
        };
        let paths: Vec<String> = local.pools().unwrap().into_iter().map(|(path, _, _)| path).collect();
        assert_eq!(
            paths,
            ["spec.local.v4pools[0]", "spec.local.v4pool", "spec.local.v6pools[0]", "spec.local"]
        );
    }

    #[test]
    fn legacy_subnet_without_pool_is_an_error() {
        let local = ServiceGroupLocal { subnet: Some("192.0.2.0/24".into()), ..Default::default() };
        assert_eq!(local.pools(), Err(PoolSpecError::LegacyIncomplete { missing: "pool", given: "subnet" }));
        let local = ServiceGroupLocal { pool: Some("192.0.2.0/28".into()), ..Default::default() };
        assert_eq!(local.pools(), Err(PoolSpecError::LegacyIncomplete { missing: "subnet", given: "pool" }));
    }

    #[test]
    fn serialisation_round_trips_and_omits_empty_fields() {
        let sg = ServiceGroup::new(
            "g",
            ServiceGroupSpec {
                local: Some(ServiceGroupLocal {
                    v4pools: vec![pool("192.0.2.0/24", "192.0.2.0/28", "default")],
                    ..Default::default()
                }),
            },
        );
        let value = serde_json::to_value(&sg).unwrap();
        assert_eq!(
            value["spec"],
            json!({"local": {"v4pools": [{"subnet": "192.0.2.0/24", "pool": "192.0.2.0/28", "aggregation": "default"}]}})
        );
        assert_eq!(serde_json::from_value::<ServiceGroup>(value).unwrap().spec, sg.spec);
    }

    // === the CRD ===

    #[test]
    fn crd_has_short_name_status_and_printer_columns() {
        let crd = ServiceGroup::crd();
        assert_eq!(crd.spec.names.short_names, Some(vec!["sg".to_string()]));
        assert_eq!(crd.spec.scope, "Namespaced");
        let version = &crd.spec.versions[0];
        assert!(version.subresources.as_ref().unwrap().status.is_some());
        let columns: Vec<(&str, &str)> = version
            .additional_printer_columns
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| (c.name.as_str(), c.json_path.as_str()))
            .collect();
        assert_eq!(
            columns,
            [
                ("Pools", ".status.pools"),
                ("Allocated", ".status.allocated"),
                ("Available", ".status.available"),
                ("Age", ".metadata.creationTimestamp")
            ]
        );
    }

    // === the CEL rules, evaluated client-side by kube-cel ===
    //
    // The same cases run against a real kube-apiserver in the lab's e2e tests; kube-cel is a second
    // implementation, so a rule both accept is unlikely to lean on one implementation's quirk.

    fn schema() -> Value {
        let crd = ServiceGroup::crd();
        let schema = crd.spec.versions[0].schema.as_ref().unwrap().open_api_v3_schema.as_ref().unwrap();
        serde_json::to_value(schema).unwrap()
    }

    /// The (path, message) of every rule `spec.local` breaks. Any failure other than a rule evaluating to
    /// false (an evaluation error, an unsupported function) fails the test: it would reject for the wrong
    /// reason and with the wrong message.
    fn violations(local: Value) -> Vec<(String, String)> {
        let object = json!({
            "apiVersion": "purelb.io/v1",
            "kind": "ServiceGroup",
            "metadata": {"name": "g", "namespace": "default"},
            "spec": {"local": local},
        });
        match Validator::new().validate(&schema(), &object, None) {
            Ok(()) => vec![],
            Err(errors) => errors
                .into_vec()
                .into_iter()
                .map(|e| {
                    assert_eq!(e.kind, ErrorKind::ValidationFailure, "{local}: {} ({})", e.message, e.rule);
                    (e.field_path, e.message)
                })
                .collect(),
        }
    }

    fn v4pools(subnet: &str, pool: &str, aggregation: Option<&str>) -> Value {
        let mut p = json!({"subnet": subnet, "pool": pool});
        if let Some(aggregation) = aggregation {
            p["aggregation"] = json!(aggregation);
        }
        json!({"v4pools": [p]})
    }

    fn v6pools(subnet: &str, pool: &str, aggregation: Option<&str>) -> Value {
        let Value::Object(mut local) = v4pools(subnet, pool, aggregation) else { unreachable!() };
        let list = local.remove("v4pools").unwrap();
        json!({"v6pools": list})
    }

    #[track_caller]
    fn accepted(local: Value) {
        assert_eq!(violations(local.clone()), vec![], "{local} should be accepted");
    }

    /// `local` breaks exactly one rule, reported at `path` with a message containing `message`.
    #[track_caller]
    fn rejected(local: Value, path: &str, message: &str) {
        let found = violations(local.clone());
        assert!(
            found.len() == 1 && found[0].0 == path && found[0].1.contains(message),
            "{local}: expected one violation at {path} containing {message:?}, got {found:?}"
        );
    }

    #[test]
    fn cel_accepts_the_seed_group() {
        let sg: ServiceGroup = serde_saphyr::from_str(SEED_VIRTUALSUB).unwrap();
        accepted(serde_json::to_value(sg.spec.local).unwrap());
    }

    #[test]
    fn cel_accepts_good_pools() {
        accepted(v4pools("192.0.2.0/24", "192.0.2.200-192.0.2.220", None));
        accepted(v4pools("192.0.2.0/24", "192.0.2.200 - 192.0.2.220", Some("default")));
        accepted(v4pools("192.0.2.0/24", "192.0.2.7-192.0.2.7", Some("/0")));
        accepted(v4pools("10.0.0.0/8", "10.0.0.9-10.0.0.10", Some("/24"))); // 9 < 10 though "9" > "1"
        accepted(v4pools("192.0.2.0/24", "192.0.2.0/28", Some("/32")));
        accepted(v6pools("2001:db8:0:1::/64", "2001:db8:0:1::100/120", Some("/128")));
        accepted(v6pools("2001:db8::/64", "2001:db8::1-2001:db8::ffff", Some("/64")));
        accepted(v6pools("2001:db8::/64", "2001:DB8::A-2001:db8::b", None));
        accepted(v6pools("::/0", "::-::1", None));
        accepted(v6pools("::/0", "1:2:3:4:5:6:7::-1:2:3:4:5:6:7:8", None));
        accepted(v6pools("::/0", "::2:3:4:5:6:7:8-1::", None));
        accepted(json!({"v4pool": {"subnet": "192.0.2.0/24", "pool": "192.0.2.0/28"}}));
        accepted(json!({"v6pool": {"subnet": "2001:db8::/64", "pool": "2001:db8::/120"}}));
        accepted(
            json!({"subnet": "192.0.2.0/24", "pool": "192.0.2.10-192.0.2.20", "aggregation": "default"}),
        );
        accepted(json!({"subnet": "2001:db8::/64", "pool": "2001:db8::/120", "aggregation": "/64"}));
    }

    #[test]
    fn cel_rejects_a_subnet_that_is_not_a_cidr() {
        rejected(
            v4pools("192.0.2.0", "192.0.2.0/28", None),
            "spec.local.v4pools[0].subnet",
            "subnet must be a CIDR",
        );
        rejected(
            json!({"subnet": "nope", "pool": "192.0.2.0/28"}),
            "spec.local.subnet",
            "subnet must be a CIDR",
        );
    }

    #[test]
    fn cel_rejects_a_pool_that_is_neither_cidr_nor_range() {
        let message = "pool must be a CIDR (192.0.2.0/28) or a range";
        rejected(v4pools("192.0.2.0/24", "192.0.2.1-foo", None), "spec.local.v4pools[0].pool", message);
        rejected(
            v4pools("192.0.2.0/24", "192.0.2.1-192.0.2.2-192.0.2.3", None),
            "spec.local.v4pools[0].pool",
            message,
        );
        rejected(v4pools("192.0.2.0/24", "192.0.2.1", None), "spec.local.v4pools[0].pool", message);
        rejected(
            json!({"v4pool": {"subnet": "192.0.2.0/24", "pool": "x"}}),
            "spec.local.v4pool.pool",
            message,
        );
    }

    #[test]
    fn cel_rejects_a_pool_outside_its_subnet() {
        let (path, message) = ("spec.local.v4pools[0].pool", "pool must lie inside subnet");
        rejected(v4pools("192.0.2.0/24", "198.51.100.0/28", None), path, message);
        rejected(v4pools("192.0.2.0/25", "192.0.2.0/24", None), path, message);
        rejected(v4pools("192.0.2.0/24", "192.0.2.250-192.0.3.5", None), path, message);
        rejected(v6pools("2001:db8::/64", "2001:db8:1::/120", None), "spec.local.v6pools[0].pool", message);
        rejected(json!({"subnet": "192.0.2.0/24", "pool": "10.0.0.0/28"}), "spec.local.pool", message);
    }

    #[test]
    fn cel_rejects_a_range_whose_first_address_is_above_its_last() {
        let message = "the first address of a range must not be above the last";
        rejected(
            v4pools("192.0.2.0/24", "192.0.2.20-192.0.2.10", None),
            "spec.local.v4pools[0].pool",
            message,
        );
        rejected(v4pools("10.0.0.0/8", "10.2.0.0-10.1.255.255", None), "spec.local.v4pools[0].pool", message);
        rejected(
            v6pools("2001:db8::/64", "2001:db8::ff-2001:db8::f", None),
            "spec.local.v6pools[0].pool",
            message,
        );
        rejected(
            v6pools("2001:db8::/64", "2001:db8::1:0-2001:db8::ffff", None),
            "spec.local.v6pools[0].pool",
            message,
        );
        rejected(
            v6pools("::/0", "1:2:3:4:5:6:7:8-1:2:3:4:5:6:7::", None),
            "spec.local.v6pools[0].pool",
            message,
        );
        rejected(json!({"subnet": "::/0", "pool": "::1-::"}), "spec.local.pool", message);
    }

    #[test]
    fn cel_rejects_bad_aggregation() {
        let syntax = "aggregation must be 'default' or a prefix length";
        rejected(
            v4pools("192.0.2.0/24", "192.0.2.0/28", Some("32")),
            "spec.local.v4pools[0].aggregation",
            syntax,
        );
        rejected(
            v4pools("192.0.2.0/24", "192.0.2.0/28", Some("/032")),
            "spec.local.v4pools[0].aggregation",
            syntax,
        );
        rejected(
            v6pools("2001:db8::/64", "2001:db8::/120", Some("/129")),
            "spec.local.v6pools[0].aggregation",
            syntax,
        );
        let v4 = "aggregation of an IPv4 pool must be 'default' or /0 to /32";
        rejected(
            v4pools("192.0.2.0/24", "192.0.2.0/28", Some("/33")),
            "spec.local.v4pools[0].aggregation",
            v4,
        );
        rejected(
            json!({"subnet": "192.0.2.0/24", "pool": "192.0.2.0/28", "aggregation": "/64"}),
            "spec.local.aggregation",
            v4,
        );
    }

    #[test]
    fn cel_rejects_a_pool_in_the_other_familys_list() {
        rejected(
            v4pools("2001:db8::/64", "2001:db8::/120", None),
            "spec.local.v4pools",
            "v4pools holds IPv4 pools only",
        );
        rejected(
            v6pools("192.0.2.0/24", "192.0.2.0/28", None),
            "spec.local.v6pools",
            "v6pools holds IPv6 pools only",
        );
        rejected(
            json!({"v4pool": {"subnet": "2001:db8::/64", "pool": "2001:db8::/120"}}),
            "spec.local.v4pool",
            "v4pool holds IPv4 pools only",
        );
        rejected(
            json!({"v6pool": {"subnet": "192.0.2.0/24", "pool": "192.0.2.0/28"}}),
            "spec.local.v6pool",
            "v6pool holds IPv6 pools only",
        );
    }

    #[test]
    fn cel_rejects_an_incomplete_legacy_pool() {
        rejected(json!({"subnet": "192.0.2.0/24"}), "spec.local.pool", "pool is required when subnet is set");
        rejected(json!({"pool": "192.0.2.0/28"}), "spec.local.subnet", "subnet is required when pool is set");
        rejected(
            json!({"aggregation": "/32"}),
            "spec.local.subnet",
            "subnet is required when aggregation is set",
        );
    }

    #[test]
    fn cel_explains_a_mixed_or_dotted_range() {
        let found = violations(v4pools("192.0.2.0/24", "192.0.2.1-2001:db8::1", None));
        assert!(
            found.iter().any(|(_, m)| m.contains("both addresses of a range must be of the same family")),
            "{found:?}"
        );
        rejected(
            v6pools("64:ff9b::/96", "64:ff9b::1.2.3.4-64:ff9b::1.2.3.5", None),
            "spec.local.v6pools[0].pool",
            "write the addresses of an IPv6 range in hex groups",
        );
    }

    /// The range-order rule agrees with Rust's address order on every pair of a set of addresses, each
    /// written compressed (`::`), in full, and in upper case.
    #[test]
    fn cel_range_order_matches_address_order() {
        use std::net::{Ipv4Addr, Ipv6Addr};
        let compiled = kube::core::cel::compile_schema(&schema());
        let order_violated = |pool: String| {
            let object = json!({
                "apiVersion": "purelb.io/v1",
                "kind": "ServiceGroup",
                "metadata": {"name": "g", "namespace": "default"},
                "spec": {"local": {"subnet": if pool.contains(':') { "::/0" } else { "0.0.0.0/0" }, "pool": pool}},
            });
            match Validator::new().validate_compiled(&compiled, &object, None) {
                Ok(()) => false,
                Err(errors) => {
                    let errors = errors.into_vec();
                    assert!(
                        errors.len() == 1 && errors[0].message.contains("must not be above the last"),
                        "{pool}: {errors:?}"
                    );
                    true
                }
            }
        };

        let v6: Vec<Ipv6Addr> = [
            "::",
            "::1",
            "::1:0",
            "::ffff",
            "1::",
            "1::1",
            "0:1::",
            "2001:db8::",
            "2001:db8::1",
            "2001:db8::ffff:0",
            "2001:db8:0:1::",
            "fe80::1:2:3:4",
            "ffff::",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        let spellings = |a: &Ipv6Addr| {
            let full = a.segments().iter().map(|g| format!("{g:x}")).collect::<Vec<_>>().join(":");
            [a.to_string(), full.clone(), full.to_uppercase()]
        };
        for a in &v6 {
            for b in &v6 {
                for (sa, sb) in spellings(a).iter().zip(spellings(b).iter().rev()) {
                    assert_eq!(order_violated(format!("{sa}-{sb}")), a > b, "{sa}-{sb}");
                }
            }
        }

        let v4: Vec<Ipv4Addr> =
            ["0.0.0.0", "0.0.0.9", "0.0.0.10", "10.0.0.0", "10.1.255.255", "10.2.0.0", "255.255.255.255"]
                .iter()
                .map(|a| a.parse().unwrap())
                .collect();
        for a in &v4 {
            for b in &v4 {
                assert_eq!(order_violated(format!("{a}-{b}")), a > b, "{a}-{b}");
            }
        }
    }
}
