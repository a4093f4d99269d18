//! The agent's writes to the API server: Service reports, events, the `externalTrafficPolicy` reset.
//!
//! Who writes which field (no two agents ever own one field at once in steady state):
//! - `purelb.io/announcing-IPv4` / `-IPv6` annotations and the `purelb.io/Announced` status condition:
//!   only the Service's reporter (`report::reporter`: the local winner, else one live node chosen by
//!   hash), by server-side apply with force and a **per-node field manager**
//!   `purelb-lbnodeagent-<node>`. When the reporter changes, the new one's forced apply takes the fields
//!   over; the old one stops writing (it is not the reporter any more) and, since the manager is
//!   per node, nothing it might still apply can remove what the new reporter owns. Fields that a dead
//!   reporter left and the desired report no longer has are removed by the current reporter with a
//!   merge patch (annotations: `null`) or a strategic-merge `$patch: delete` (the condition entry,
//!   keyed by `type`), which remove them whoever owns them. Sub-fields a new reporter applies with the
//!   same value as before (the condition's `type`, often `status`) stay co-owned by the earlier
//!   reporters' managers; that is harmless, since only the current reporter ever writes.
//! - `spec.externalTrafficPolicy: Cluster` (a local address must not use `Local`): only the local
//!   winner, by a merge patch with field manager `purelb-lbnodeagent`, with a Warning event.
//! - Events (`AnnouncingLocal`, `AnnouncingNonLocal`): each node for its own take-ups, through one
//!   `purelb_runtime::Publisher` with controller `purelb-lbnodeagent` and instance `<node>`, and a rate-limited queue
//!   (`purelb_runtime::EventQueue`: `--event-qps`, `--event-burst`; beyond 1,000 waiting an event is
//!   dropped and counted in `purelb_agent_events_total{result="dropped"}`).
//! - The node Lease: see `lease`.
//!
//! Report writes are serialised per Service and the newest wins (`purelb_runtime::Keyed`); every call
//! has a timeout and is retried with backoff (`purelb_runtime::retry`); a write given up is sent back
//! to the loop so it is decided again.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ObjectReference, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::Event;
use kube::{Client, Resource};
use purelb_core::allocate::ServiceKey;
use purelb_core::api::{AGENT_COMPONENT, LBNodeAgent, conditions};
use purelb_runtime::{EventLimits, EventQueue, Publisher, PushError};
use purelb_runtime::{Keyed, RetryError, RetryPolicy};
use serde_json::json;
use tokio::sync::mpsc;

use crate::metrics::Metrics;
use purelb_core::announce::report::ServiceReport;

/// Field manager of the writes that are not per node (the policy reset, the Lease).
pub const MANAGER: &str = AGENT_COMPONENT;
pub use purelb_core::api::events::INVALID_LB_NODE_AGENT as INVALID_CONFIG;
pub use purelb_core::api::events::TRAFFIC_POLICY_RESET;
/// The API server's limit on a field manager's length.
const MAX_MANAGER_LEN: usize = 128;

/// The per-node field manager of the report fields.
pub fn node_manager(node: &str) -> String {
    let mut m = format!("{MANAGER}-{node}");
    m.truncate(MAX_MANAGER_LEN);
    m
}

/// A report to write on one Service.
#[derive(Debug)]
pub struct ReportWrite {
    /// The Service.
    pub key: ServiceKey,
    /// What it should show.
    pub desired: ServiceReport,
    /// What it shows now.
    pub observed: ServiceReport,
    /// Its current `purelb.io/Announced` condition (for `lastTransitionTime`).
    pub previous: Option<Condition>,
}

/// Applies reports and publishes events; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    client: Client,
    manager: String,
    /// One report write at a time per Service, the newest winning.
    queue: Keyed<ServiceKey>,
    /// Events, rate-limited, in order.
    events: EventQueue<(ObjectReference, Event)>,
    failed: mpsc::UnboundedSender<ServiceKey>,
    metrics: Metrics,
}

impl Writer {
    /// A writer for node `node`, at most `concurrency` Services written at once, events published
    /// within `limits`; a report given up is sent on `failed`.
    pub fn new(
        client: Client,
        node: &str,
        concurrency: usize,
        limits: EventLimits,
        failed: mpsc::UnboundedSender<ServiceKey>,
        metrics: Metrics,
    ) -> Self {
        let recorder = Publisher::new(client.clone(), AGENT_COMPONENT, node);
        let counted = metrics.clone();
        let waiting = metrics.events_waiting.clone();
        let events =
            EventQueue::spawn_counted(limits, waiting, move |(reference, ev): (ObjectReference, Event)| {
                let recorder = recorder.clone();
                let metrics = counted.clone();
                async move {
                    let published =
                        match tokio::time::timeout(POLICY.timeout, recorder.publish(&ev, &reference)).await {
                            Ok(Ok(())) => true,
                            Ok(Err(e)) => {
                                tracing::warn!(error = %e, reason = %ev.reason, "could not publish event");
                                false
                            }
                            Err(_) => {
                                tracing::warn!(reason = %ev.reason, "publishing an event timed out");
                                false
                            }
                        };
                    metrics.event(if published { "published" } else { "failed" });
                }
            });
        Self { client, manager: node_manager(node), queue: Keyed::new(concurrency), events, failed, metrics }
    }

