//! The allocator loop: one task owns the [`AllocationIndex`], fed by the Service and ServiceGroup
//! watches. It rebuilds the index from every existing Service before deciding anything, then hands each
//! changed Service (every Service when a group changes; and, when an address is freed, every pending
//! one) to core's [`reconcile`], commits the [`Outcome`] and hands the write to the [`Writer`]: the
//! condition, the addresses and the events are core's words, this loop only decides when to ask and
//! what to write again. Only the leader runs this loop.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use futures::{Stream, StreamExt};
use kube::runtime::watcher;
use purelb_core::allocate::{
    AllocationIndex, GroupKey, Outcome, Ownership, Reason, ServiceKey, claim_existing, ownership, reconcile,
};
use purelb_core::api::{ServiceGroup, annotations, conditions, events};
use purelb_core::service::{CachedService, ServiceFields};
use tokio::sync::mpsc;

use crate::k8s::{Desired, Note, ServiceWrite, Wanted, WriteFailed, Writer, ingress_ips};
use crate::metrics::{Metrics, ReasonLabel};
use purelb_runtime::{Admin, Cache, ObjectId, Touched, take_ready};

/// Watch events taken before deciding.
const MAX_BATCH: usize = 10_000;

/// A watch event of either kind (boxed: a batch holds up to [`MAX_BATCH`] of them).
pub enum Change {
    /// A Service watch event.
    Service(Box<watcher::Event<CachedService>>),
    /// A ServiceGroup watch event.
    Group(Box<watcher::Event<ServiceGroup>>),
}

/// Settings of the loop.
pub struct Settings {
    /// Whether class-less LoadBalancer Services are PureLB's.
    pub classless_ours: bool,
}

/// Loop state. See the module documentation.
pub struct Allocator {
    settings: Settings,
    index: AllocationIndex,
    services: Cache<CachedService>,
    groups: Cache<ServiceGroup>,
    /// Ours, whose last decision failed (with or without addresses kept), waiting for something to change.
    pending: BTreeSet<ServiceKey>,
    /// What was last submitted for each Service (so a write is not repeated before its watch event).
    submitted: HashMap<ServiceKey, Option<Desired>>,
    /// Groups whose status must be rewritten.
    dirty_groups: BTreeSet<GroupKey>,
    /// Group problems already reported, by (namespace, name).
    reported_groups: HashMap<(String, String), String>,
    writer: Writer,
    metrics: Metrics,
}

impl Allocator {
    /// A loop with an empty index.
    pub fn new(settings: Settings, writer: Writer, metrics: Metrics) -> Self {
        Self {
            settings,
            index: AllocationIndex::new(),
            services: Cache::keyed_by(CachedService::id),
            groups: Cache::default(),
            pending: BTreeSet::new(),
            submitted: HashMap::new(),
            dirty_groups: BTreeSet::new(),
            reported_groups: HashMap::new(),
            writer,
            metrics,
        }
    }

