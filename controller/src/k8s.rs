//! Writes to the API server: a Service's status (ingress + `purelb.io/Allocated` condition) and
//! annotations in one server-side apply to its status subresource with field manager `purelb-allocator`, events through one shared
//! `purelb_runtime::Publisher`, and ServiceGroup status. Writes for one Service are serialised and the newest wins
//! (`purelb_runtime::Keyed`); every call is bounded by a timeout and retried with backoff
//! (`purelb_runtime::retry`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource};
use purelb_core::allocate::{AllocatedCondition, GroupKey, ServiceKey};
pub use purelb_core::announce::facts::ingress_ips;
use purelb_core::api::{ALLOCATED_BY_VALUE, ALLOCATOR_COMPONENT, ServiceGroup, annotations, conditions};
use purelb_core::service::ServiceFields;
use purelb_runtime::{Keyed, Publisher, RetryPolicy, events};
use serde_json::json;
use tokio::sync::mpsc;

/// The field manager of every write.
pub const MANAGER: &str = ALLOCATOR_COMPONENT;

/// What PureLB wants a Service to show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    /// `status.loadBalancer.ingress` IPs; empty while pending.
    pub ips: Vec<IpAddr>,
    /// `purelb.io/allocated-from`; None while pending.
    pub group: Option<GroupKey>,
    /// The `purelb.io/Allocated` condition.
    pub condition: Wanted,
}

/// The content of the `purelb.io/Allocated` condition (its time is the writer's).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    /// `True` / `False`.
    pub status: bool,
    /// The reason code.
    pub reason: String,
    /// The message.
    pub message: String,
}

impl From<&AllocatedCondition> for Wanted {
    fn from(c: &AllocatedCondition) -> Self {
        Wanted { status: c.status, reason: c.reason.as_str().into(), message: c.message.clone() }
    }
}

impl Desired {
    /// What a Service shows now, as far as PureLB's fields go.
    pub fn observed(svc: &impl ServiceFields) -> Desired {
        let ips = ingress_ips(svc);
        let group = svc.annotation(annotations::ALLOCATED_FROM).map(GroupKey::new);
        let condition = svc
            .condition(conditions::ALLOCATED)
            .map(|c| Wanted {
                status: c.status == "True",
                reason: c.reason.to_string(),
                message: c.message.to_string(),
            })
            .unwrap_or_default();
        Desired { ips, group, condition }
    }

    /// Whether both record the same successful allocation: the same addresses from the same group with
    /// reason `Allocated`. The messages may differ (one says how the addresses were chosen, a later
    /// decision only that they are held); the first one stays.
    pub fn same_allocation(&self, other: &Desired) -> bool {
        self.condition.status
            && other.condition.status
            && self.condition.reason == other.condition.reason
            && self.ips == other.ips
            && self.group == other.group
    }
}

/// One event to publish on a Service.
#[derive(Clone, Debug)]
pub struct Note {
    /// Normal or Warning.
    pub warning: bool,
    /// The reason (e.g. `IPAllocated`).
    pub reason: String,
    /// The message.
    pub message: String,
}

/// A write for one Service: `desired` None removes everything PureLB wrote.
#[derive(Debug)]
pub struct ServiceWrite {
    /// The Service.
    pub key: ServiceKey,
    /// Its object reference (for events).
    pub reference: ObjectReference,
    /// The state to apply.
    pub desired: Option<Desired>,
    /// The condition's current lastTransitionTime and status, kept when the status does not change.
    pub previous_condition: Option<Condition>,
    /// Events to publish after the write.
    pub notes: Vec<Note>,
}

/// Sent back to the allocator loop when a write is given up, so that it forgets what it submitted.
#[derive(Debug)]
pub struct WriteFailed(pub ServiceKey);

/// Applies [`ServiceWrite`]s concurrently, one at a time per Service, newest first.
#[derive(Clone)]
pub struct Writer(Arc<Shared>);

/// What every clone of a [`Writer`] shares: one pointer in each queued write rather than a client, a
/// publisher and a queue (a backlog of 5,000 writes holds 5,000 of them).
struct Shared {
    client: Client,
    events: Publisher,
    /// One write at a time per Service, the newest winning; [`Writer::halt`] stops them all.
    queue: Keyed<ServiceKey>,
    failed: mpsc::UnboundedSender<WriteFailed>,
}

impl Writer {
    /// A writer with at most `concurrency` Services being written at once.
    pub fn new(
        client: Client,
        instance: String,
        concurrency: usize,
        failed: mpsc::UnboundedSender<WriteFailed>,
    ) -> Self {
        Self(Arc::new(Shared {
            events: Publisher::new(client.clone(), ALLOCATOR_COMPONENT, &instance),
            client,
            queue: Keyed::new(concurrency),
            failed,
        }))
    }

    /// Stops every queued and running write at once (leadership was lost: another replica may write
    /// soon, and two writers must never race). The writer takes no more writes' effect afterwards.
    pub fn halt(&self) {
        let n = self.0.queue.halt();
        tracing::info!(tasks = n, "stopped every write");
    }