    /// Queues a report write; returns at once. A newer report for the same Service supersedes it.
    pub fn report(&self, write: ReportWrite) {
        let this = self.clone();
        self.queue.submit(write.key.clone(), move || async move {
            if let Err(e) = this.apply_report(&write).await {
                this.metrics.error("write");
                tracing::warn!(service = %write.key, error = %e, "giving up writing the announcement report");
                let _ = this.failed.send(write.key.clone());
            }
        });
    }

    async fn apply_report(&self, w: &ReportWrite) -> Result<(), RetryError> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), &w.key.namespace);
        let name = w.key.name.as_str();
        let apply = PatchParams::apply(&self.manager).force();
        let update = PatchParams { field_manager: Some(self.manager.clone()), ..Default::default() };
        let meta = json!({"name": name, "namespace": w.key.namespace});
        if w.desired.annotations != w.observed.annotations {
            if !w.desired.annotations.is_empty() {
                let mut metadata = meta.clone();
                metadata["annotations"] = json!(w.desired.annotations);
                let body = Patch::Apply(json!({"apiVersion": "v1", "kind": "Service", "metadata": metadata}));
                retry(&w.key, "annotations", || api.patch(name, &apply, &body)).await?;
            }
            let stale: serde_json::Map<String, serde_json::Value> = w
                .observed
                .annotations
                .keys()
                .filter(|k| !w.desired.annotations.contains_key(*k))
                .map(|k| (k.clone(), serde_json::Value::Null))
                .collect();
            if !stale.is_empty() {
                let body = Patch::Merge(json!({"metadata": {"annotations": stale}}));
                retry(&w.key, "stale annotations", || api.patch(name, &update, &body)).await?;
            }
        }
        if w.desired.condition != w.observed.condition {
            match &w.desired.condition {
                Some(c) => {
                    let status = if c.status { "True" } else { "False" };
                    let since = match &w.previous {
                        Some(p) if p.status == status => p.last_transition_time.clone(),
                        _ => Time(Timestamp::now()),
                    };
                    let condition = Condition {
                        type_: conditions::ANNOUNCED.into(),
                        status: status.into(),
                        reason: c.reason.clone(),
                        message: c.message.clone(),
                        last_transition_time: since,
                        observed_generation: None,
                    };
                    let body = Patch::Apply(json!({
                        "apiVersion": "v1", "kind": "Service", "metadata": meta,
                        "status": {"conditions": [condition]},
                    }));
                    retry(&w.key, "condition", || api.patch_status(name, &apply, &body)).await?;
                }
                None => {
                    let body = Patch::Strategic(json!({
                        "status": {"conditions": [{"type": conditions::ANNOUNCED, "$patch": "delete"}]},
                    }));
                    retry(&w.key, "stale condition", || api.patch_status(name, &update, &body)).await?;
                }
            }
        }
        Ok(())
    }

    /// Queues an event on `reference`; it goes out within the event limits, or is dropped (and
    /// counted) when too many already wait.
    pub fn event(&self, reference: ObjectReference, warning: bool, reason: &str, message: String) {
        let ev = purelb_runtime::events::event(warning, reason, message, "Announce");
        match self.events.push((reference, ev)) {
            Ok(()) => {}
            Err(e @ PushError::Full(_)) => {
                // One line per hundred drops: a burst must not flood the log either.
                if self.metrics.event("dropped") % 100 == 1 {
                    tracing::warn!(%reason, error = %e, "dropping events (counted in purelb_agent_events_total)");
                }
            }
            Err(PushError::Stopped) => {}
        }
    }

    /// Sets `spec.externalTrafficPolicy: Cluster` on the Service, then publishes `why` as a Warning.
    pub fn reset_traffic_policy(&self, key: ServiceKey, reference: ObjectReference, why: String) {
        let this = self.clone();
        tokio::spawn(async move {
            let api: Api<Service> = Api::namespaced(this.client.clone(), &key.namespace);
            let pp = PatchParams { field_manager: Some(MANAGER.to_string()), ..Default::default() };
            let body = Patch::Merge(json!({"spec": {"externalTrafficPolicy": "Cluster"}}));
            match retry(&key, "externalTrafficPolicy", || api.patch(&key.name, &pp, &body)).await {
                Ok(()) => {
                    tracing::info!(service = %key, %why, "reset externalTrafficPolicy to Cluster");
                    this.event(reference, true, TRAFFIC_POLICY_RESET, why);
                }
                Err(e) => {
                    this.metrics.error("write");
                    tracing::warn!(service = %key, error = %e, "could not reset externalTrafficPolicy");
                }
            }
        });
    }

    /// Reports an unusable LBNodeAgent with a Warning event on it.
    pub fn config_warning(&self, agent: &LBNodeAgent, message: String) {
        self.event(agent.object_ref(&()), true, INVALID_CONFIG, message);
    }
}

/// Every write: 6 attempts of at most 10 s each, 100 ms after the first failure, doubling up to 5 s.
const POLICY: RetryPolicy = RetryPolicy {
    attempts: 6,
    timeout: Duration::from_secs(10),
    first_delay: Duration::from_millis(100),
    max_delay: Duration::from_secs(5),
};

/// One write of `what` of Service `key` under [`POLICY`] (a Service that no longer exists ends it).
async fn retry<T, F, Fut>(key: &ServiceKey, what: &str, call: F) -> Result<(), RetryError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    purelb_runtime::retry(&POLICY, &format!("{what} of Service {key}"), call).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_managers_are_per_node_and_within_the_api_limit() {
        assert_eq!(node_manager("node1"), "purelb-lbnodeagent-node1");
        assert_eq!(node_manager(&"n".repeat(253)).len(), MAX_MANAGER_LEN);
    }
}
