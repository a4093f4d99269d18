//! The loop itself: `run` (the `select!` over watches, liveness tick, kernel removal notices, conflict
//! sightings and resync), applying watch events to the caches, readiness, and one reconcile with its
//! backoff (1 s doubling to 10 s; at least 10 ms between reconciles).

use std::net::IpAddr;
use std::time::Instant;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use kube::runtime::watcher;
use purelb_core::allocate::ServiceKey;
use tokio::sync::{mpsc, watch};

use super::{
    Announcer, Change, LoopError, MAX_BACKOFF, MAX_BATCH, MAX_GAP, MIN_BACKOFF, MIN_GAP, REPLAN,
    REPLAN_STEPS, RESYNC, TICK,
};
use crate::dataplane::DataPlane;
use crate::shutdown::Handover;
use purelb_runtime::{ObjectId, Touched, take_ready};

impl<D: DataPlane> Announcer<D> {
    /// Runs until `stop` fires (Ok) or the watches end (Err). `removals` yields addresses someone
    /// removed from under the agent; `failed` the Services whose report write was given up.
    pub async fn run(
        mut self,
        changes: impl Stream<Item = Result<Change, watcher::Error>>,
        mut removals: BoxStream<'static, IpAddr>,
        mut failed: mpsc::UnboundedReceiver<ServiceKey>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<Handover, LoopError> {
        let mut changes = std::pin::pin!(changes);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut resync = tokio::time::interval(RESYNC);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let step = REPLAN / REPLAN_STEPS;
        let mut replan = tokio::time::interval_at(tokio::time::Instant::now() + step, step);
        replan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let (_, mut sighted) = mpsc::channel(1);
        if let Some(rx) = self.sighted.take() {
            sighted = rx;
        }
        loop {
            let due = self.dirty && self.synced();
            let wake = tokio::time::Instant::from_std(self.not_before);
            tokio::select! {
                biased;
                _ = stop.changed() => return Ok(self.handover(sighted)),
                Some(key) = failed.recv() => {
                    self.submitted.remove(&key);
                    self.touch(key);
                }
                Some(sighting) = sighted.recv() => self.on_sighting(sighting),
                Some(ip) = removals.next() => {
                    if self.desired.targets().contains_key(&ip) {
                        tracing::info!(%ip, "our address was removed from under us; putting it back");
                        self.pending.kernel = true;
                        self.dirty = true;
                        self.not_before = Instant::now();
                    }
                }
                change = changes.next() => {
                    // Take everything already waiting, then reconcile once for the batch.
                    let batch = take_ready(change, &mut changes, MAX_BATCH);
                    for item in batch.items {
                        match item {
                            Err(e) => tracing::warn!(error = %e, "watch error; the watcher retries"),
                            Ok(c) => self.on_change(c),
                        }
                    }
                    if batch.ended {
                        return Err(LoopError::WatchEnded);
                    }
                    self.log_listed();
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    self.tracker.set_renewed(self.parts.renewed.borrow().clone());
                    if self.tracker.tick(now) {
                        self.dirty = true;
                    }
                    if self.tracker.wants_proof(now) {
                        self.parts.renew_now.notify_one();
                    }
                    self.follow_view(now);
                }
                _ = resync.tick() => {
                    // Drift repair: the kernel and the connected subnets are read again.
                    self.pending.kernel = true;
                    self.pending.connected = true;
                    self.dirty = true;
                }
                _ = replan.tick() => self.backstop_step(),
                _ = tokio::time::sleep_until(wake), if due => {}
            }
            if self.dirty && self.synced() && Instant::now() >= self.not_before {
                self.reconcile().await;
            }
        }
    }

    pub(super) fn on_change(&mut self, change: Change) {
        let now = Instant::now();
        match change {
            Change::Service(ev) => match self.services.apply(ev) {
                Touched::Nothing => {}
                Touched::One { id: (ns, name), .. } => self.touch(ServiceKey::new(ns, name)),
                Touched::Relisted { .. } => self.replan_all(),
            },
            Change::Slice(ev) => match self.slices.apply(ev) {
                Touched::Nothing => {}
                Touched::One { id: (ns, name), .. } => {
                    for key in self.index.slice_changed(&self.slices, &ns, &name) {
                        self.touch(key);
                    }
                }
                Touched::Relisted { .. } => {
                    self.index.slices_listed(&self.slices);
                    self.replan_all();
                }
            },
            Change::Node(ev) => self.dirty |= !self.nodes.apply(*ev).is_nothing(),
            Change::Group(ev) => self.dirty |= !self.groups.apply(*ev).is_nothing(),
            Change::Lease(ev) => match self.leases.apply(ev) {
                Touched::Nothing => {}
                Touched::One { id: (ns, name), .. } => {
                    self.dirty |= match self.leases.get(&ns, &name) {
                        Some(lease) => self.tracker.apply(lease, now),
                        None => self.tracker.remove(&name),
                    };
                }
                Touched::Relisted { .. } => self.dirty |= self.tracker.replace_all(self.leases.values(), now),
            },
            Change::Agent(ev) => {
                if !self.agents.apply(ev).is_nothing() {
                    self.configure();
                }
            }
        }
    }

    /// Service `key` changed: it is planned again at the next reconcile.
    pub(super) fn touch(&mut self, key: ServiceKey) {
        self.pending.services.insert(key);
        self.dirty = true;
    }

    /// The backstop for the incremental bookkeeping: every Service is planned again once per [`REPLAN`],
    /// the next slice of the cache at each of its [`REPLAN_STEPS`] steps (a spike of the whole once a
    /// minute kept the loop from its Lease's events at scale), with the Services gone from the cache
    /// that the index or the writer still knows.
    pub(super) fn backstop_step(&mut self) {
        let per_step = self.services.len().div_ceil(REPLAN_STEPS as usize).max(1);
        let slice: Vec<ObjectId> =
            self.services.ids_after(self.backstop.as_ref()).take(per_step).cloned().collect();
        // At the end of the cache the next walk starts again from its beginning.
        self.backstop = if slice.len() < per_step { None } else { slice.last().cloned() };
        let gone: Vec<ServiceKey> = self
            .index
            .known()
            .chain(self.submitted.keys())
            .filter(|k| self.services.get(&k.namespace, &k.name).is_none())
            .cloned()
            .collect();
        for (namespace, name) in slice {
            self.touch(ServiceKey::new(namespace, name));
        }
        for key in gone {
            self.touch(key);
        }
    }

    /// Everything is planned again at the next reconcile.
    pub(super) fn replan_all(&mut self) {
        self.pending.all = true;
        self.dirty = true;
    }

    /// Logs, once, how long the six initial lists took and what they held.
    pub(super) fn log_listed(&mut self) {
        let listed = self.services.synced()
            && self.slices.synced()
            && self.leases.synced()
            && self.nodes.synced()
            && self.groups.synced()
            && self.agents.synced();
        if listed && !self.listed {
            self.listed = true;
            tracing::info!(
                after = ?self.started.elapsed(),
                services = self.services.len(),
                endpoint_slices = self.slices.len(),
                leases = self.leases.len(),
                nodes = self.nodes.len(),
                groups = self.groups.len(),
                "every watch has listed"
            );
        }
    }

    pub(super) fn synced(&self) -> bool {
        self.services.synced()
            && self.slices.synced()
            && self.leases.synced()
            && self.nodes.synced()
            && self.groups.synced()
            && self.agents.synced()
            && self.tracker.has_own()
            && self.parts.renewed.borrow().is_some()
    }

    pub(super) async fn reconcile(&mut self) {
        let started = Instant::now();
        self.dirty = false;
        self.tracker.set_renewed(self.parts.renewed.borrow().clone());
        self.tracker.tick(started);
        let errors = self.try_reconcile().await;
        let now = Instant::now();
        if !self.ready {
            // Ready once synced and applied, even if some address failed: that is in the logs and
            // metrics, and an agent that never turns ready would stall a DaemonSet rollout.
            self.ready = true;
            self.parts.admin.set_ready(true);
            tracing::info!(
                services = self.services.len(),
                nodes = self.tracker.facts(|_| false, |_| false).len(),
                addresses = self.desired.targets().len(),
                "first reconcile done; ready"
            );
        }
        if errors.is_empty() {
            self.backoff = MIN_BACKOFF;
            // A reconcile that took long (a burst of changes on a busy node) is followed by a gap as
            // long, so that the loop never takes more than about half of what it gets of the CPU.
            self.not_before = now + now.duration_since(started).clamp(MIN_GAP, MAX_GAP);
        } else {
            let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
            tracing::warn!(?errors, retry_in = ?self.backoff, "reconcile incomplete; retrying");
            self.dirty = true;
            self.not_before = now + self.backoff;
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        }
        self.parts.metrics.reconcile_seconds.observe(started.elapsed().as_secs_f64());
    }
}