    /// Queues a write; returns at once.
    pub fn submit(&self, write: ServiceWrite) {
        let this = self.clone();
        self.0.queue.submit(write.key.clone(), move || async move {
            if let Err(e) = this.apply(&write).await {
                tracing::error!(service = %write.key, error = %e, "giving up writing the Service");
                let _ = this.0.failed.send(WriteFailed(write.key.clone()));
            }
        });
    }

    /// Waits (at most `timeout`) until every submitted write has finished: SIGTERM drains.
    pub async fn drain(&self, timeout: Duration) {
        let left = self.0.queue.drain(timeout).await;
        if left > 0 {
            tracing::warn!(left, "stopping with writes still in flight");
        }
    }

    async fn apply(&self, w: &ServiceWrite) -> anyhow::Result<()> {
        let api: Api<k8s_openapi::api::core::v1::Service> =
            Api::namespaced(self.0.client.clone(), &w.key.namespace);
        let pp = PatchParams::apply(MANAGER).force();
        // One write through the status subresource carries the annotations too (a Service's status
        // strategy resets only its spec), so the address and where it came from appear together: nobody
        // ever sees one without the other, and the address is visible after one round trip, not two.
        let body = Patch::Apply(body(w));
        retry(&w.key, "status and annotations", || api.patch_status(&w.key.name, &pp, &body)).await?;
        if w.desired.is_none() {
            // Annotations an earlier version applied to the main resource belong to that field set, which
            // an empty intent on the status subresource does not touch: withdraw it too (rare: releases).
            let main = Patch::Apply(empty_intent(&w.key));
            retry(&w.key, "annotations", || api.patch(&w.key.name, &pp, &main)).await?;
        }
        for note in &w.notes {
            let ev = events::event(note.warning, &note.reason, note.message.clone(), "Allocate");
            if let Err(e) = self.0.events.publish(&ev, &w.reference).await {
                tracing::warn!(service = %w.key, error = %e, reason = %note.reason, "could not publish event");
            }
        }
        Ok(())
    }

    /// Applies a ServiceGroup's status (usage and validity).
    pub async fn group_status(&self, namespace: &str, name: &str, status: serde_json::Value) {
        let api: Api<ServiceGroup> = Api::namespaced(self.0.client.clone(), namespace);
        let body = json!({"apiVersion": purelb_core::api::API_VERSION, "kind": "ServiceGroup", "metadata": {"name": name}, "status": status});
        let pp = PatchParams::apply(MANAGER).force();
        let key = ServiceKey::new(namespace, name);
        let body = Patch::Apply(body);
        if let Err(e) = retry(&key, "group status", || api.patch_status(name, &pp, &body)).await {
            tracing::warn!(group = %key, error = %e, "could not write ServiceGroup status");
        }
    }

    /// Publishes an event on any object (used for ServiceGroups).
    pub async fn event_on<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        message: String,
    ) {
        let ev = events::event(warning, reason, message, "Validate");
        if let Err(e) = self.0.events.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "could not publish event");
        }
    }
}

/// An apply body with no fields: applied, it removes every field this manager owned there.
fn empty_intent(key: &ServiceKey) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": key.name, "namespace": key.namespace}})
}

/// The apply body of a write, for the status subresource: `status` (ingress and the condition) and the
/// `allocated-by`/`allocated-from` annotations. A removal applies empty `status` and annotations.
fn body(w: &ServiceWrite) -> serde_json::Value {
    let mut body = empty_intent(&w.key);
    let Some(d) = &w.desired else {
        body["status"] = json!({});
        return body;
    };
    let Wanted { status: ok, reason, message } = &d.condition;
    let status_text = if *ok { "True" } else { "False" };
    let since = match &w.previous_condition {
        Some(c) if c.status == status_text => c.last_transition_time.clone(),
        _ => Time(Timestamp::now()),
    };
    let condition = Condition {
        type_: conditions::ALLOCATED.into(),
        status: status_text.into(),
        reason: reason.clone(),
        message: truncate(message, 32_000),
        last_transition_time: since,
        observed_generation: None,
    };
    let ingress: Vec<serde_json::Value> = d.ips.iter().map(|ip| json!({"ip": ip.to_string()})).collect();
    let mut status = json!({"conditions": [condition]});
    if !ingress.is_empty() {
        status["loadBalancer"] = json!({"ingress": ingress});
    }
    let mut ann = BTreeMap::new();
    if let Some(group) = &d.group {
        ann.insert(annotations::ALLOCATED_BY, ALLOCATED_BY_VALUE.to_string());
        ann.insert(annotations::ALLOCATED_FROM, group.to_string());
    }
    body["metadata"]["annotations"] = json!(ann);
    body["status"] = status;
    body
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Every write: 8 attempts of at most 10 s each, 50 ms after the first failure, doubling up to 5 s.
const POLICY: RetryPolicy = RetryPolicy {
    attempts: 8,
    timeout: Duration::from_secs(10),
    first_delay: Duration::from_millis(50),
    max_delay: Duration::from_secs(5),
};

/// One write of `what` of Service `key` under [`POLICY`] (a Service that no longer exists ends it).
async fn retry<T, F, Fut>(key: &ServiceKey, what: &str, call: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    Ok(purelb_runtime::retry(&POLICY, &format!("{what} of {key}"), call).await?)
}
