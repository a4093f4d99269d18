//! The announcer loop: one task owns every watched object and the kernel diff.
//!
//! Fed by six watches (Services, EndpointSlices, node Leases, Nodes' metadata, ServiceGroups,
//! LBNodeAgents), the liveness tick (~250 ms, so a dead node's Lease expires on time without any event),
//! the kernel's removal notices, and a periodic resync. After each batch of changes — once every watch
//! has listed, this node's Lease is seen and its first renewal succeeded — it reconciles:
//! 1. the desired set = ∪ over our Services of core's `node_view` on this node (`desired`), kept up to
//!    date incrementally (`index`): only the Services the batch touched, and those sharing an address
//!    with them, are planned again; all of them when what every plan depends on changed (the nodes'
//!    facts, the pools, the settings, the connected subnets), after a re-list, and every minute;
//! 2. when a placement changed, or on the resync (every 10 s) and a removal notice: the kernel diff
//!    against the addresses the agent owns (tagged): delete, then add — Local on the
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
//! A failed step is retried with backoff (1 s doubling to 10 s); reconciles are at least 10 ms apart,
//! and after a long one as long apart as it took (up to 500 ms), so a storm of events costs at most one
//! reconcile per gap (events arriving meanwhile are batched).
//!
//! Files: `run` (the loop, watch events, readiness, backoff), `plan` (one reconcile: the desired set),
//! `index` (what a batch touched, our Services by address, endpoint nodes per Service),
//! `apply` (the kernel diff through [`DataPlane`], GARP/NA, take-up events), `reports` (policy resets and
//! Service reports), `view` (fail-static, conflicts), `settings` (the LBNodeAgent) (the watch caches
//! are `purelb_runtime::Cache`).

mod apply;
mod index;
mod plan;
mod reports;
mod run;
mod settings;
#[cfg(test)]
mod tests;
mod view;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher;
use purelb_core::allocate::ServiceKey;
use purelb_core::api::{LBNodeAgent, ServiceGroup};
use purelb_core::service::CachedService;
use purelb_runtime::Admin;
use tokio::sync::{mpsc, watch};

use crate::config::AgentConfig;
use crate::conflict::Sighting;
use crate::dataplane::DataPlane;
use crate::desired::{Announced, DesiredSet};
use crate::k8s::Writer;
use crate::lease::{NodeLeases, Renewal};
use crate::metrics::Metrics;
use crate::shutdown::Handover;
use index::{Index, Pending};
use purelb_core::announce::NodeFacts;
use purelb_core::announce::report::ServiceReport;
use purelb_core::pool::{PoolConfig, Subnet};
use purelb_runtime::Cache;

/// How often Lease liveness is re-judged.
const TICK: Duration = Duration::from_millis(250);
/// How often everything is reconciled even without events (drift repair).
const RESYNC: Duration = Duration::from_secs(10);
/// How often every Service is planned again even without events (a backstop for the incremental
/// bookkeeping), a slice at a time in [`REPLAN_STEPS`] steps, so the cost is spread over the period.
const REPLAN: Duration = Duration::from_secs(60);
/// The steps of one [`REPLAN`] period.
const REPLAN_STEPS: u32 = 60;
/// The shortest gap between two reconciles.
const MIN_GAP: Duration = Duration::from_millis(10);
/// The longest gap after a long reconcile.
const MAX_GAP: Duration = Duration::from_millis(500);
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
    Service(watcher::Event<CachedService>),
    Slice(watcher::Event<EndpointSlice>),
    Lease(watcher::Event<Lease>),
    Node(Box<watcher::Event<Node>>),
    Group(Box<watcher::Event<ServiceGroup>>),
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
    services: Cache<CachedService>,
    slices: Cache<EndpointSlice>,
    leases: Cache<Lease>,
    nodes: Cache<Node>,
    groups: Cache<ServiceGroup>,
    agents: Cache<LBNodeAgent>,
    tracker: NodeLeases,
    config: AgentConfig,
    bad_config: Option<String>,
    announced: Announced,
    /// What the next reconcile must re-plan and look at.
    pending: Pending,
    /// Our Services by address, and the endpoint nodes per Service.
    index: Index,
    /// The last Service the backstop planned again (it walks the cache a slice per step).
    backstop: Option<purelb_runtime::ObjectId>,
    /// The inputs every plan depends on, as last planned with (a change re-plans every Service).
    inputs: Option<(Vec<NodeFacts>, Vec<PoolConfig>, String)>,
    /// The subnets connected on this node's other interfaces, as last read.
    connected: Option<Vec<Subnet>>,
    /// The yielded addresses as last planned with.
    yielded_planned: BTreeSet<IpAddr>,
    /// The local addresses in place after the last reconcile (a new one is a takeover: GARP/NA).
    local_held: BTreeSet<IpAddr>,
    /// The addresses this node must hold, kept up to date one Service at a time.
    desired: DesiredSet,
    submitted: HashMap<ServiceKey, ServiceReport>,
    /// The Services this node reported at its last plan of them (it was their reporter).
    reporting: HashSet<ServiceKey>,
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
    refused: HashMap<ServiceKey, BTreeSet<IpAddr>>,
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
            services: Cache::keyed_by(CachedService::id),
            slices: Cache::default(),
            leases: Cache::default(),
            nodes: Cache::default(),
            groups: Cache::default(),
            agents: Cache::default(),
            tracker,
            config: AgentConfig::default(),
            bad_config: None,
            announced: Announced::default(),
            pending: Pending::default(),
            index: Index::default(),
            backstop: None,
            inputs: None,
            connected: None,
            yielded_planned: BTreeSet::new(),
            local_held: BTreeSet::new(),
            desired: DesiredSet::default(),
            submitted: HashMap::new(),
            reporting: HashSet::new(),
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
            refused: HashMap::new(),
            reannounce: false,
        }
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