    /// Runs until the change stream ends (an error) or `stop` fires.
    pub async fn run(
        mut self,
        changes: impl Stream<Item = Result<Change, watcher::Error>>,
        mut failed: mpsc::UnboundedReceiver<WriteFailed>,
        admin: Admin,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<()> {
        let mut changes = std::pin::pin!(changes);
        let mut synced = false;
        let mut flush = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                biased;
                _ = stop.changed() => return Ok(()),
                Some(WriteFailed(key)) = failed.recv() => {
                    self.submitted.remove(&key);
                    if synced { self.reconcile(&key, Instant::now()).await; }
                }
                _ = flush.tick(), if synced => self.flush_groups().await,
                change = changes.next() => {
                    let started = Instant::now();
                    let mut touched = BTreeSet::new();
                    let mut groups_changed = false;
                    let mut first = change;
                    // Take everything already waiting, then decide once for the batch (a batch at a
                    // time when more than MAX_BATCH are waiting).
                    loop {
                        let batch = take_ready(first, &mut changes, MAX_BATCH);
                        for item in batch.items {
                            match item {
                                Err(e) => tracing::warn!(error = %e, "watch error; the watcher retries"),
                                Ok(Change::Service(ev)) => self.on_service(*ev, &mut touched),
                                Ok(Change::Group(ev)) => groups_changed |= self.on_group(*ev),
                            }
                        }
                        if batch.ended {
                            bail!("the watch streams ended");
                        }
                        if !batch.full {
                            break;
                        }
                        self.process(&mut touched, groups_changed && synced, started).await;
                        groups_changed = false;
                        match futures::FutureExt::now_or_never(changes.next()) {
                            Some(next) => first = next,
                            None => break,
                        }
                    }
                    if !synced {
                        if self.services.synced() && self.groups.synced() {
                            self.rebuild(started).await;
                            synced = true;
                            admin.set_ready(true);
                            tracing::info!(services = self.services.len(), groups = self.groups.len(), "initial sync done");
                        }
                        continue;
                    }
                    self.process(&mut touched, groups_changed, started).await;
                }
            }
        }
    }

    fn on_service(&mut self, ev: watcher::Event<CachedService>, touched: &mut BTreeSet<ServiceKey>) {
        let key = |(ns, name): &ObjectId| ServiceKey::new(ns.as_str(), name.as_str());
        match self.services.apply(ev) {
            Touched::Nothing => {}
            Touched::One { id, .. } => {
                touched.insert(key(&id));
            }
            // Those gone while the watch was down, and every one listed.
            Touched::Relisted { previous } => {
                touched.extend(previous.keys().map(key));
                touched.extend(self.services.ids().map(key));
            }
        }
    }

    /// Returns whether the set of groups changed.
    fn on_group(&mut self, ev: watcher::Event<ServiceGroup>) -> bool {
        match self.groups.apply(ev) {
            Touched::Nothing => false,
            Touched::One { id: (ns, name), previous } => self.group_changed(&ns, &name, previous.as_deref()),
            Touched::Relisted { previous } => {
                let gone: Vec<ObjectId> =
                    previous.keys().filter(|id| !self.groups.contains(id)).cloned().collect();
                for (ns, name) in gone {
                    self.group_changed(
                        &ns,
                        &name,
                        previous.get(&(ns.clone(), name.clone())).map(Arc::as_ref),
                    );
                }
                let listed: Vec<ObjectId> = self.groups.ids().cloned().collect();
                for (ns, name) in listed {
                    self.group_changed(
                        &ns,
                        &name,
                        previous.get(&(ns.clone(), name.clone())).map(Arc::as_ref),
                    );
                }
                true
            }
        }
    }

    /// Brings the index up to the cached group `ns/name` (gone when not cached), which was `previous`;
    /// returns whether anything changed. Our own status writes come back as events: only a changed spec
    /// (or a new group) needs work.
    fn group_changed(&mut self, ns: &str, name: &str, previous: Option<&ServiceGroup>) -> bool {
        match self.groups.get_shared(ns, name).cloned() {
            Some(g) => {
                let changed = previous.is_none_or(|old| old.spec != g.spec);
                if changed {
                    self.index.set_group(ns, name, &g.spec);
                    self.dirty_groups.insert(GroupKey::new(name));
                }
                changed
            }
            None => {
                self.reported_groups.remove(&(ns.to_string(), name.to_string()));
                self.index.remove_group(ns, name);
                self.dirty_groups.insert(GroupKey::new(name));
                true
            }
        }
    }

    /// Start-up: claim what every Service already holds (oldest first, so that of two Services claiming
    /// one address the older keeps it and the newer is reported), then decide for everyone.
    async fn rebuild(&mut self, started: Instant) {
        let conflicts = claim_existing(&mut self.index, self.services.values(), self.settings.classless_ours);
        let claimed = self.index.services().count();
        tracing::info!(claimed, conflicts = conflicts.len(), "rebuilt the index from existing Services");
        let mut all: BTreeSet<ServiceKey> =
            self.services.ids().map(|(ns, name)| ServiceKey::new(ns.as_str(), name.as_str())).collect();
        self.process(&mut all, true, started).await;
    }

    async fn process(&mut self, touched: &mut BTreeSet<ServiceKey>, groups_changed: bool, started: Instant) {
        // A group change is decided for every Service, as a restart would: one that keeps a working
        // address is left alone, one that can now get what it asks for (a family the group gained, a
        // group that now exists) gets it, so the allocator never waits for a restart to converge.
        if groups_changed {
            touched.extend(self.services.ids().map(|(ns, name)| ServiceKey::new(ns.as_str(), name.as_str())));
        }
        for key in std::mem::take(touched) {
            self.reconcile(&key, started).await;
        }
        // Any change may unblock a pending Service (an address freed, a group changed, a sharer's key
        // or ports changed), as a restart would find: give each another chance, again while a pass
        // frees something (a Service that moves frees its old address); bounded by the number of
        // pending Services, and a pass that frees nothing ends it.
        let mut retry = true;
        let mut passes = self.pending.len();
        while retry && passes > 0 {
            passes -= 1;
            retry = false;
            let pending: Vec<ServiceKey> = self.pending.iter().cloned().collect();
            for key in pending {
                retry |= self.reconcile(&key, started).await;
            }
        }
    }

    /// Decides for one Service and submits the write. Returns true when addresses were freed.
    async fn reconcile(&mut self, key: &ServiceKey, started: Instant) -> bool {
        let Some(svc) = self.services.get_shared(&key.namespace, &key.name).cloned() else {
            self.pending.remove(key);
            self.submitted.remove(key);
            return self.release(key);
        };
        if ownership(&svc, self.settings.classless_ours) != Ownership::Ours {
            self.pending.remove(key);
            let freed = self.release(key);
            let ours_marks = svc.annotation(annotations::ALLOCATED_BY).is_some()
                || !Desired::observed(&svc).condition.reason.is_empty();
            if ours_marks && self.submitted.get(key) != Some(&None) {
                self.submit(&svc, None, Vec::new()).await;
            }
            return freed;
        }
        // Once the watch shows what was submitted, forget it: from then on the object is the truth, and a
        // later change by someone else (a cleared status) is repaired.
        if self.submitted.get(key).is_some_and(|d| d.as_ref() == Some(&Desired::observed(&svc))) {
            self.submitted.remove(key);
        }
        let observed_ips = ingress_ips(&svc);
        let outcome = reconcile(&mut self.index, &svc);
        let condition = Wanted::from(outcome.condition());
        match &outcome {
            Outcome::InvalidRequest { kept, condition: c, .. } => {
                let desired = Desired {
                    ips: kept.as_ref().map(|h| h.addresses.clone()).unwrap_or_default(),
                    group: kept.as_ref().and_then(|h| h.group.clone()),
                    condition,
                };
                if kept.is_none() {
                    self.pending.remove(key);
                }
                self.failure(&svc, desired, c.reason, c.message.clone()).await;
                false
            }
            Outcome::Conflict { shown, condition: c, .. } => {
                let desired = Desired { ips: shown.clone(), group: Desired::observed(&svc).group, condition };
                self.pending.insert(key.clone());
                self.failure(&svc, desired, c.reason, c.message.clone()).await;
                false
            }
            Outcome::Decided { request, decision, condition: c } => {
                self.metrics.decision_seconds.observe(started.elapsed().as_secs_f64());
                let freed = !outcome.commit(&mut self.index).is_empty();
                let Ok(assignments) = &decision.outcome else {
                    // Pending even when it keeps addresses: a group change may let the change through.
                    self.pending.insert(key.clone());
                    let held = self.index.held(key).cloned();
                    let desired = Desired {
                        ips: held.as_ref().map(|h| h.addresses.clone()).unwrap_or_default(),
                        group: held.as_ref().and_then(|h| h.group.clone()),
                        condition,
                    };
                    self.failure(&svc, desired, c.reason, c.message.clone()).await;
                    return freed;
                };
                let ips = decision.addresses();
                if ips.len() < request.families.len() {
                    // PreferDualStack without one family: it takes the other when an address frees up.
                    self.pending.insert(key.clone());
                } else {
                    self.pending.remove(key);
                }
                for a in assignments {
                    self.dirty_groups.insert(a.group.clone());
                }
                let group = decision.group().cloned().unwrap_or_else(|| GroupKey::new(""));
                let desired = Desired { ips, group: Some(group), condition };
                // The record written when the addresses were chosen says how they were chosen; a later
                // decision that keeps them (the write still in flight, a restart, any other change to the
                // Service) leaves that record and its event alone.
                let in_flight = self.submitted.get(key).cloned().flatten();
                let recorded = desired.same_allocation(&Desired::observed(&svc))
                    || in_flight.as_ref().is_some_and(|d| desired.same_allocation(d));
                if !recorded {
                    let announced = |ip: &std::net::IpAddr| {
                        observed_ips.contains(ip) || in_flight.as_ref().is_some_and(|d| d.ips.contains(ip))
                    };
                    let notes = assignments
                        .iter()
                        .filter(|a| !announced(&a.address))
                        .map(|a| Note {
                            warning: false,
                            reason: events::IP_ALLOCATED.into(),
                            message: format!("Assigned IP {} from pool {}", a.address, a.group),
                        })
                        .collect::<Vec<_>>();
                    self.metrics.allocations.inc_by(notes.len() as u64);
                    self.submit(&svc, Some(desired), notes).await;
                }
                freed
            }
        }
    }

    /// Writes a failure's condition, with one Warning event each time the condition changes.
    async fn failure(&mut self, svc: &CachedService, desired: Desired, reason: Reason, message: String) {
        let key = ServiceKey::of(svc);
        if self.submitted.get(&key) == Some(&Some(desired.clone())) || Desired::observed(svc) == desired {
            return;
        }
        self.metrics.failures.get_or_create(&ReasonLabel { reason: reason.as_str().into() }).inc();
        let event_reason = if reason == Reason::AddressConflict {
            events::ADDRESS_CONFLICT
        } else {
            events::ALLOCATION_FAILED
        };
        tracing::info!(service = %key, reason = %reason, %message, "no address");
        let note =
            Note { warning: true, reason: event_reason.into(), message: format!("{reason}: {message}") };
        self.submit(svc, Some(desired), vec![note]).await;
    }

    async fn submit(&mut self, svc: &CachedService, desired: Option<Desired>, notes: Vec<Note>) {
        let key = ServiceKey::of(svc);
        self.submitted.insert(key.clone(), desired.clone());
        let previous_condition = svc.owned_condition(conditions::ALLOCATED);
        self.writer.submit(ServiceWrite {
            key,
            reference: svc.object_ref(),
            desired,
            previous_condition,
            notes,
        });
    }

    fn release(&mut self, key: &ServiceKey) -> bool {
        let group = self.index.held(key).and_then(|h| h.group.clone());
        let freed = self.index.release(key);
        if let Some(g) = group {
            self.dirty_groups.insert(g);
        }
        !freed.is_empty()
    }
}

mod groups;
