//! A record of where addresses sit and what the router routes, sampled every few tens of milliseconds
//! while a test injects a fault: which nodes hold which of the watched addresses on which interface, and
//! the routes BIRD put in the router's kernel table with their next hops.
//!
//! One rtnetlink socket per namespace is opened when sampling starts (on a thread that enters the
//! namespace; the socket stays there), then one background thread dumps them all every interval: no
//! process and no thread per sample. Beside each, a [`ChangeMonitor`] takes the kernel's own change
//! notifications for the watched addresses and BIRD's routes: a gap between two samples (a busy machine
//! can stall the thread) in which the kernel reported nothing is known to have changed nothing, so only
//! the gaps next to a reported change limit what the samples can have missed
//! ([`Timeline::max_blind_gap`]). The thread stops when asked ([`Sampler::stop`], or dropping the
//! [`Sampler`]) or at the bound given at start, whichever comes first.
//!
//! A [`Timeline`] is the result: the state at the first sample, every change after it with its time, the
//! state at the last sample, and the sampling itself (count, largest gap) so a test can tell a quiet
//! period from one it failed to watch.
//!
//! Exposes [`Sampler`], [`Timeline`], [`TimedChange`], [`Change`] and [`Holding`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use purelb_core::pool::Subnet;

use super::netlink::{ChangeMonitor, KernelChange, KernelRoute, RouteSocket, Watch};
use super::{KUBE_LB0, Network, RouterRoute};
use crate::LabError;

/// Sample errors kept verbatim in a timeline (the rest are only counted).
const KEPT_ERRORS: usize = 10;
/// Changes a timeline's `Display` lists before it only counts the rest.
const SHOWN_CHANGES: usize = 200;

// === impl Sampler ===

/// Samples a [`Network`] on a background thread until [`Sampler::stop`], drop, or its bound.
#[derive(Debug)]
pub struct Sampler {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<Timeline>>,
}

impl Sampler {
    /// Takes a first sample now (so the timeline starts from the state before whatever the test does
    /// next), then one every `interval` for at most `max`: for every node of `network`, which of `ips` it
    /// holds on which interface and prefix; for the router, every route BIRD installed (`proto bird`) with
    /// its next hops. Fails when a namespace's rtnetlink cannot be opened or the first sample fails.
    pub fn start(
        network: &Network,
        interval: Duration,
        ips: Vec<IpAddr>,
        max: Duration,
    ) -> Result<Sampler, LabError> {
        if interval.is_zero() {
            return Err(LabError::io(
                "starting the sampler",
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "the sampling interval is zero"),
            ));
        }
        let open = |netns: &str| {
            RouteSocket::open_in(netns)
                .map_err(|e| LabError::io(format!("starting the sampler: opening rtnetlink in {netns}"), e))
        };
        let monitor = |netns: &str, watch| {
            ChangeMonitor::open_in(netns, watch).map_err(|e| {
                LabError::io(format!("starting the sampler: subscribing to rtnetlink changes in {netns}"), e)
            })
        };
        let mut nodes = Vec::with_capacity(network.nodes().len());
        for node in network.nodes() {
            nodes.push(NodeSource {
                name: node.name().to_owned(),
                socket: open(node.netns())?,
                monitor: monitor(node.netns(), Watch::Addresses)?,
                links: HashMap::new(),
            });
        }
        let router = open(network.router_netns())?;
        let router_monitor = monitor(network.router_netns(), Watch::BirdRoutes)?;
        let mut sources = Sources { nodes, router, router_monitor, ips };

