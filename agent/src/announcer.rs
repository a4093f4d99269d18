//! The announcer loop: one task owns every watched object and the kernel diff.
//!
//! Fed by six watches (Services, EndpointSlices, node Leases, Nodes' metadata, ServiceGroups,
//! LBNodeAgents), the liveness tick (~250 ms, so a dead node's Lease expires on time without any event),
//! the kernel's removal notices, and a periodic resync. After each batch of changes — once every watch
//! has listed, this node's Lease is seen and its first renewal succeeded — it reconciles:
//! 1. the desired set = ∪ over our Services of `plan_for_node(this node)` (`desired`);
//! 2. the kernel diff against the addresses the agent owns (tagged): delete, then add — Local on the
//!    LAN interface, NonLocal on `extlbint` (created if missing). The first reconcile thereby removes
//!    the orphans of a killed agent; an address someone else removed is put back on the removal notice;
//! 3. GARP/NA for every local address this node takes up: added now, or found in place when this
//!    process did not hold it before (a restarted agent taking back its own orphan must still tell the
//!    LAN, since another node may have answered for the address meanwhile), every time, not only the
//!    first;
//! 4. one event per (Service, address) take-up: `AnnouncingLocal` / `AnnouncingNonLocal`;
//! 5. the `externalTrafficPolicy: Local` reset, by the local winner;
//! 6. the reports of the Services this node is the reporter of (`report`, written by `k8s`).
//!
//! Fail-static: silence from the API server is never evidence that an address should move (see
//! `lease`). While this agent's view is stale it keeps every address it holds and takes up nothing new
//! (the verdicts are frozen), logs when it enters and leaves that state, exports it
//! (`purelb_agent_api_reachable`, `purelb_agent_fail_static_since_seconds`) and, on leaving it, records
//! an `APIServerReachable` event on its Node. The one thing that takes a local address away without the
//! API is positive evidence on the wire: a gratuitous ARP / NA for it from another MAC (`conflict`; the
//! other nodes elected a new winner because this node's Lease expired). The agent then yields the
//! address within one reconcile and keeps it yielded while stale, and for one Lease duration after the
//! last such sighting or after its view became fresh again, whichever is later; then the (sticky)
//! election decides as usual: the node that took the address over keeps it. Only a stale view yields:
//! with a fresh one the election decides (two nodes holding an address for a moment while their views
//! converge would otherwise yield to each other and leave it on none); a sighting made up to
//! `CONTEST_MEMORY` before the view turns stale still yields. On leaving
//! fail-static it announces every local address it still holds again, since the LAN may have been told
//! otherwise while it could not hear (a link flap).
//!
//! A failed step is retried with backoff (1 s doubling to 10 s); reconciles are at least 10 ms apart
//! so a storm of events costs at most one reconcile per 10 ms (events arriving meanwhile are batched).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::stream::BoxStream;
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use purelb_core::allocate::ServiceKey;
use purelb_core::announce::{NodeFacts, Placement, ServiceFacts, plan_for_node, refuse_connected};
use purelb_core::api::{LBNodeAgent, ServiceGroup, conditions, events};
use purelb_core::pool::PoolConfig;
use purelb_runtime::Admin;
use tokio::sync::{mpsc, watch};

use crate::config::{self, AgentConfig};
use crate::conflict::Sighting;
use crate::dataplane::DataPlane;
use crate::desired::{Announced, DesiredSet, Kind, diff, takeovers};
use crate::k8s::{ReportWrite, Writer};
use crate::lease::{NodeLeases, Renewal};
use crate::metrics::ConflictAction;
use crate::metrics::Metrics;
use crate::shutdown::Handover;
use purelb_core::announce::facts;
use purelb_core::announce::report::{self, ServiceReport};

/// How often Lease liveness is re-judged.
const TICK: Duration = Duration::from_millis(250);
/// How often everything is reconciled even without events (drift repair).
const RESYNC: Duration = Duration::from_secs(10);
/// The shortest gap between two reconciles.
const MIN_GAP: Duration = Duration::from_millis(10);
const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Events taken from the watches before reconciling.
const MAX_BATCH: usize = 10_000;
/// How long a sighting of another MAC announcing a held local address, seen with a fresh view, is
/// remembered: the view turning stale within it yields the address (the other node may see this
/// node's Lease expire a little before this node notices it cannot renew).
const CONTEST_MEMORY: Duration = Duration::from_secs(2);

