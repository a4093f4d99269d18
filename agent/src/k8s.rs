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
//!   Recorder with controller `purelb-lbnodeagent` and instance `<node>`.
//! - The node Lease: see `lease`.
//!
//! Report writes are serialised per Service and the newest wins; every call has a timeout and is
//! retried with backoff; a write given up is sent back to the loop so it is decided again.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ObjectReference, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};
use purelb_core::allocate::ServiceKey;
use purelb_core::api::{AGENT_COMPONENT, LBNodeAgent, conditions};
use serde_json::json;
use tokio::sync::{Mutex, Semaphore, mpsc};

use crate::metrics::Metrics;
use purelb_core::announce::report::ServiceReport;

/// Field manager of the writes that are not per node (the policy reset, the Lease).
pub const MANAGER: &str = AGENT_COMPONENT;
pub use purelb_core::api::events::INVALID_LB_NODE_AGENT as INVALID_CONFIG;
pub use purelb_core::api::events::TRAFFIC_POLICY_RESET;
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const ATTEMPTS: u32 = 6;
/// The API server's limit on a field manager's length.
const MAX_MANAGER_LEN: usize = 128;

/// A write given up after its retries.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The API server refused it.
    #[error("writing the {what} of Service {key}: {source}")]
    Api {
        /// What was written.
        what: String,
        /// The Service.
        key: ServiceKey,
        /// The last error.
        #[source]
        source: kube::Error,
    },
    /// Every attempt timed out.
    #[error("writing the {what} of Service {key}: timed out {ATTEMPTS} times")]
    Timeout {
        /// What was written.
        what: String,
        /// The Service.
        key: ServiceKey,
    },
}

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
    recorder: Recorder,
    manager: String,
    generation: Arc<AtomicU64>,
    latest: Arc<std::sync::Mutex<HashMap<ServiceKey, u64>>>,
    locks: Arc<std::sync::Mutex<HashMap<ServiceKey, Arc<Mutex<()>>>>>,
    concurrency: Arc<Semaphore>,
    failed: mpsc::UnboundedSender<ServiceKey>,
    metrics: Metrics,
}

impl Writer {
    /// A writer for node `node`, at most `concurrency` Services written at once; a report given up is
    /// sent on `failed`.
    pub fn new(
        client: Client,
        node: &str,
        concurrency: usize,
        failed: mpsc::UnboundedSender<ServiceKey>,
        metrics: Metrics,
    ) -> Self {
        let reporter = Reporter { controller: AGENT_COMPONENT.into(), instance: Some(node.to_string()) };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            manager: node_manager(node),
            generation: Arc::new(AtomicU64::new(0)),
            latest: Arc::default(),
            locks: Arc::default(),
            concurrency: Arc::new(Semaphore::new(concurrency.max(1))),
            failed,
            metrics,
        }
    }

    /// Queues a report write; returns at once. A newer report for the same Service supersedes it.
    pub fn report(&self, write: ReportWrite) {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        lock(&self.latest).insert(write.key.clone(), generation);
        let key_lock = lock(&self.locks).entry(write.key.clone()).or_default().clone();
        let this = self.clone();
        tokio::spawn(async move {
            let Ok(_permit) = this.concurrency.acquire().await else { return };
            let _guard = key_lock.lock().await;
            if lock(&this.latest).get(&write.key) != Some(&generation) {
                return;
            }
            if let Err(e) = this.apply_report(&write).await {
                this.metrics.error("write");
                tracing::warn!(service = %write.key, error = %e, "giving up writing the announcement report");
                let _ = this.failed.send(write.key.clone());
            }
            let mut latest = lock(&this.latest);
            if latest.get(&write.key) == Some(&generation) {
                latest.remove(&write.key);
                drop(latest);
                lock(&this.locks).remove(&write.key);
            }
        });
    }

    async fn apply_report(&self, w: &ReportWrite) -> Result<(), WriteError> {
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

    /// Publishes an event on `reference` in the background.
    pub fn event(&self, reference: ObjectReference, warning: bool, reason: &str, message: String) {
        let recorder = self.recorder.clone();
        let reason = reason.to_string();
        tokio::spawn(async move {
            let ev = Event {
                type_: if warning { EventType::Warning } else { EventType::Normal },
                reason: reason.clone(),
                note: Some(message),
                action: "Announce".into(),
                secondary: None,
            };
            match tokio::time::timeout(CALL_TIMEOUT, recorder.publish(&ev, &reference)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, %reason, "could not publish event"),
                Err(_) => tracing::warn!(%reason, "publishing an event timed out"),
            }
        });
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

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `call` with a timeout, retrying failures with exponential backoff. A Service that no longer
/// exists (404) ends the retries quietly.
async fn retry<T, F, Fut>(key: &ServiceKey, what: &str, mut call: F) -> Result<(), WriteError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut delay = Duration::from_millis(100);
    for attempt in 1..=ATTEMPTS {
        match tokio::time::timeout(CALL_TIMEOUT, call()).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(kube::Error::Api(e))) if e.code == 404 => return Ok(()),
            Ok(Err(source)) if attempt == ATTEMPTS => {
                return Err(WriteError::Api { what: what.into(), key: key.clone(), source });
            }
            Err(_) if attempt == ATTEMPTS => {
                return Err(WriteError::Timeout { what: what.into(), key: key.clone() });
            }
            Ok(Err(e)) => {
                tracing::debug!(service = %key, what, attempt, error = %e, "write failed; retrying")
            }
            Err(_) => tracing::debug!(service = %key, what, attempt, "write timed out; retrying"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    Err(WriteError::Timeout { what: what.into(), key: key.clone() })
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
