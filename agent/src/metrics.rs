//! Prometheus metrics of the node agent (prefix `purelb_agent`): the addresses this node announces by
//! kind, GARP/NA packets sent, node Lease renewals by result, reconcile errors by stage, and how long a
//! reconcile takes; whether the agent reaches the API server and since when it runs on its last known
//! state (fail-static), whether it keeps a LAN the kernel no longer shows, and the address conflicts
//! (another MAC announcing an address this node holds) it saw; events by result (published, failed,
//! dropped).

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

/// `result="ok"` or `result="error"` (Lease renewals); `published`, `failed`, `dropped` (events).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// The result.
    pub result: String,
}

/// The step of a reconcile that failed: `links`, `owned`, `add`, `delete`, `extlb`, `write`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    /// The failing step.
    pub stage: String,
}

/// What an agent did about another MAC announcing one of its local addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConflictAction {
    /// Gave the address up (its view of the API was stale).
    Yielded,
    /// Kept it (its view was current: the election decides).
    Kept,
    /// Already given up; the sighting extends the hold.
    Seen,
}

/// What the agent did about an address conflict (see [`ConflictAction`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabel {
    /// `yielded`, `kept` or `seen`.
    pub action: String,
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
    /// 1 while the agent sees its own Lease renewed through the API, 0 while it runs fail-static.
    pub api_reachable: Gauge,
    /// Unix time since when the agent runs on its last known state (0 while the API is reachable).
    pub fail_static_since_seconds: Gauge,
    /// 1 while the Lease keeps a LAN the kernel no longer shows (link down, default route gone).
    pub lan_kept: Gauge,
    /// Gratuitous ARP / NA from another MAC for a local address of this node, by what was done.
    pub address_conflicts: Family<ActionLabel, Counter>,
    /// Events, by result: `published`, `failed` (refused or timed out), `dropped` (too many waited).
    pub events: Family<ResultLabel, Counter>,
    /// Events waiting to be published (at most the queue's 1,000).
    pub events_waiting: Gauge,
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
            api_reachable: Gauge::default(),
            fail_static_since_seconds: Gauge::default(),
            lan_kept: Gauge::default(),
            address_conflicts: Family::default(),
            events: Family::default(),
            events_waiting: Gauge::default(),
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
        r.register(
            "api_reachable",
            "1 while this agent sees its node Lease renewed through the API server, 0 while it runs fail-static",
            m.api_reachable.clone(),
        );
        r.register(
            "fail_static_since_seconds",
            "Unix time since when this agent runs on its last known state (0 while the API is reachable)",
            m.fail_static_since_seconds.clone(),
        );
        r.register(
            "lan_kept",
            "1 while the node Lease keeps a LAN the kernel no longer shows (link down, default route gone)",
            m.lan_kept.clone(),
        );
        r.register(
            "address_conflicts",
            "Gratuitous ARP / NA from another MAC for a local address of this node, by action (yielded: the view was stale; kept: the view was current, the election decides; seen: already yielded)",
            m.address_conflicts.clone(),
        );
        r.register(
            "events",
            "Events, by result (published; failed: refused or timed out; dropped: too many waited, see --event-qps)",
            m.events.clone(),
        );
        r.register(
            "events_waiting",
            "Events waiting to be published (the queue is drained at --event-qps after a burst of --event-burst)",
            m.events_waiting.clone(),
        );
        m
    }

    /// Counts one event by `result`; returns that result's count so far.
    pub fn event(&self, result: &str) -> u64 {
        self.events.get_or_create(&ResultLabel { result: result.to_string() }).inc() + 1
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

    /// Counts one address conflict and what was done about it.
    pub fn conflict(&self, action: ConflictAction) {
        let action = match action {
            ConflictAction::Yielded => "yielded",
            ConflictAction::Kept => "kept",
            ConflictAction::Seen => "seen",
        };
        self.address_conflicts.get_or_create(&ActionLabel { action: action.to_string() }).inc();
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