/// A watch event of any kind.
pub enum Change {
    Service(watcher::Event<Service>),
    Slice(watcher::Event<EndpointSlice>),
    Lease(watcher::Event<Lease>),
    Node(Box<watcher::Event<Node>>),
    Group(watcher::Event<ServiceGroup>),
    Agent(watcher::Event<LBNodeAgent>),
}

/// Why the loop stopped other than by a signal.
#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    /// A watch stream ended (they retry forever, so this is a bug or a shutdown).
    #[error("the watch streams ended")]
    WatchEnded,
}

/// Settings that do not come from the LBNodeAgent.
#[derive(Clone, Debug)]
pub struct Settings {
    /// This node.
    pub node: String,
    /// GARP/NA packets per takeover.
    pub garp_count: u32,
    /// Gap between them.
    pub garp_interval: Duration,
}

/// What the loop owns besides its state.
pub struct Parts<D> {
    /// The node's network (the kernel, through rtnetlink and raw sockets).
    pub dataplane: D,
    /// The API writes.
    pub writer: Writer,
    /// The agent's metrics.
    pub metrics: Metrics,
    /// Readiness.
    pub admin: Admin,
    /// Where the configuration goes (the Lease renewer reads it).
    pub config: watch::Sender<Option<AgentConfig>>,
    /// The last successful Lease renewal.
    pub renewed: watch::Receiver<Option<Renewal>>,
    /// Asks the renewer for a renewal at once (the proof that another node's Lease expired).
    pub renew_now: Arc<tokio::sync::Notify>,
    /// The Lease duration of this node.
    pub lease_duration: Duration,
}

/// The loop's state. See the module documentation.
pub struct Announcer<D> {
    settings: Settings,
    parts: Parts<D>,
    services: Cache<Service>,
    slices: Cache<EndpointSlice>,
    leases: Cache<Lease>,
    nodes: Cache<Node>,
    groups: Cache<ServiceGroup>,
    agents: Cache<LBNodeAgent>,
    tracker: NodeLeases,
    config: AgentConfig,
    bad_config: Option<String>,
    announced: Announced,
    /// The local addresses in place after the last reconcile (a new one is a takeover: GARP/NA).
    local_held: BTreeSet<IpAddr>,
    desired_ips: BTreeSet<IpAddr>,
    submitted: HashMap<ServiceKey, ServiceReport>,
    resets: HashMap<ServiceKey, (String, Instant)>,
    dirty: bool,
    not_before: Instant,
    backoff: Duration,
    ready: bool,
    /// When the loop started, and whether every watch has listed since (logged once).
    started: Instant,
    listed: bool,
    /// Since when this agent runs fail-static (monotonic, and wall clock for the metric), once it was
    /// synced at least once.
    stale_since: Option<(Instant, SystemTime)>,
    /// Local addresses given up after another MAC announced them, with the last such sighting.
    yielded: BTreeMap<IpAddr, Instant>,
    /// Local addresses this node holds that another MAC announced while this agent's view was fresh
    /// (kept: the election decides), with the last such sighting; honoured if the view turns stale
    /// within [`CONTEST_MEMORY`].
    contested: BTreeMap<IpAddr, Instant>,
    /// A conflict listener per LAN interface that carries local addresses.
    listeners: BTreeMap<String, tokio::task::JoinHandle<()>>,
    sightings: mpsc::Sender<Sighting>,
    sighted: Option<mpsc::Receiver<Sighting>>,
    /// Non-local placements refused for overlapping a LAN (logged when they start).
    refused: BTreeSet<(ServiceKey, IpAddr)>,
    /// Announce every local address held after the next reconcile (set on leaving fail-static).
    reannounce: bool,
}

