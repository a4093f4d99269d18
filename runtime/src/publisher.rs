//! [`Publisher`]: writes `events.k8s.io/v1` Events for one reporter (a daemon's controller name and
//! instance), a repeat of an event within [`SERIES_WINDOW`] as a count on the first one (its `series`),
//! as kube's `Recorder` and client-go do.
//!
//! Why not kube's `Recorder`: it keeps every Event it published, whole, for six minutes, and walks all
//! of them on each publish. The allocator publishes one event per allocation, so a burst of 5,000
//! held 17.7 MB of Events in its hash table alone (heaptrack, the allocator holding 10,000 Services),
//! and each publish cost a walk of thousands. Here a recent event is a 64-bit key and a name, at most
//! [`MAX_RECENT`] of them; the walk runs only when that many are kept. Unlike the `Recorder`, the key
//! includes the note: an `IPAllocated` with another address is a new event, not a repeat of the first.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType};
use serde_json::json;

/// How long a repeat counts on the first event (kube's and client-go's six minutes).
pub const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);
/// Recent events kept to count repeats on; beyond it, the expired ones are dropped, and if none had
/// expired, all (a repeat is then a new Event: events are best effort).
pub const MAX_RECENT: usize = 4096;

/// Publishes events for one reporter; cheap to clone (clones share the recent events).
#[derive(Clone)]
pub struct Publisher {
    client: Client,
    controller: String,
    instance: String,
    recent: Arc<Mutex<Recent>>,
}

impl Publisher {
    /// A publisher reporting as `controller` (`reportingController`), instance `instance`.
    pub fn new(client: Client, controller: &str, instance: &str) -> Self {
        Self {
            client,
            controller: controller.to_owned(),
            instance: instance.to_owned(),
            recent: Arc::default(),
        }
    }