        let started = Instant::now();
        let mut errors = Vec::new();
        let (initial, reported) = sources.sample(&State::default(), &mut errors);
        if let Some(first) = errors.into_iter().next() {
            return Err(LabError::io("starting the sampler: the first sample", std::io::Error::other(first)));
        }
        let timeline = Timeline {
            ips: sources.ips.clone(),
            interval,
            max,
            samples: 1,
            max_gap: Duration::ZERO,
            span: Duration::ZERO,
            reached_max: false,
            last: initial.clone(),
            initial,
            changes: Vec::new(),
            errors: 0,
            kept_errors: Vec::new(),
            kernel_changes: 0,
            reports_lost: 0,
            max_blind_gap: Duration::ZERO,
            reported_last: reported.any(),
        };
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("purelb-lab-sampler".to_owned())
            .spawn(move || run(sources, timeline, &stopped, started))
            .map_err(|e| LabError::io("starting the sampler's thread", e))?;
        Ok(Sampler { stop: Some(stop), thread: Some(thread) })
    }

    /// Takes a last sample, stops the thread and returns what it saw. After the bound given at start the
    /// thread has already stopped: the timeline then ends there (see [`Timeline::reached_max`]).
    pub fn stop(mut self) -> Timeline {
        self.finish().unwrap_or_else(|| Timeline::empty("the sampler's thread is gone"))
    }

    fn finish(&mut self) -> Option<Timeline> {
        if let Some(stop) = self.stop.take() {
            // An error means the thread already stopped (at its bound); join it all the same.
            let _ = stop.send(());
        }
        match self.thread.take()?.join() {
            Ok(timeline) => Some(timeline),
            // The sampler never panics by design; if it did, the test should fail with that panic.
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The sampling loop: one sample per `interval` (immediately when behind), until stopped or `max`.
fn run(mut sources: Sources, mut timeline: Timeline, stopped: &Receiver<()>, started: Instant) -> Timeline {
    let mut last_sample = started;
    let mut next = started + timeline.interval;
    let mut errors = Vec::new();
    loop {
        let now = Instant::now();
        let deadline = started + timeline.max;
        if now >= deadline {
            timeline.reached_max = true;
            break;
        }
        let final_sample = match stopped.recv_timeout(next.min(deadline).saturating_duration_since(now)) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
            Err(RecvTimeoutError::Timeout) => false,
        };
        if !final_sample && Instant::now() >= deadline {
            continue;
        }
        let at = Instant::now();
        let (state, reported) = sources.sample(&timeline.last, &mut errors);
        timeline.record(
            at.duration_since(started),
            at.duration_since(last_sample),
            state,
            reported,
            &mut errors,
        );
        last_sample = at;
        next += timeline.interval;
        if next < Instant::now() {
            next = Instant::now();
        }
        if final_sample {
            break;
        }
    }
    timeline
}

// === sources ===

/// The rtnetlink sockets sampled, and what to look for.
struct Sources {
    nodes: Vec<NodeSource>,
    router: RouteSocket,
    router_monitor: ChangeMonitor,
    ips: Vec<IpAddr>,
}

struct NodeSource {
    name: String,
    socket: RouteSocket,
    monitor: ChangeMonitor,
    /// Interface names by index, refreshed when an address sits on an index not in it.
    links: HashMap<u32, String>,
}

impl Sources {
    /// One sample, and what the kernel reported since the previous one (read after the dumps, so a change
    /// between the previous sample's dumps and this one's is in this report or the previous one). A
    /// namespace whose dump fails keeps its part of `previous` (and the error is pushed), so one failed read
    /// is not reported as addresses or routes vanishing and coming back.
    fn sample(&mut self, previous: &State, errors: &mut Vec<String>) -> (State, Reported) {
        let mut state = State::default();
        for node in &mut self.nodes {
            match node.holdings(&self.ips) {
                Ok(held) => state.held.extend(held),
                Err(e) => {
                    errors.push(format!("reading {}'s addresses: {e}", node.name));
                    state.held.extend(previous.held.iter().filter(|h| h.node == node.name).cloned());
                }
            }
        }
        match self.router.bird_routes() {
            Ok(routes) => state.routes = routes.iter().map(route_entry).collect(),
            Err(e) => {
                errors.push(format!("reading the router's routes: {e}"));
                state.routes = previous.routes.clone();
            }
        }
        let mut reported = Reported::default();
        for node in &mut self.nodes {
            match node.monitor.drain() {
                Ok(changes) => {
                    reported.changes += changes
                        .iter()
                        .filter(|c| matches!(c, KernelChange::Address { ip, .. } if self.ips.contains(ip)))
                        .count();
                }
                Err(e) => {
                    errors.push(format!("reading {}'s address notifications: {e}", node.name));
                    reported.lost = true;
                }
            }
        }
        match self.router_monitor.drain() {
            Ok(changes) => reported.changes += changes.len(),
            Err(e) => {
                errors.push(format!("reading the router's route notifications: {e}"));
                reported.lost = true;
            }
        }
        (state, reported)
    }
}

/// What the kernel reported between two samples: how many changes to watched addresses or BIRD routes,
/// and whether any of its reports were lost (then anything may have changed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Reported {
    changes: usize,
    lost: bool,
}

impl Reported {
    fn any(self) -> bool {
        self.changes > 0 || self.lost
    }
}

impl NodeSource {
    fn holdings(&mut self, ips: &[IpAddr]) -> std::io::Result<Vec<Holding>> {
        let found: Vec<_> = self.socket.addresses()?.into_iter().filter(|a| ips.contains(&a.ip)).collect();
        if found.iter().any(|a| !self.links.contains_key(&a.index)) {
            self.links = self.socket.links()?.into_iter().collect();
        }
        Ok(found
            .into_iter()
            .map(|a| Holding {
                ip: a.ip,
                node: self.name.clone(),
                interface: self.links.get(&a.index).cloned().unwrap_or_else(|| format!("index {}", a.index)),
                prefix_len: a.prefix_len,
            })
            .collect())
    }
}

