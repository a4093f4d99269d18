//! Prometheus metrics of the allocator: pool size and use per group, allocations, failures by reason,
//! and the time from seeing a Service to deciding for it.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels naming a ServiceGroup.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabel {
    /// The group name.
    pub group: String,
}

/// Labels naming a reason code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// The reason code.
    pub reason: String,
}

/// The allocator's metrics.
#[derive(Clone)]
pub struct Metrics {
    /// Addresses in each group's pools (saturating at i64::MAX for huge IPv6 pools).
    pub pool_size: Family<GroupLabel, Gauge>,
    /// Addresses in use per group.
    pub pool_in_use: Family<GroupLabel, Gauge>,
    /// Successful allocations of new addresses.
    pub allocations: Counter,
    /// Failed decisions by reason code.
    pub failures: Family<ReasonLabel, Counter>,
    /// Seconds from a watch event to the decision applied for it.
    pub decision_seconds: Histogram,
    /// 1 while this replica reaches the API server (its last Lease read or renewal answered), else 0.
    pub api_reachable: Gauge,
    /// Unix time since when this replica could not reach the API server (0 while it can). The
    /// allocations stay as they are meanwhile: nothing is written.
    pub fail_static_since_seconds: Gauge,
}

impl Metrics {
    /// Registers every metric under the `purelb_allocator` prefix.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Metrics {
            pool_size: Family::default(),
            pool_in_use: Family::default(),
            allocations: Counter::default(),
            failures: Family::default(),
            decision_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            api_reachable: Gauge::default(),
            fail_static_since_seconds: Gauge::default(),
        };
        let r = registry.sub_registry_with_prefix("purelb_allocator");
        r.register("pool_size", "Addresses in the group's pools", m.pool_size.clone());
        r.register("pool_in_use", "Addresses of the group's pools in use", m.pool_in_use.clone());
        r.register("allocations", "Addresses allocated", m.allocations.clone());
        r.register("failures", "Allocation decisions that failed, by reason", m.failures.clone());
        r.register("decision_seconds", "Time from a watch event to its decision", m.decision_seconds.clone());
        r.register(
            "api_reachable",
            "1 while this replica reaches the API server, 0 while it runs fail-static",
            m.api_reachable.clone(),
        );
        r.register(
            "fail_static_since_seconds",
            "Unix time since when this replica cannot reach the API server (0 while it can)",
            m.fail_static_since_seconds.clone(),
        );
        m
    }
}