    /// Publishes `ev` about `regarding` (in its namespace, `default` for a cluster-scoped object): a
    /// new Event, or the count of the same event published within [`SERIES_WINDOW`].
    pub async fn publish(&self, ev: &Event, regarding: &ObjectReference) -> Result<(), kube::Error> {
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), namespace);
        let key = key_of(ev, regarding);
        let now = Timestamp::now();
        let repeat = self.recent_lock().repeat(key, Instant::now());
        if let Some((name, count)) = repeat {
            let series = json!({"series": {"count": count, "lastObservedTime": MicroTime(now)}});
            match api.patch(&name, &PatchParams::default(), &Patch::Merge(&series)).await {
                Ok(_) => return Ok(()),
                // Gone (events expire after an hour by default): a new one.
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let event = self.event(ev, regarding, now);
        let created = api.create(&PostParams::default(), &event).await?;
        if let Some(name) = created.metadata.name {
            self.recent_lock().record(key, name, Instant::now());
        }
        Ok(())
    }

    fn recent_lock(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The Event `ev` about `regarding` at `now`, named `<object>.<nanoseconds, hex>` as kubectl and
    /// client-go name theirs.
    fn event(&self, ev: &Event, regarding: &ObjectReference, now: Timestamp) -> K8sEvent {
        let object = regarding.name.as_deref().unwrap_or(&self.controller);
        K8sEvent {
            metadata: ObjectMeta {
                name: Some(format!("{object}.{:x}", now.as_nanosecond())),
                namespace: regarding.namespace.clone(),
                ..ObjectMeta::default()
            },
            action: Some(ev.action.clone()),
            reason: Some(ev.reason.clone()),
            note: ev.note.clone(),
            type_: Some(type_name(ev.type_).to_owned()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            related: ev.secondary.clone(),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..K8sEvent::default()
        }
    }
}

fn type_name(t: EventType) -> &'static str {
    match t {
        EventType::Normal => "Normal",
        EventType::Warning => "Warning",
    }
}

/// What makes two events of one reporter the same: type, reason, action, note, the object and the
/// related one, hashed (a collision, one in 2^64, would count one event on another's series).
fn key_of(ev: &Event, regarding: &ObjectReference) -> u64 {
    let mut h = DefaultHasher::new();
    type_name(ev.type_).hash(&mut h);
    (&ev.reason, &ev.action, &ev.note).hash(&mut h);
    for r in std::iter::once(regarding).chain(ev.secondary.as_ref()) {
        (&r.api_version, &r.kind, &r.namespace, &r.name, &r.uid).hash(&mut h);
    }
    h.finish()
}

/// The events published recently, by key: their name, how many times and when last.
#[derive(Default)]
struct Recent(HashMap<u64, Series>);

struct Series {
    name: String,
    count: i32,
    last: Instant,
}

impl Recent {
    /// For an event published within the window before `now`: its name and the count to write (its
    /// count so far plus this one), counted.
    fn repeat(&mut self, key: u64, now: Instant) -> Option<(String, i32)> {
        let s = self.0.get_mut(&key).filter(|s| now.duration_since(s.last) < SERIES_WINDOW)?;
        s.count = s.count.saturating_add(1);
        s.last = now;
        Some((s.name.clone(), s.count))
    }

    /// Remembers a new event `name` (count 1), making room first when [`MAX_RECENT`] are kept.
    fn record(&mut self, key: u64, name: String, now: Instant) {
        if self.0.len() >= MAX_RECENT && !self.0.contains_key(&key) {
            self.0.retain(|_, s| now.duration_since(s.last) < SERIES_WINDOW);
            if self.0.len() >= MAX_RECENT {
                self.0.clear();
            }
        }
        self.0.insert(key, Series { name, count: 1, last: now });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn reference(name: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Service".into()),
            namespace: Some("ns".into()),
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            ..ObjectReference::default()
        }
    }

    #[test]
    fn the_key_tells_events_apart_by_what_they_say_and_about_what() {
        let ev = |note: &str| crate::events::event(false, "IPAllocated", note.to_owned(), "Allocate");
        let a = key_of(&ev("Assigned IP 192.0.2.1 from pool p"), &reference("web"));
        assert_eq!(a, key_of(&ev("Assigned IP 192.0.2.1 from pool p"), &reference("web")));
        assert_ne!(a, key_of(&ev("Assigned IP 192.0.2.2 from pool p"), &reference("web")), "the note");
        assert_ne!(a, key_of(&ev("Assigned IP 192.0.2.1 from pool p"), &reference("db")), "the object");
        let warning =
            crate::events::event(true, "IPAllocated", "Assigned IP 192.0.2.1 from pool p".into(), "Allocate");
        assert_ne!(a, key_of(&warning, &reference("web")), "the type");
    }

    #[test]
    fn a_repeat_within_the_window_counts_on_the_first_and_one_after_it_is_new() {
        let t0 = Instant::now();
        let mut recent = Recent::default();
        assert_eq!(recent.repeat(1, t0), None);
        recent.record(1, "web.1".into(), t0);
        assert_eq!(recent.repeat(1, t0 + Duration::from_secs(10)), Some(("web.1".into(), 2)));
        assert_eq!(recent.repeat(1, t0 + Duration::from_secs(300)), Some(("web.1".into(), 3)));
        // The window runs from the last repeat.
        assert_eq!(recent.repeat(1, t0 + Duration::from_secs(300) + SERIES_WINDOW), None);
        assert_eq!(recent.repeat(2, t0), None);
    }

    #[test]
    fn at_most_max_recent_are_kept_the_expired_going_first() {
        let t0 = Instant::now();
        let mut recent = Recent::default();
        for k in 0..MAX_RECENT as u64 {
            recent.record(k, format!("e.{k}"), t0);
        }
        // Full, none expired: all go.
        recent.record(u64::MAX, "new".into(), t0 + Duration::from_secs(1));
        assert_eq!(recent.0.len(), 1);
        for k in 0..(MAX_RECENT - 1) as u64 {
            recent.record(k, format!("e.{k}"), t0 + Duration::from_secs(1));
        }
        // Full again; one repeated since, the others expire first.
        assert!(recent.repeat(u64::MAX, t0 + Duration::from_secs(100)).is_some());
        let later = t0 + Duration::from_secs(1) + SERIES_WINDOW;
        recent.record(u64::MAX - 1, "newer".into(), later);
        assert_eq!(recent.0.len(), 2, "the expired ones went, the repeated one stayed");
        assert_eq!(recent.repeat(u64::MAX, later), Some(("new".into(), 3)));
    }
}