fn route_entry(route: &KernelRoute) -> (String, Vec<IpAddr>) {
    (format!("{}/{}", route.dst, route.prefix_len), route.gateways.clone())
}

// === State, Holding, Change ===

/// What one sample saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct State {
    held: BTreeSet<Holding>,
    /// Destination (`198.51.100.0/32`) to next hops (sorted).
    routes: BTreeMap<String, Vec<IpAddr>>,
}

impl State {
    /// The changes from `self` to `next`: addresses first, then routes, each in order.
    fn diff(&self, next: &State) -> Vec<Change> {
        let mut changes: Vec<Change> =
            self.held.difference(&next.held).cloned().map(Change::Disappeared).collect();
        changes.extend(next.held.difference(&self.held).cloned().map(Change::Appeared));
        for (dst, hops) in &self.routes {
            match next.routes.get(dst) {
                None => changes
                    .push(Change::RouteDisappeared(RouterRoute { dst: dst.clone(), nexthops: hops.clone() })),
                Some(to) if to != hops => {
                    changes.push(Change::NextHopsChanged {
                        dst: dst.clone(),
                        from: hops.clone(),
                        to: to.clone(),
                    });
                }
                Some(_) => {}
            }
        }
        for (dst, hops) in &next.routes {
            if !self.routes.contains_key(dst) {
                changes.push(Change::RouteAppeared(RouterRoute { dst: dst.clone(), nexthops: hops.clone() }));
            }
        }
        changes
    }

    fn apply(&mut self, change: &Change) {
        match change {
            Change::Appeared(h) => {
                self.held.insert(h.clone());
            }
            Change::Disappeared(h) => {
                self.held.remove(h);
            }
            Change::RouteAppeared(r) => {
                self.routes.insert(r.dst.clone(), r.nexthops.clone());
            }
            Change::RouteDisappeared(r) => {
                self.routes.remove(&r.dst);
            }
            Change::NextHopsChanged { dst, to, .. } => {
                self.routes.insert(dst.clone(), to.clone());
            }
        }
    }

    fn holders(&self, ip: IpAddr) -> Vec<(String, String, u8)> {
        self.held
            .iter()
            .filter(|h| h.ip == ip)
            .map(|h| (h.node.clone(), h.interface.clone(), h.prefix_len))
            .collect()
    }

    /// How many distinct nodes hold `ip` on an interface other than kube-lb0 (on the LAN, answering ARP).
    fn lan_holders(&self, ip: IpAddr) -> usize {
        self.held
            .iter()
            .filter(|h| h.ip == ip && h.interface != KUBE_LB0)
            .map(|h| &h.node)
            .collect::<BTreeSet<_>>()
            .len()
    }
}

/// One address on one interface of one node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Holding {
    pub ip: IpAddr,
    pub node: String,
    pub interface: String,
    pub prefix_len: u8,
}

impl fmt::Display for Holding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {} {}/{}", self.ip, self.node, self.interface, self.prefix_len)
    }
}

/// A difference between two consecutive samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A watched address appeared on a node's interface.
    Appeared(Holding),
    /// A watched address left a node's interface.
    Disappeared(Holding),
    /// The router got a route from BIRD.
    RouteAppeared(RouterRoute),
    /// A route left the router's table (shown with the next hops it had).
    RouteDisappeared(RouterRoute),
    /// A route stayed but its next hops changed.
    NextHopsChanged { dst: String, from: Vec<IpAddr>, to: Vec<IpAddr> },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Appeared(h) => write!(f, "+ {h}"),
            Change::Disappeared(h) => write!(f, "- {h}"),
            Change::RouteAppeared(r) => write!(f, "+ route {} via {}", r.dst, hops(&r.nexthops)),
            Change::RouteDisappeared(r) => write!(f, "- route {} (was via {})", r.dst, hops(&r.nexthops)),
            Change::NextHopsChanged { dst, from, to } => {
                write!(f, "~ route {dst} via {} -> via {}", hops(from), hops(to))
            }
        }
    }
}

/// A change and when the sampler first saw it, from the first sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedChange {
    pub at: Duration,
    pub change: Change,
}

