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

mod rules;

#[cfg(test)]
mod tests;
