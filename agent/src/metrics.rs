//! Prometheus metrics of the node agent (prefix `purelb_agent`): the addresses this node announces by
//! kind, GARP/NA packets sent, node Lease renewals by result, reconcile errors by stage, and how long a
//! reconcile takes.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// `kind="local"` (on the LAN interface) or `kind="nonlocal"` (on the external LB interface).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `local` or `nonlocal`.
    pub kind: String,
}

/// `result="ok"` or `result="error"`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `ok` or `error`.
    pub result: String,
}

/// The step of a reconcile that failed: `links`, `owned`, `add`, `delete`, `extlb`, `write`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    /// The failing step.
    pub stage: String,
}

/// The agent's metrics.
#[derive(Clone)]
pub struct Metrics {
    /// Addresses this node holds now, by kind.
    pub addresses: Family<KindLabel, Gauge>,
    /// Gratuitous ARP / unsolicited NA packets sent.
    pub garp_sent: Counter,
    /// Node Lease renewals, by result.
    pub lease_renewals: Family<ResultLabel, Counter>,
    /// Failed reconcile steps, by stage.
    pub reconcile_errors: Family<StageLabel, Counter>,
    /// Seconds one reconcile takes (plan, kernel diff, reports).
    pub reconcile_seconds: Histogram,
}

impl Metrics {
    /// Registers every metric under the `purelb_agent` prefix.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Metrics {
            addresses: Family::default(),
            garp_sent: Counter::default(),
            lease_renewals: Family::default(),
            reconcile_errors: Family::default(),
            reconcile_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
        };
        let r = registry.sub_registry_with_prefix("purelb_agent");
        r.register(
            "addresses",
            "Addresses this node announces, by kind (local, nonlocal)",
            m.addresses.clone(),
        );
        r.register("garp_sent", "Gratuitous ARP / unsolicited NA packets sent", m.garp_sent.clone());
        r.register("lease_renewals", "Node Lease renewals, by result", m.lease_renewals.clone());
        r.register("reconcile_errors", "Failed reconcile steps, by stage", m.reconcile_errors.clone());
        r.register("reconcile_seconds", "Time one reconcile takes", m.reconcile_seconds.clone());
        m
    }

    /// Counts one failure of `stage`.
    pub fn error(&self, stage: &str) {
        self.reconcile_errors.get_or_create(&StageLabel { stage: stage.to_string() }).inc();
    }

    /// Counts one renewal attempt.
    pub fn renewal(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.lease_renewals.get_or_create(&ResultLabel { result: result.to_string() }).inc();
    }

    /// Sets the number of addresses held, by kind.
    pub fn held(&self, local: usize, non_local: usize) {
        for (kind, n) in [("local", local), ("nonlocal", non_local)] {
            self.addresses
                .get_or_create(&KindLabel { kind: kind.to_string() })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}