impl<D: DataPlane> Announcer<D> {
    /// A loop that has seen nothing yet.
    pub fn new(settings: Settings, parts: Parts<D>) -> Self {
        let tracker = NodeLeases::new(&settings.node, parts.lease_duration);
        let (sightings, sighted) = mpsc::channel(256);
        Self {
            settings,
            parts,
            services: Cache::default(),
            slices: Cache::default(),
            leases: Cache::default(),
            nodes: Cache::default(),
            groups: Cache::default(),
            agents: Cache::default(),
            tracker,
            config: AgentConfig::default(),
            bad_config: None,
            announced: Announced::default(),
            local_held: BTreeSet::new(),
            desired_ips: BTreeSet::new(),
            submitted: HashMap::new(),
            resets: HashMap::new(),
            dirty: true,
            not_before: Instant::now(),
            backoff: MIN_BACKOFF,
            ready: false,
            started: Instant::now(),
            listed: false,
            stale_since: None,
            yielded: BTreeMap::new(),
            contested: BTreeMap::new(),
            listeners: BTreeMap::new(),
            sightings,
            sighted: Some(sighted),
            refused: BTreeSet::new(),
            reannounce: false,
        }
    }

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
                    self.dirty = true;
                }
                Some(sighting) = sighted.recv() => self.on_sighting(sighting),
                Some(ip) = removals.next() => {
                    if self.desired_ips.contains(&ip) {
                        tracing::info!(%ip, "our address was removed from under us; putting it back");
                        self.dirty = true;
                        self.not_before = Instant::now();
                    }
                }
                change = changes.next() => {
                    // Take everything already waiting, then reconcile once for the batch.
                    let mut next = Some(change);
                    let mut taken = 0;
                    while let Some(item) = next.take() {
                        match item {
                            None => return Err(LoopError::WatchEnded),
                            Some(Err(e)) => tracing::warn!(error = %e, "watch error; the watcher retries"),
                            Some(Ok(c)) => self.on_change(c),
                        }
                        taken += 1;
                        if taken < MAX_BATCH {
                            next = changes.next().now_or_never();
                        }
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
                _ = resync.tick() => self.dirty = true,
                _ = tokio::time::sleep_until(wake), if due => {}
            }
            if self.dirty && self.synced() && Instant::now() >= self.not_before {
                self.reconcile().await;
            }
        }
    }

    fn on_change(&mut self, change: Change) {
        let now = Instant::now();
        match change {
            Change::Service(ev) => self.dirty |= self.services.apply(ev) != Touched::Nothing,
            Change::Slice(ev) => self.dirty |= self.slices.apply(ev) != Touched::Nothing,
            Change::Node(ev) => self.dirty |= self.nodes.apply(*ev) != Touched::Nothing,
            Change::Group(ev) => self.dirty |= self.groups.apply(ev) != Touched::Nothing,
            Change::Lease(ev) => match self.leases.apply(ev) {
                Touched::Nothing => {}
                Touched::One(ns, name) => {
                    self.dirty |= match self.leases.get(&ns, &name) {
                        Some(lease) => self.tracker.apply(lease, now),
                        None => self.tracker.remove(&name),
                    };
                }
                Touched::All => self.dirty |= self.tracker.replace_all(self.leases.values(), now),
            },
            Change::Agent(ev) => {
                if self.agents.apply(ev) != Touched::Nothing {
                    self.configure();
                }
            }
        }
    }

    /// Another MAC announces `sighting.ip`, an address this node holds as a local one. With a stale
    /// view that is another node's takeover (positive evidence this agent cannot get from the API), so
    /// the address is yielded at once. With a fresh view the election (which the other nodes compute
    /// alike) decides: the sighting is a moment of two holders while views converge, and yielding on
    /// it would let two nodes yield to each other and leave the address on none; it is remembered in
    /// case the view turns stale right after (the other node saw this one's Lease expire first).
    fn on_sighting(&mut self, sighting: Sighting) {
        let now = Instant::now();
        if let Some(at) = self.yielded.get_mut(&sighting.ip) {
            // Still announced elsewhere: the hold restarts.
            *at = now;
            self.parts.metrics.conflict(ConflictAction::Seen);
            return;
        }
        if !self.local_held.contains(&sighting.ip) {
            return;
        }
        let mac = format_mac(&sighting.mac);
        if self.tracker.stale(now) {
            tracing::warn!(ip = %sighting.ip, %mac, interface = %sighting.interface, stale = true,
                "another node announces a local address this node holds: yielding it");
            self.yield_address(sighting.ip, now);
        } else {
            if self.contested.insert(sighting.ip, now).is_none() {
                tracing::info!(ip = %sighting.ip, %mac, interface = %sighting.interface,
                    "another MAC announces a local address this node holds; this agent's view of the API is current, so the election decides and this node keeps it");
            }
            self.parts.metrics.conflict(ConflictAction::Kept);
        }
    }

    fn yield_address(&mut self, ip: IpAddr, now: Instant) {
        self.contested.remove(&ip);
        self.yielded.insert(ip, now);
        self.parts.metrics.conflict(ConflictAction::Yielded);
        self.dirty = true;
        self.not_before = now;
    }

    /// Follows this agent's view of the API: logs and exports entering and leaving fail-static,
    /// records the event on leaving it, and lets yields lapse once the view is fresh.
    fn follow_view(&mut self, now: Instant) {
        let stale = self.tracker.stale(now);
        match (&self.stale_since, stale) {
            (None, true) if self.ready => {
                let wall = SystemTime::now();
                tracing::warn!(
                    "the API server cannot be reached (this node's Lease was not seen renewed for a whole duration): fail-static, keeping every address as it is until it returns"
                );
                let unix = wall.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                self.parts.metrics.api_reachable.set(0);
                self.parts.metrics.fail_static_since_seconds.set(i64::try_from(unix).unwrap_or(i64::MAX));
                self.stale_since = Some((now, wall));
            }
            (Some((since, _)), false) => {
                let lasted = now.saturating_duration_since(*since);
                tracing::info!(after = ?lasted, yielded = self.yielded.len(), "the API server is reachable again: leaving fail-static");
                self.parts.metrics.api_reachable.set(1);
                self.parts.metrics.fail_static_since_seconds.set(0);
                self.stale_since = None;
                self.dirty = true;
                self.reannounce = true;
                // The watches may still be catching up (the Services' announcing annotations name
                // the nodes that took over): keep every yield for one more Lease duration.
                for at in self.yielded.values_mut() {
                    *at = now;
                }
                let me = &self.settings.node;
                let reference = self.nodes.get("", me).map(|n| n.object_ref(&())).unwrap_or_else(|| {
                    k8s_openapi::api::core::v1::ObjectReference {
                        api_version: Some("v1".into()),
                        kind: Some("Node".into()),
                        name: Some(me.clone()),
                        ..Default::default()
                    }
                });
                let message = format!(
                    "purelb-agent on {me} reaches the API server again after {:.1} s on its last known state ({} local address(es) yielded to other nodes meanwhile)",
                    lasted.as_secs_f64(),
                    self.yielded.len()
                );
                self.parts.writer.event(reference, false, events::API_SERVER_REACHABLE, message);
            }
            (None, false) if self.ready => {
                self.parts.metrics.api_reachable.set(1);
            }
            _ => {}
        }
        if stale {
            // Sightings from just before the view turned stale are the takeover this node could not
            // yet believe.
            let recent: Vec<IpAddr> = self
                .contested
                .iter()
                .filter(|(ip, at)| {
                    now.saturating_duration_since(**at) < CONTEST_MEMORY && self.local_held.contains(*ip)
                })
                .map(|(ip, _)| *ip)
                .collect();
            for ip in recent {
                tracing::warn!(%ip, "another node announced a local address this node holds just before this agent lost the API: yielding it");
                self.yield_address(ip, now);
            }
        }
        self.contested.retain(|_, at| now.saturating_duration_since(*at) < CONTEST_MEMORY);
        if !stale {
            let hold = self.parts.lease_duration;
            let before = self.yielded.len();
            self.yielded.retain(|_, at| now.saturating_duration_since(*at) < hold);
            if self.yielded.len() != before {
                self.dirty = true;
            }
        }
    }

    /// Starts a conflict listener on every LAN interface that carries local addresses.
    async fn listen_for_conflicts(&mut self, desired: &DesiredSet) {
        let wanted: BTreeSet<&str> = self
            .local_held
            .iter()
            .filter_map(|ip| desired.targets().get(ip))
            .map(|t| t.interface.as_str())
            .filter(|i| self.listeners.get(*i).is_none_or(|h| h.is_finished()))
            .collect();
        if wanted.is_empty() {
            return;
        }
        let links = match self.parts.dataplane.links().await {
            Ok(l) => l,
            Err(e) => {
                self.parts.metrics.error("links");
                tracing::warn!(error = %e, "cannot listen for address conflicts: listing links failed");
                return;
            }
        };
        for interface in wanted {
            let Some(mac) = links.iter().find(|l| l.name == interface).and_then(|l| l.mac) else { continue };
            match self.parts.dataplane.listen(interface, mac) {
                Ok(stream) => {
                    let tx = self.sightings.clone();
                    let task = tokio::spawn(async move {
                        let mut stream = std::pin::pin!(stream);
                        while let Some(s) = stream.next().await {
                            if tx.send(s).await.is_err() {
                                return;
                            }
                        }
                    });
                    tracing::info!(%interface, "listening for gratuitous ARP / NA of our local addresses from other nodes");
                    self.listeners.insert(interface.to_string(), task);
                }
                Err(e) => {
                    self.parts.metrics.error("conflict");
                    tracing::warn!(%interface, error = %e, "cannot listen for address conflicts");
                }
            }
        }
    }

    /// Applies the chosen LBNodeAgent; an unusable one is reported and the previous settings kept.
    fn configure(&mut self) {
        if !self.agents.synced {
            return;
        }
        let chosen = LBNodeAgent::select(self.agents.values());
        let result = chosen.map_or(Ok(AgentConfig::default()), AgentConfig::from_agent);
        match result {
            Ok(c) => {
                self.bad_config = None;
                if c != self.config || self.parts.config.borrow().is_none() {
                    tracing::info!(
                        from = chosen.map(|a| a.name_any()).unwrap_or_else(|| "defaults".into()),
                        localint = %c.localint, extlbint = %c.extlbint, sendgarp = c.sendgarp,
                        "configuration"
                    );
                    self.config = c.clone();
                    self.parts.config.send_replace(Some(c));
                    self.dirty = true;
                }
            }
            Err(e) => {
                let message = format!(
                    "node {}: {e}; keeping the previous settings (localint {})",
                    self.settings.node, self.config.localint
                );
                if self.bad_config.as_ref() != Some(&message) {
                    tracing::warn!(%message, "unusable LBNodeAgent");
                    if let Some(agent) = chosen {
                        self.parts.writer.config_warning(agent, message.clone());
                    }
                    self.bad_config = Some(message);
                }
                if self.parts.config.borrow().is_none() {
                    self.parts.config.send_replace(Some(self.config.clone()));
                }
            }
        }
    }

    /// Logs, once, how long the six initial lists took and what they held.
    fn log_listed(&mut self) {
        let listed = self.services.synced
            && self.slices.synced
            && self.leases.synced
            && self.nodes.synced
            && self.groups.synced
            && self.agents.synced;
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

    fn synced(&self) -> bool {
        self.services.synced
            && self.slices.synced
            && self.leases.synced
            && self.nodes.synced
            && self.groups.synced
            && self.agents.synced
            && self.tracker.has_own()
            && self.parts.renewed.borrow().is_some()
    }

    async fn reconcile(&mut self) {
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
                addresses = self.desired_ips.len(),
                "first reconcile done; ready"
            );
        }
        if errors.is_empty() {
            self.backoff = MIN_BACKOFF;
            self.not_before = now + MIN_GAP;
        } else {
            tracing::warn!(?errors, retry_in = ?self.backoff, "reconcile incomplete; retrying");
            self.dirty = true;
            self.not_before = now + self.backoff;
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        }
        self.parts.metrics.reconcile_seconds.observe(started.elapsed().as_secs_f64());
    }

    /// One reconcile; returns what failed.
    async fn try_reconcile(&mut self) -> Vec<String> {
        let started = Instant::now();
        let me = self.settings.node.clone();
        let named = |keep: fn(&Node) -> bool| -> BTreeSet<String> {
            self.nodes.values().filter(|n| keep(n)).map(|n| n.name_any()).collect()
        };
        let (excluded, shutting_down) = (named(facts::node_excluded), named(facts::node_shutting_down));
        let nodes = self.tracker.facts(|n| excluded.contains(n), |n| shutting_down.contains(n));
        let pools = facts::pools(self.groups.values());
        let endpoints = facts::endpoint_nodes(self.slices.values());
        let extlbint = self.config.extlbint.clone();

        let incumbents = facts::incumbents(self.services.values());
        let mut plans = Vec::new();
        for svc in self.services.values().filter(|s| facts::is_ours(s)) {
            let key = ServiceKey::of(svc);
            let f = facts::service_facts(svc, &endpoints, &incumbents);
            for plan in plan_for_node(&me, &f, &nodes, &pools, &extlbint) {
                plans.push((key.clone(), plan));
            }
        }
        let connected = if plans.iter().any(|(_, p)| matches!(p.placement, Placement::NonLocal { .. })) {
            match self.parts.dataplane.links().await {
                Ok(links) => Some(
                    links
                        .iter()
                        .filter(|l| l.name != extlbint)
                        .flat_map(config::lan_subnets)
                        .collect::<Vec<_>>(),
                ),
                Err(e) => {
                    self.parts.metrics.error("links");
                    return vec![format!("listing links for the connected subnets: {e}")];
                }
            }
        } else {
            None
        };
        let mut desired = DesiredSet::default();
        let mut resets = Vec::new();
        let mut refused = BTreeSet::new();
        for (key, mut plan) in plans {
            if let Some(connected) = &connected {
                plan = refuse_connected(plan, connected);
            }
            if matches!(plan.placement, Placement::Local { .. }) && self.yielded.contains_key(&plan.address) {
                plan.reasons.push("another node announced it (gratuitous ARP / NA): yielded".to_string());
                plan.placement = Placement::Absent;
            }
            if let Placement::Absent = plan.placement
                && let Some(why) = plan.reasons.last().filter(|r| r.starts_with("refused:"))
            {
                if !self.refused.contains(&(key.clone(), plan.address)) {
                    tracing::warn!(service = %key, ip = %plan.address, %why, "not announcing");
                }
                refused.insert((key.clone(), plan.address));
            }
            desired.add(&key, &plan);
            if let (true, Placement::Local { interface, .. }) = (plan.reset_traffic_policy, &plan.placement) {
                resets.push((key.clone(), plan.address, interface.clone()));
            }
        }

        self.refused = refused;
        self.desired_ips = desired.targets().keys().copied().collect();
        let planned = Instant::now();
        let errors = match self.apply_addresses(&desired).await {
            Ok((in_place, added, errors)) => {
                self.after_apply(&me, &desired, &in_place, &added).await;
                errors
            }
            // Nothing is known of the kernel: keep what was held and announced as it was.
            Err(e) => vec![e],
        };
        let applied = Instant::now();
        self.reset_traffic_policies(resets);
        self.reports(&nodes, &pools, &endpoints, &incumbents, &extlbint);
        tracing::debug!(
            services = self.services.len(),
            addresses = self.desired_ips.len(),
            plan = ?planned.duration_since(started),
            kernel = ?applied.duration_since(planned),
            reports = ?applied.elapsed(),
            "reconcile"
        );
        errors
    }

    /// GARP/NA for takeovers, the held-address gauges and one event per take-up.
    async fn after_apply(
        &mut self,
        me: &str,
        desired: &DesiredSet,
        in_place: &BTreeSet<IpAddr>,
        added: &BTreeSet<IpAddr>,
    ) {
        let local_now = desired.in_place(Kind::Local, in_place);
        let taken_over = if std::mem::take(&mut self.reannounce) {
            // Back from fail-static: the LAN may have been told otherwise meanwhile (another node took
            // an address over while this one could not hear it): announce every local address again.
            local_now.iter().copied().collect()
        } else {
            takeovers(&local_now, &self.local_held, added)
        };
        self.local_held = local_now;
        if self.config.sendgarp && !taken_over.is_empty() {
            self.announce_takeovers(desired, &taken_over).await;
        }
        self.listen_for_conflicts(desired).await;
        self.parts.metrics.held(self.local_held.len(), desired.in_place(Kind::NonLocal, in_place).len());
        for (key, ip, kind) in self.announced.update(desired.take_ups(in_place)) {
            let (Some(svc), Some(target)) =
                (self.services.get(&key.namespace, &key.name), desired.targets().get(&ip))
            else {
                continue;
            };
            let iface = &target.interface;
            let (reason, message) = match kind {
                Kind::Local => {
                    (events::ANNOUNCING_LOCAL, format!("Node {me} announcing {ip} on interface {iface}"))
                }
                Kind::NonLocal => (
                    events::ANNOUNCING_NON_LOCAL,
                    format!("Announcing {ip} from node {me} interface {iface}"),
                ),
            };
            tracing::info!(service = %key, %ip, interface = %iface, ?kind, "announcing");
            self.parts.writer.event(svc.object_ref(&()), false, reason, message);
        }
    }

    /// Deletes, then adds; returns the desired addresses now in place, those added now, and what failed
    /// (Err: our addresses could not even be listed).
    async fn apply_addresses(
        &self,
        desired: &DesiredSet,
    ) -> Result<(BTreeSet<IpAddr>, BTreeSet<IpAddr>, Vec<String>), String> {
        let netlink = &self.parts.dataplane;
        let metrics = &self.parts.metrics;
        let mut errors = Vec::new();
        let owned = match netlink.owned().await {
            Ok(o) => o,
            Err(e) => {
                metrics.error("owned");
                return Err(format!("listing our addresses: {e}"));
            }
        };
        let d = diff(desired.targets(), &owned);
        let targets: Vec<(u32, IpAddr, u8)> =
            d.delete.iter().map(|o| (o.index, o.address, o.prefix_len)).collect();
        let results = match netlink.delete_many(&targets).await {
            Ok(r) => r,
            Err(e) => {
                metrics.error("owned");
                return Err(format!("listing addresses before deleting: {e}"));
            }
        };
        for (o, result) in d.delete.iter().zip(results) {
            match result {
                Ok(()) => {
                    tracing::info!(ip = %o.address, interface = %o.interface, prefix_len = o.prefix_len, "withdrew address")
                }
                Err(e) => {
                    metrics.error("delete");
                    errors.push(format!("deleting {}/{} from {}: {e}", o.address, o.prefix_len, o.interface));
                }
            }
        }
        let mut in_place = d.kept.clone();
        let mut added = BTreeSet::new();
        if d.add.is_empty() {
            return Ok((in_place, added, errors));
        }
        let links = if d.add.iter().any(|(_, t)| t.kind == Kind::Local) {
            match netlink.links().await {
                Ok(l) => l,
                Err(e) => {
                    metrics.error("links");
                    errors.push(format!("listing links: {e}"));
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        let mut extlb: BTreeMap<String, Result<u32, String>> = BTreeMap::new();
        let mut adds = Vec::with_capacity(d.add.len());
        for (ip, t) in &d.add {
            let index = match t.kind {
                Kind::Local => match links.iter().find(|l| l.name == t.interface) {
                    Some(l) => l.index,
                    None => {
                        errors.push(format!("adding {ip}: the LAN interface {} is not there", t.interface));
                        continue;
                    }
                },
                Kind::NonLocal => {
                    if !extlb.contains_key(&t.interface) {
                        let r = netlink.ensure_extlb(&t.interface).await.map_err(|e| e.to_string());
                        if r.is_err() {
                            metrics.error("extlb");
                        }
                        extlb.insert(t.interface.clone(), r);
                    }
                    match extlb.get(&t.interface) {
                        Some(Ok(index)) => *index,
                        Some(Err(e)) => {
                            errors.push(format!("adding {ip}: interface {}: {e}", t.interface));
                            continue;
                        }
                        None => continue,
                    }
                }
            };
            adds.push((index, *ip, t));
        }
        let targets: Vec<(u32, IpAddr, u8)> =
            adds.iter().map(|(index, ip, t)| (*index, *ip, t.prefix_len)).collect();
        let results = match netlink.add_many(&targets).await {
            Ok(r) => r,
            Err(e) => {
                metrics.error("add");
                errors.push(format!("listing addresses before adding: {e}"));
                return Ok((in_place, added, errors));
            }
        };
        for ((_, ip, t), result) in adds.iter().zip(results) {
            match result {
                Ok(()) => {
                    tracing::info!(%ip, interface = %t.interface, prefix_len = t.prefix_len, kind = ?t.kind, "added address");
                    in_place.insert(*ip);
                    added.insert(*ip);
                }
                Err(e) => {
                    metrics.error("add");
                    errors.push(format!("adding {ip}/{} to {}: {e}", t.prefix_len, t.interface));
                }
            }
        }
        Ok((in_place, added, errors))
    }

    /// Sends GARP / unsolicited NA for each local address this node just took up.
    async fn announce_takeovers(&self, desired: &DesiredSet, ips: &[IpAddr]) {
        let links = match self.parts.dataplane.links().await {
            Ok(l) => l,
            Err(e) => {
                self.parts.metrics.error("links");
                tracing::warn!(error = %e, "cannot send GARP/NA: listing links failed");
                return;
            }
        };
        for ip in ips {
            let Some(target) = desired.targets().get(ip) else { continue };
            match links.iter().find(|l| l.name == target.interface).and_then(|l| l.mac) {
                Some(mac) => self.garp(target.interface.clone(), mac, *ip),
                None => tracing::debug!(%ip, interface = %target.interface, "no MAC address: no GARP/NA"),
            }
        }
    }

    /// Announces a takeover with GARP / unsolicited NA, in the background.
    fn garp(&self, interface: String, mac: [u8; 6], ip: IpAddr) {
        let (count, interval) = (self.settings.garp_count, self.settings.garp_interval);
        let metrics = self.parts.metrics.clone();
        let sending = self.parts.dataplane.announce(interface.clone(), mac, ip, count, interval);
        tokio::spawn(async move {
            match sending.await {
                Ok(()) => {
                    metrics.garp_sent.inc_by(u64::from(count));
                }
                Err(e) => {
                    metrics.error("garp");
                    tracing::warn!(%ip, %interface, error = %e, "could not send GARP/NA");
                }
            }
        });
    }

    /// The local winner resets `externalTrafficPolicy: Local` to Cluster (once per Service version,
    /// retried after 30 s if the write did not show up).
    fn reset_traffic_policies(&mut self, resets: Vec<(ServiceKey, IpAddr, String)>) {
        let now = Instant::now();
        let mut done = BTreeSet::new();
        for (key, ip, iface) in resets {
            if !done.insert(key.clone()) {
                continue;
            }
            let Some(svc) = self.services.get(&key.namespace, &key.name) else { continue };
            let version = svc.resource_version().unwrap_or_default();
            if self
                .resets
                .get(&key)
                .is_some_and(|(v, at)| *v == version && now.duration_since(*at) < Duration::from_secs(30))
            {
                continue;
            }
            self.resets.insert(key.clone(), (version, now));
            let why = format!(
                "PureLB will reset External Traffic Policy to Cluster: {ip} is a local address, which only one node ({} on {iface}) announces, so Local would drop the traffic for pods on other nodes",
                self.settings.node
            );
            self.parts.writer.reset_traffic_policy(key, svc.object_ref(&()), why);
        }
        self.resets.retain(|k, _| done.contains(k));
    }

    /// Writes the report of every Service this node is the reporter of, when it differs.
    fn reports(
        &mut self,
        nodes: &[NodeFacts],
        pools: &[PoolConfig],
        endpoints: &BTreeMap<ServiceKey, BTreeSet<String>>,
        incumbents: &facts::Incumbents,
        extlbint: &str,
    ) {
        let me = self.settings.node.as_str();
        let mut seen = BTreeSet::new();
        for svc in self.services.values() {
            let key = ServiceKey::of(svc);
            let observed = ServiceReport::observed(svc);
            let ours = facts::is_ours(svc);
            if !ours && observed.is_empty() {
                continue;
            }
            let f =
                if ours { facts::service_facts(svc, endpoints, incumbents) } else { ServiceFacts::default() };
            if report::reporter(&f, nodes).as_deref() != Some(me) {
                continue;
            }
            let desired = report::report(&f, nodes, pools, extlbint);
            if desired == observed {
                continue;
            }
            seen.insert(key.clone());
            if self.submitted.get(&key) == Some(&desired) {
                continue;
            }
            self.submitted.insert(key.clone(), desired.clone());
            let previous = svc
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == conditions::ANNOUNCED))
                .cloned();
            self.parts.writer.report(ReportWrite { key, desired, observed, previous });
        }
        // Forget what the Services now show (or what is no longer ours to write).
        self.submitted.retain(|k, _| seen.contains(k));
    }
}

