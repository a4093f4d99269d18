//! The `ServiceGroup` CRD (`purelb.io/v1`, short name `sg`): named sets of address pools that Services
//! allocate from. Accepts the seed's `spec.local.v4pools`/`v6pools` lists, the single `v4pool`/`v6pool`
//! and the legacy `subnet`/`pool`/`aggregation` fields.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A ServiceGroup: a name Services refer to (`purelb.io/service-group`) and the pools behind it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "purelb.io",
    version = "v1",
    kind = "ServiceGroup",
    namespaced,
    shortname = "sg",
    status = "ServiceGroupStatus"
)]
pub struct ServiceGroupSpec {
    /// Pools of addresses announced by PureLB's node agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<ServiceGroupLocal>,
}

/// The `local` pools of a ServiceGroup.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceGroupLocal {
    /// IPv4 pools.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub v4pools: Vec<PoolSpec>,
    /// IPv6 pools.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub v6pools: Vec<PoolSpec>,
    /// A single IPv4 pool (older form of `v4pools`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v4pool: Option<PoolSpec>,
    /// A single IPv6 pool (older form of `v6pools`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v6pool: Option<PoolSpec>,
    /// Legacy: the subnet of a single pool of either family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    /// Legacy: a single pool of either family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Legacy: the aggregation of the single pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregation: Option<String>,
}

/// One pool: addresses `pool` (a CIDR or an `a-b` range) inside `subnet`, announced with `aggregation`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolSpec {
    /// The subnet the pool lies in, as a CIDR (`192.0.2.0/24`).
    pub subnet: String,
    /// The addresses to allocate: a CIDR (`192.0.2.0/28`) or a range (`192.0.2.200-192.0.2.220`).
    pub pool: String,
    /// The prefix length addresses are announced with on `kube-lb0`: `default` (the subnet's) or `/NN`.
    #[serde(default = "default_aggregation")]
    pub aggregation: String,
}

fn default_aggregation() -> String {
    "default".to_string()
}

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
    pub allocated: Option<u64>,
    /// Addresses still free (a string: an IPv6 pool may hold more than 2^63).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<String>,
    /// `Valid`: whether the allocator can use this group, and why not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