fn hops(hops: &[IpAddr]) -> String {
    if hops.is_empty() {
        return "(no gateway)".to_owned();
    }
    hops.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

// === impl Timeline ===

/// What a [`Sampler`] saw: the first state, every change after it, and how well it sampled.
#[derive(Debug, Clone)]
pub struct Timeline {
    ips: Vec<IpAddr>,
    interval: Duration,
    max: Duration,
    samples: usize,
    max_gap: Duration,
    /// From the first sample to the last.
    span: Duration,
    reached_max: bool,
    initial: State,
    last: State,
    changes: Vec<TimedChange>,
    errors: usize,
    kept_errors: Vec<(Duration, String)>,
    /// Changes to watched addresses and BIRD routes the kernel reported after the first sample.
    kernel_changes: usize,
    /// Samples after which the kernel's reports could not be read (lost).
    reports_lost: usize,
    /// The longest gap next to which the kernel reported a change or lost its reports.
    max_blind_gap: Duration,
    /// Whether the previous sample's report had a change (or was lost).
    reported_last: bool,
}

impl Timeline {
    fn empty(why: &str) -> Timeline {
        Timeline {
            ips: Vec::new(),
            interval: Duration::ZERO,
            max: Duration::ZERO,
            samples: 0,
            max_gap: Duration::ZERO,
            span: Duration::ZERO,
            reached_max: false,
            initial: State::default(),
            last: State::default(),
            changes: Vec::new(),
            errors: 1,
            kept_errors: vec![(Duration::ZERO, why.to_owned())],
            kernel_changes: 0,
            reports_lost: 1,
            max_blind_gap: Duration::MAX,
            reported_last: true,
        }
    }

    /// Adds a sample taken `at` (from the first), `gap` after the previous one, with what the kernel
    /// reported since the previous sample. A change inside the gap is reported with the previous sample
    /// or with this one, so the gap is blind (its samples may have missed something) when either has one.
    fn record(
        &mut self,
        at: Duration,
        gap: Duration,
        state: State,
        reported: Reported,
        errors: &mut Vec<String>,
    ) {
        self.samples += 1;
        self.max_gap = self.max_gap.max(gap);
        self.kernel_changes += reported.changes;
        self.reports_lost += usize::from(reported.lost);
        if reported.any() || self.reported_last {
            self.max_blind_gap = self.max_blind_gap.max(gap);
        }
        self.reported_last = reported.any();
        self.span = at;
        self.changes.extend(self.last.diff(&state).into_iter().map(|change| TimedChange { at, change }));
        self.last = state;
        for error in errors.drain(..) {
            self.errors += 1;
            if self.kept_errors.len() < KEPT_ERRORS {
                self.kept_errors.push((at, error));
            }
        }
    }

    /// How many samples were taken (the first one included).
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// The longest time between two consecutive samples.
    pub fn max_gap(&self) -> Duration {
        self.max_gap
    }

    /// The longest time between two consecutive samples in which a change can have been missed: a gap the
    /// kernel reported no change to a watched address or route in (and lost no report) changed nothing,
    /// however long it was. Nothing shorter than this can have been missed.
    pub fn max_blind_gap(&self) -> Duration {
        self.max_blind_gap
    }

    /// How many changes to the watched addresses (on any node) and to BIRD's routes on the router the
    /// kernel reported after the first sample: 0 proves nothing changed, even between samples.
    pub fn kernel_changes(&self) -> usize {
        self.kernel_changes
    }

    /// How many times the kernel's change reports could not be read (some were lost).
    pub fn reports_lost(&self) -> usize {
        self.reports_lost
    }

    /// From the first sample to the last.
    pub fn duration(&self) -> Duration {
        self.span
    }

    /// Whether sampling stopped at the bound given to [`Sampler::start`] rather than at [`Sampler::stop`].
    pub fn reached_max(&self) -> bool {
        self.reached_max
    }

    /// How many changes (of addresses and of routes) the samples showed.
    pub fn changes(&self) -> usize {
        self.changes.len()
    }

    /// Every change, in the order seen.
    pub fn all_changes(&self) -> &[TimedChange] {
        &self.changes
    }

    /// How many reads of a namespace failed (the namespace then kept its previous state for that sample).
    pub fn errors(&self) -> usize {
        self.errors
    }

    /// (node, interface, prefix length) of every holder of `ip` at the first sample.
    pub fn holders_at_start(&self, ip: IpAddr) -> Vec<(String, String, u8)> {
        self.initial.holders(ip)
    }

    /// (node, interface, prefix length) of every holder of `ip` at the last sample.
    pub fn holders_at_end(&self, ip: IpAddr) -> Vec<(String, String, u8)> {
        self.last.holders(ip)
    }

    /// The routes BIRD had installed in the router at the last sample.
    pub fn routes_at_end(&self) -> Vec<RouterRoute> {
        self.last
            .routes
            .iter()
            .map(|(dst, hops)| RouterRoute { dst: dst.clone(), nexthops: hops.clone() })
            .collect()
    }

    /// Total time during which two or more nodes held `ip` at once on an interface other than kube-lb0
    /// (so both would answer ARP / neighbour solicitations for it). A state counts from the first sample
    /// that showed it to the first that no longer did.
    pub fn double_holding(&self, ip: IpAddr) -> Duration {
        let mut total = Duration::ZERO;
        self.replay(|state, from, to| {
            if state.lan_holders(ip) >= 2 {
                total += to.saturating_sub(from);
            }
        });
        total
    }

    /// The nodes that held `ip` on `interface` in any sample.
    pub fn ever_on_interface(&self, ip: IpAddr, interface: &str) -> Vec<String> {
        let mut nodes = BTreeSet::new();
        self.replay(|state, _, _| {
            nodes.extend(
                state.held.iter().filter(|h| h.ip == ip && h.interface == interface).map(|h| h.node.clone()),
            );
        });
        nodes.into_iter().collect()
    }

    /// Every route the router had in any sample whose destination overlaps one of `prefixes` (lies
    /// inside one, or holds one), with the next hops it had; each distinct (destination, next hops) once.
    pub fn router_routes_within(&self, prefixes: &[Subnet]) -> Vec<RouterRoute> {
        let mut seen = BTreeSet::new();
        self.replay(|state, _, _| {
            for (dst, hops) in &state.routes {
                let Ok(subnet) = Subnet::parse(dst) else { continue };
                if prefixes.iter().any(|p| p.contains(subnet.network()) || subnet.contains(p.network())) {
                    seen.insert((dst.clone(), hops.clone()));
                }
            }
        });
        seen.into_iter().map(|(dst, nexthops)| RouterRoute { dst, nexthops }).collect()
    }

    /// Calls `visit(state, from, to)` for each stretch of time one state lasted, first to last.
    fn replay(&self, mut visit: impl FnMut(&State, Duration, Duration)) {
        let mut state = self.initial.clone();
        let mut from = Duration::ZERO;
        let mut changes = self.changes.iter().peekable();
        while let Some(first) = changes.peek() {
            let at = first.at;
            visit(&state, from, at);
            while let Some(change) = changes.next_if(|c| c.at == at) {
                state.apply(&change.change);
            }
            from = at;
        }
        visit(&state, from, self.span);
    }

    fn write_state(f: &mut fmt::Formatter<'_>, ips: &[IpAddr], state: &State) -> fmt::Result {
        for ip in ips {
            let held: Vec<String> = state
                .held
                .iter()
                .filter(|h| h.ip == *ip)
                .map(|h| format!("{} {}/{}", h.node, h.interface, h.prefix_len))
                .collect();
            let held = if held.is_empty() { "(nobody)".to_owned() } else { held.join(", ") };
            writeln!(f, "    {ip}: {held}")?;
        }
        if state.routes.is_empty() {
            writeln!(f, "    (no BIRD routes on the router)")?;
        }
        for (dst, via) in &state.routes {
            writeln!(f, "    route {dst} via {}", hops(via))?;
        }
        Ok(())
    }
}

impl fmt::Display for Timeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} samples over {:?} (every {:?}, max gap {:?}, max blind gap {:?}), {} changes; the kernel reported {} \
             changes, {} reports lost",
            self.samples,
            self.span,
            self.interval,
            self.max_gap,
            self.max_blind_gap,
            self.changes.len(),
            self.kernel_changes,
            self.reports_lost
        )?;
        if self.reached_max {
            write!(f, ", stopped at its bound of {:?}", self.max)?;
        }
        writeln!(f)?;
        if self.errors > 0 {
            writeln!(f, "  {} failed reads, the first ones:", self.errors)?;
            for (at, error) in &self.kept_errors {
                writeln!(f, "    +{:.3}s {error}", at.as_secs_f64())?;
            }
        }
        writeln!(f, "  at the first sample:")?;
        Timeline::write_state(f, &self.ips, &self.initial)?;
        if !self.changes.is_empty() {
            writeln!(f, "  changes:")?;
            for change in self.changes.iter().take(SHOWN_CHANGES) {
                writeln!(f, "    +{:.3}s {}", change.at.as_secs_f64(), change.change)?;
            }
            if self.changes.len() > SHOWN_CHANGES {
                writeln!(f, "    ... and {} more", self.changes.len() - SHOWN_CHANGES)?;
            }
            writeln!(f, "  at the last sample:")?;
            Timeline::write_state(f, &self.ips, &self.last)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