/// `aa:bb:cc:dd:ee:ff`.
pub(crate) fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

impl<D> Announcer<D> {
    /// What a graceful stop hands over: the local addresses in place and the conflict listeners that
    /// will hear their next holders.
    fn handover(&mut self, sighted: mpsc::Receiver<Sighting>) -> Handover {
        Handover::new(self.local_held.clone(), sighted, std::mem::take(&mut self.listeners))
    }
}

// === Cache ===

/// What a watch event touched.
#[derive(Debug, PartialEq, Eq)]
enum Touched {
    Nothing,
    One(String, String),
    All,
}

/// The objects of one watch, by (namespace, name), with re-list handling: objects missing from a
/// fresh list are dropped when it completes.
struct Cache<K> {
    objects: BTreeMap<(String, String), Arc<K>>,
    fresh: Option<BTreeMap<(String, String), Arc<K>>>,
    synced: bool,
}

impl<K> Default for Cache<K> {
    fn default() -> Self {
        Self { objects: BTreeMap::new(), fresh: None, synced: false }
    }
}

impl<K: Resource> Cache<K> {
    fn id(obj: &K) -> (String, String) {
        (obj.namespace().unwrap_or_default(), obj.name_any())
    }

    fn apply(&mut self, ev: watcher::Event<K>) -> Touched {
        match ev {
            watcher::Event::Init => {
                self.fresh = Some(BTreeMap::new());
                Touched::Nothing
            }
            watcher::Event::InitApply(obj) => {
                if let Some(f) = self.fresh.as_mut() {
                    f.insert(Self::id(&obj), Arc::new(obj));
                }
                Touched::Nothing
            }
            watcher::Event::InitDone => {
                self.objects = self.fresh.take().unwrap_or_default();
                self.synced = true;
                Touched::All
            }
            watcher::Event::Apply(obj) => {
                let id = Self::id(&obj);
                self.objects.insert(id.clone(), Arc::new(obj));
                Touched::One(id.0, id.1)
            }
            watcher::Event::Delete(obj) => {
                let id = Self::id(&obj);
                self.objects.remove(&id);
                Touched::One(id.0, id.1)
            }
        }
    }

    fn get(&self, namespace: &str, name: &str) -> Option<&K> {
        self.objects.get(&(namespace.to_string(), name.to_string())).map(Arc::as_ref)
    }

    fn values(&self) -> impl Iterator<Item = &K> {
        self.objects.values().map(Arc::as_ref)
    }

    fn len(&self) -> usize {
        self.objects.len()
    }
}
