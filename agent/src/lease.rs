//! The node Lease: how this agent tells the others it is alive and which LAN it is on, and how it judges
//! theirs.
//!
//! - One `coordination.k8s.io/v1` Lease per node, `purelb-node-<node>` in the install namespace, labelled
//!   [`LEASE_LABEL`], written only by that node's agent (server-side apply, field manager
//!   `purelb-lbnodeagent`): `holderIdentity: <node>`, `leaseDurationSeconds`, `renewTime`, and the
//!   annotations [`SUBNETS_ANNOTATION`] (the LAN interface's subnets, comma-separated CIDRs, host bits
//!   masked, IPv4 and IPv6) and [`INTERFACE_ANNOTATION`] (the LAN interface's name). [`Renewer`] renews
//!   it every `--lease-renew-ms`, and at once when the configuration changes. When the kernel cannot be
//!   read, the Lease keeps the LAN it last named (only an answer that no interface is usable empties
//!   it). Node names longer than 241 characters do not fit in a Lease name and are not supported.
//! - [`NodeLeases`] turns the watched Leases into `NodeFacts`. Another node is live while its Lease
//!   keeps changing: `purelb_core::lease::LeaseObservation` on this process's monotonic clock, never
//!   comparing the writer's `renewTime` with our clock. This node is live while its own last successful
//!   renewal is younger than the Lease duration (measured from when the write was sent, so it expires
//!   here no later than the others see it expire). A node without a Lease is not live.
//! - Fail-static (the rule: silence from the API server is never evidence that an address should move;
//!   only positive evidence is: another node's valid Lease and announcement, a deleted Lease, a deleted
//!   Service, a changed group). This node is always live in its own eyes: a failed renewal withdraws
//!   nothing (the other nodes judge our Lease; if they take an address over while we are cut off, their
//!   gratuitous ARP / NA tells us, see `conflict`). Another node's Lease unchanged for its duration is
//!   expired only when proven so ([`NodeLeases::wants_proof`], `proven`): one of our own renewals,
//!   sent after that Lease's deadline, has come back through the watch — the watch delivers the
//!   namespace's Lease changes in order, so had the other node renewed before it, we would have seen
//!   it. An API server that is paused, or our path to it cut, proves nothing, so nothing expires. When
//!   a Lease passes its deadline the announcer asks the renewer to renew at once, so the proof costs no
//!   more than one API round trip. When this agent has not seen its own Lease change for a whole
//!   duration its view is stale ([`NodeLeases::stale`]): the time spent stale does not count towards
//!   the other Leases' expiry (their observations restart), so after the API returns each node has a
//!   whole duration to renew before anyone takes its addresses.
//! - This node's facts come from what its renewer last published successfully ([`Renewal`]), not from
//!   the watched copy of its Lease, so a stale or re-listed watch never changes its own eligibility.
//! - The LAN interface: when the kernel no longer shows a usable LAN (interface down, default route
//!   gone, addresses flushed by a link flap) and the configuration did not change, the Lease keeps the
//!   LAN it last named, and says so (log, `purelb_agent_lan_kept`). A restarted agent that finds no LAN
//!   takes the one its own Lease still names. Only a changed configuration (LBNodeAgent) publishes a
//!   smaller or empty LAN.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use purelb_core::announce::NodeFacts;
use purelb_core::lease::{LeaseObservation, LeaseVerdict};
use purelb_core::pool::Subnet;
use serde_json::json;
use tokio::sync::watch;

pub use purelb_core::api::node_lease::{
    INTERFACE_ANNOTATION, LEASE_LABEL, LEASE_PREFIX, SUBNETS_ANNOTATION, format_subnets, lease_name,
    parse_subnets,
};

use crate::config::{self, AgentConfig};
use crate::metrics::Metrics;

use crate::netlink::{Netlink, NetlinkError};

/// Field manager of the Lease writes.
pub const MANAGER: &str = purelb_core::api::AGENT_COMPONENT;

/// How soon the renewer asks the kernel again when it has never read the LAN.
const LAN_RETRY: Duration = Duration::from_millis(250);

/// A successful renewal: when it was sent and the LAN it published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Renewal {
    /// When the write was sent.
    pub at: Instant,
    /// The resourceVersion the API server gave it.
    pub version: String,
    /// The LAN the Lease names.
    pub lan: LanFacts,
}

/// The LAN as this node reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LanFacts {
    /// The LAN interface; empty when none is usable.
    pub interface: String,
    /// Its subnets.
    pub subnets: Vec<Subnet>,
}

/// The server-side apply body of `node`'s Lease.
pub fn lease_body(
    node: &str,
    namespace: &str,
    lan: &LanFacts,
    duration: Duration,
    acquired: &MicroTime,
) -> serde_json::Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": lease_name(node),
            "namespace": namespace,
            "labels": {LEASE_LABEL.0: LEASE_LABEL.1},
            "annotations": {
                SUBNETS_ANNOTATION: format_subnets(&lan.subnets),
                INTERFACE_ANNOTATION: lan.interface,
            },
        },
        "spec": {
            "holderIdentity": node,
            "leaseDurationSeconds": duration_seconds(duration),
            "acquireTime": acquired,
            "renewTime": MicroTime(Timestamp::now()),
        },
    })
}

/// `leaseDurationSeconds` for a duration: whole seconds, rounded up, at least 1.
pub fn duration_seconds(d: Duration) -> i32 {
    i32::try_from(d.as_millis().div_ceil(1000)).unwrap_or(i32::MAX).max(1)
}

// === NodeLeases ===

/// What is known of one node's Lease.
#[derive(Clone, Debug)]
struct Entry {
    version: String,
    holder: Option<String>,
    duration: Duration,
    observation: LeaseObservation,
    live: bool,
    subnets: Vec<Subnet>,
    interface: String,
}

/// The node Leases seen, judged on the monotonic clock. Pure: time is passed in.
#[derive(Debug)]
pub struct NodeLeases {
    me: String,
    own_duration: Duration,
    entries: BTreeMap<String, Entry>,
    /// Our own Lease's version and when the watch last showed it change.
    own_seen: Option<(String, Instant)>,
    /// Our last successful renewal.
    renewed: Option<Renewal>,
    /// When the newest of our renewals that the watch has shown us was sent: the API server was
    /// working, and had every earlier Lease change delivered to us, after that instant.
    proof: Option<Instant>,
}

impl NodeLeases {
    /// No Lease seen yet; `me` is this node, `own_duration` its Lease duration.
    pub fn new(me: &str, own_duration: Duration) -> Self {
        Self {
            me: me.to_string(),
            own_duration,
            entries: BTreeMap::new(),
            own_seen: None,
            renewed: None,
            proof: None,
        }
    }

    /// The node a Lease speaks for, when it is a node Lease.
    pub fn node_of(lease: &Lease) -> Option<String> {
        lease.name_any().strip_prefix(LEASE_PREFIX).filter(|n| !n.is_empty()).map(str::to_string)
    }

    /// Records a Lease as seen at `now`. Returns whether the node facts changed.
    pub fn apply(&mut self, lease: &Lease, now: Instant) -> bool {
        let Some(node) = Self::node_of(lease) else { return false };
        let version = lease.resource_version().unwrap_or_default();
        let spec = lease.spec.as_ref();
        let holder = spec.and_then(|s| s.holder_identity.clone());
        let duration = spec
            .and_then(|s| s.lease_duration_seconds)
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs)
            .unwrap_or(self.own_duration);
        let annotations = lease.annotations();
        let (subnets, bad) = parse_subnets(annotations.get(SUBNETS_ANNOTATION).map_or("", String::as_str));
        if !bad.is_empty() {
            tracing::warn!(%node, ?bad, "ignoring entries of {SUBNETS_ANNOTATION} that are not CIDRs");
        }
        let interface = annotations.get(INTERFACE_ANNOTATION).cloned().unwrap_or_default();
        if node == self.me && self.own_seen.as_ref().is_none_or(|(v, _)| *v != version) {
            self.own_seen = Some((version.clone(), now));
        }
        if node == self.me {
            self.note_proof(&version);
        }
        let proof = self.proof;
        let previous = self.entries.get(&node);
        let (observation, verdict) = LeaseObservation::observe(
            previous.map(|e| &e.observation),
            &version,
            holder.as_deref(),
            duration,
            now,
        );
        let live = node == self.me
            || judge(verdict, previous.is_some_and(|e| e.live), proven(proof, &observation, duration));
        let changed =
            previous.is_none_or(|e| e.live != live || e.subnets != subnets || e.interface != interface);
        self.entries.insert(node, Entry { version, holder, duration, observation, live, subnets, interface });
        changed
    }

    /// Forgets the Lease named `name` (deleted). Returns whether the node facts changed.
    pub fn remove(&mut self, name: &str) -> bool {
        match name.strip_prefix(LEASE_PREFIX) {
            Some(node) => self.entries.remove(node).is_some(),
            None => false,
        }
    }

    /// Replaces everything with a fresh list (a watch re-list). Returns whether the facts changed.
    pub fn replace_all<'a>(&mut self, leases: impl IntoIterator<Item = &'a Lease>, now: Instant) -> bool {
        let mut changed = false;
        let mut present = Vec::new();
        for lease in leases {
            if let Some(node) = Self::node_of(lease) {
                present.push(node);
                changed |= self.apply(lease, now);
            }
        }
        let before = self.entries.len();
        self.entries.retain(|node, _| present.contains(node));
        changed || self.entries.len() != before
    }

    /// Records our last successful renewal.
    pub fn set_renewed(&mut self, renewal: Option<Renewal>) {
        self.renewed = renewal;
        if let Some(version) = self.entries.get(&self.me).map(|e| e.version.clone()) {
            self.note_proof(&version);
        }
    }

    /// Our own Lease was seen at `version`: when that is our last renewal, the API server worked after
    /// it was sent.
    fn note_proof(&mut self, version: &str) {
        if let Some(r) = self.renewed.as_ref().filter(|r| r.version == version) {
            self.proof = Some(self.proof.map_or(r.at, |p| p.max(r.at)));
        }
    }

    /// Whether some other node's Lease is past its deadline without proof that it really did not renew
    /// (see [`proven`]): a renewal of ours now would settle it.
    pub fn wants_proof(&self, now: Instant) -> bool {
        self.entries.iter().any(|(node, e)| {
            *node != self.me
                && e.live
                && now >= e.observation.deadline(e.duration)
                && !proven(self.proof, &e.observation, e.duration)
        })
    }

    /// Whether this node's own Lease has been seen.
    pub fn has_own(&self) -> bool {
        self.entries.contains_key(&self.me)
    }

    /// Whether our watch showed our own Lease change within its duration (see the module header).
    pub fn watch_fresh(&self, now: Instant) -> bool {
        self.own_seen.as_ref().is_some_and(|(_, t)| now.saturating_duration_since(*t) < self.own_duration)
    }

    /// Whether this agent runs on its last known state: its own Lease was not seen changing for a whole
    /// duration (the watch or the API server is away), or its last successful renewal is that old (it
    /// cannot write). See the module header.
    pub fn stale(&self, now: Instant) -> bool {
        let renewed =
            self.renewed.as_ref().is_some_and(|r| now.saturating_duration_since(r.at) < self.own_duration);
        !(renewed && self.watch_fresh(now))
    }

    /// Re-judges every Lease at `now`. Returns whether some node's liveness flipped. While stale,
    /// nothing flips and the other Leases' clocks restart (see the module header).
    pub fn tick(&mut self, now: Instant) -> bool {
        let stale = self.stale(now);
        let mut flipped = false;
        for (node, e) in self.entries.iter_mut() {
            if stale {
                e.observation = e.observation.restarted(now);
                continue;
            }
            let (observation, verdict) = LeaseObservation::observe(
                Some(&e.observation),
                &e.version,
                e.holder.as_deref(),
                e.duration,
                now,
            );
            e.observation = observation;
            let live =
                *node == self.me || judge(verdict, e.live, proven(self.proof, &e.observation, e.duration));
            if live != e.live {
                tracing::info!(%node, live, "node liveness changed");
                e.live = live;
                flipped = true;
            }
        }
        flipped
    }

    /// The facts of every node with a Lease, and of this node once it renewed (from what it
    /// published: see the module header); `excluded` tells which nodes carry the exclude label,
    /// `shutting_down` which began a graceful node shutdown.
    pub fn facts(
        &self,
        excluded: impl Fn(&str) -> bool,
        shutting_down: impl Fn(&str) -> bool,
    ) -> Vec<NodeFacts> {
        let mut out: Vec<NodeFacts> = self
            .entries
            .iter()
            .filter(|(name, _)| **name != self.me || self.renewed.is_none())
            .map(|(name, e)| NodeFacts {
                name: name.clone(),
                subnets: e.subnets.clone(),
                interface: e.interface.clone(),
                live: e.live,
                excluded: excluded(name),
                shutting_down: shutting_down(name),
            })
            .collect();
        if let Some(r) = &self.renewed {
            let at = out.partition_point(|f| f.name < self.me);
            out.insert(
                at,
                NodeFacts {
                    name: self.me.clone(),
                    subnets: r.lan.subnets.clone(),
                    interface: r.lan.interface.clone(),
                    live: true,
                    excluded: excluded(&self.me),
                    shutting_down: shutting_down(&self.me),
                },
            );
        }
        out
    }
}

/// Another node's liveness: held is live, released is not, expired is not — once `proven`; until
/// then the previous verdict stands.
fn judge(verdict: LeaseVerdict, was_live: bool, proven: bool) -> bool {
    match verdict {
        LeaseVerdict::Held => true,
        LeaseVerdict::Free => false,
        LeaseVerdict::Expired => was_live && !proven,
    }
}

/// Whether a Lease unchanged since `observation` is proven expired: one of our own renewals sent after
/// its deadline has come back through the watch. The watch delivers a namespace's Lease changes in
/// order, so had the other node renewed before that write, we would have seen it. Without that proof,
/// an unchanged Lease may only mean that the API server (or our path to it) is away — which is no
/// reason to move anything.
fn proven(proof: Option<Instant>, observation: &LeaseObservation, duration: Duration) -> bool {
    proof.is_some_and(|p| p >= observation.deadline(duration))
}

// === KnownLan ===

/// The LAN the renewer publishes, and the configuration it was learnt under.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KnownLan {
    /// What the Lease names; `None` until the kernel or the previous Lease told.
    pub facts: Option<LanFacts>,
    /// The configuration `facts` was learnt under.
    pub config: Option<AgentConfig>,
    /// The kernel shows less than `facts` (no usable interface, or fewer subnets) and the last known
    /// LAN is kept.
    pub kept: bool,
}

impl KnownLan {
    /// Takes the kernel's answer under `config`. Under an unchanged configuration the LAN never shrinks
    /// (a link flap or a lost default route is no reason to move local addresses off this node, nor to
    /// route them); under a changed one the kernel's answer stands, whatever it is.
    pub fn update(&mut self, answer: Result<LanFacts, String>, config: &AgentConfig) {
        let same_config = self.config.as_ref() == Some(config);
        let answer = answer.unwrap_or_default();
        match &self.facts {
            Some(known) if same_config && !known.interface.is_empty() => {
                let shrinks = answer.interface.is_empty()
                    || (answer.interface == known.interface
                        && known.subnets.iter().any(|s| !answer.subnets.contains(s)));
                if shrinks {
                    let mut kept = known.clone();
                    for s in &answer.subnets {
                        if answer.interface == kept.interface && !kept.subnets.contains(s) {
                            kept.subnets.push(*s);
                        }
                    }
                    self.facts = Some(kept);
                    self.kept = true;
                    return;
                }
                self.facts = Some(answer);
            }
            _ => self.facts = Some(answer),
        }
        self.config = Some(config.clone());
        self.kept = false;
    }

    /// Logs what changed between `before` and now.
    fn log_change(&self, before: &KnownLan, config: &AgentConfig, why: Option<&str>) {
        let why = why.unwrap_or("");
        let Some(now) = &self.facts else { return };
        if self.kept && !before.kept {
            tracing::warn!(interface = %now.interface, subnets = %format_subnets(&now.subnets), localint = %config.localint, %why,
                "the kernel shows no usable LAN (interface down, default route or addresses gone): keeping the last known LAN for the Lease and the local addresses");
        } else if !self.kept && before.kept {
            tracing::info!(interface = %now.interface, subnets = %format_subnets(&now.subnets), "the LAN is back");
        } else if before.facts.as_ref() != Some(now) && !self.kept {
            if now.interface.is_empty() {
                tracing::warn!(localint = %config.localint, %why, "no usable LAN interface: only non-local addresses will be announced");
            } else {
                tracing::info!(interface = %now.interface, subnets = %format_subnets(&now.subnets), "LAN interface");
            }
        }
    }
}

// === Renewer ===

/// Renews this node's Lease until dropped (the task is aborted at shutdown).
pub struct Renewer {
    /// Leases of the install namespace.
    pub api: Api<Lease>,
    /// The install namespace.
    pub namespace: String,
    /// This node.
    pub node: String,
    /// `leaseDurationSeconds` (rounded up to seconds).
    pub duration: Duration,
    /// How often to renew.
    pub every: Duration,
    /// To read the LAN interface and its addresses.
    pub netlink: Netlink,
    /// The configuration; `None` until the LBNodeAgents were read.
    pub config: watch::Receiver<Option<AgentConfig>>,
    /// The last successful renewal.
    pub renewed: watch::Sender<Option<Renewal>>,
    /// Renew now (another node's Lease passed its deadline: see the module header).
    pub renew_now: std::sync::Arc<tokio::sync::Notify>,
    /// Renewal counters.
    pub metrics: Metrics,
}

impl Renewer {
    /// Renews every `every`, and at once when the configuration changes, until `stop` turns true. A
    /// renewal in flight is finished first, so none can land after the Lease is deleted.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let name = lease_name(&self.node);
        let acquired = MicroTime(Timestamp::now());
        let pp = PatchParams::apply(MANAGER).force();
        let mut lan = KnownLan::default();
        // Publish nothing until the configuration is known: a Lease naming the wrong LAN would mislead
        // the other nodes' elections.
        while self.config.borrow_and_update().is_none() {
            tokio::select! {
                r = self.config.changed() => if r.is_err() { return },
                _ = stop.wait_for(|s| *s) => return,
            }
        }
        loop {
            let config = self.config.borrow_and_update().clone().unwrap_or_default();
            match self.lan_facts(&config).await {
                Ok(answer) => {
                    let mut answer_unknown = false;
                    // A restarted agent that finds no LAN first asks its own Lease which LAN it named.
                    if lan.facts.is_none() && answer.is_err() {
                        match self.published_lan(&name).await {
                            Ok(Some(p)) => {
                                tracing::info!(interface = %p.interface, subnets = %format_subnets(&p.subnets), "no usable LAN in the kernel yet: starting from the LAN this node's Lease names");
                                lan = KnownLan { facts: Some(p), config: Some(config.clone()), kept: false };
                            }
                            Ok(None) => {}
                            // Neither the kernel nor the API can tell: publish nothing yet.
                            Err(()) => answer_unknown = true,
                        }
                    }
                    if !answer_unknown {
                        let before = lan.clone();
                        let why = answer.as_ref().err().cloned();
                        lan.update(answer, &config);
                        lan.log_change(&before, &config, why.as_deref());
                        self.metrics.lan_kept.set(i64::from(lan.kept));
                    }
                }
                // The kernel did not answer: that says nothing about the LAN, so the Lease keeps what it
                // said (publishing "no LAN" would move every local address off this node and back).
                Err(e) => {
                    self.metrics.error("lan");
                    tracing::warn!(error = %e, "could not read the LAN interface; the Lease keeps the last one");
                }
            }
            // Nothing is known of the LAN yet: try again shortly rather than publish a wrong one.
            let Some(known) = lan.facts.as_ref() else {
                tokio::select! {
                    _ = tokio::time::sleep(self.every.min(LAN_RETRY)) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                continue;
            };
            let body = lease_body(&self.node, &self.namespace, known, self.duration, &acquired);
            let sent = Instant::now();
            let result =
                tokio::time::timeout(self.every, self.api.patch(&name, &pp, &Patch::Apply(&body))).await;
            match result {
                Ok(Ok(written)) => {
                    self.metrics.renewal(true);
                    let version = written.resource_version().unwrap_or_default();
                    let _ = self.renewed.send(Some(Renewal { at: sent, version, lan: known.clone() }));
                }
                Ok(Err(e)) => {
                    self.metrics.renewal(false);
                    tracing::warn!(error = %e, lease = %name, "could not renew the node Lease");
                }
                Err(_) => {
                    self.metrics.renewal(false);
                    tracing::warn!(lease = %name, "renewing the node Lease timed out");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.every.saturating_sub(sent.elapsed())) => {}
                r = self.config.changed() => if r.is_err() { return },
                _ = self.renew_now.notified() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// The LAN this node's Lease names now, when it names an interface (a restarted agent that finds no
    /// LAN keeps it); `Err` when the API cannot be read.
    async fn published_lan(&self, name: &str) -> Result<Option<LanFacts>, ()> {
        let Ok(Ok(lease)) = tokio::time::timeout(self.every, self.api.get_opt(name)).await else {
            return Err(());
        };
        let Some(lease) = lease else { return Ok(None) };
        let annotations = lease.annotations();
        let interface = annotations.get(INTERFACE_ANNOTATION).cloned().unwrap_or_default();
        let (subnets, _) = parse_subnets(annotations.get(SUBNETS_ANNOTATION).map_or("", String::as_str));
        Ok((!interface.is_empty() && !subnets.is_empty()).then_some(LanFacts { interface, subnets }))
    }

    /// The LAN `config` selects; the inner error says why no interface is usable, the outer one that
    /// the kernel could not be read.
    async fn lan_facts(&self, config: &AgentConfig) -> Result<Result<LanFacts, String>, NetlinkError> {
        let links = self.netlink.links().await?;
        let default_route = match config.localint {
            config::LocalInt::DefaultRoute => self.netlink.default_route_interface().await?,
            config::LocalInt::Pattern { .. } => None,
        };
        Ok(config::lan_interface(config, &links, default_route.as_deref())
            .map(|link| LanFacts { interface: link.name.clone(), subnets: config::lan_subnets(link) }))
    }
}

/// Deletes this node's Lease (after the addresses were withdrawn) so the next winner takes over at
/// once. Best effort, bounded by `timeout`.
pub async fn delete(api: &Api<Lease>, node: &str, timeout: Duration) {
    let name = lease_name(node);
    match tokio::time::timeout(timeout, api.delete(&name, &DeleteParams::default())).await {
        Ok(Ok(_)) => tracing::info!(lease = %name, "deleted the node Lease"),
        Ok(Err(kube::Error::Api(e))) if e.code == 404 => {}
        Ok(Err(e)) => tracing::warn!(error = %e, lease = %name, "could not delete the node Lease"),
        Err(_) => tracing::warn!(lease = %name, "deleting the node Lease timed out"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use kube::api::ObjectMeta;

    fn lease(node: &str, version: &str, subnets: &str) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(lease_name(node)),
                resource_version: Some(version.into()),
                annotations: Some(
                    [
                        (SUBNETS_ANNOTATION.to_string(), subnets.to_string()),
                        (INTERFACE_ANNOTATION.to_string(), "eth0".to_string()),
                    ]
                    .into(),
                ),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(node.into()),
                lease_duration_seconds: Some(4),
                ..Default::default()
            }),
        }
    }

    fn live(l: &NodeLeases) -> Vec<(String, bool)> {
        l.facts(|_| false, |_| false).into_iter().map(|f| (f.name, f.live)).collect()
    }

    const S: Duration = Duration::from_secs(1);

    fn renewal(at: Instant, version: &str) -> Renewal {
        let lan = LanFacts { interface: "eth0".into(), subnets: parse_subnets("192.0.2.0/24").0 };
        Renewal { at, version: version.into(), lan }
    }

    #[test]
    fn subnets_round_trip_and_bad_entries_are_reported() {
        let (s, bad) = parse_subnets(" 192.0.2.7/24, 2001:db8:0:1::11/64,,nonsense,192.0.2.0/24");
        assert_eq!(format_subnets(&s), "192.0.2.0/24,2001:db8:0:1::/64");
        assert_eq!(bad, ["nonsense"]);
        assert_eq!(parse_subnets(""), (vec![], vec![]));
    }

    #[test]
    fn lease_duration_rounds_up_to_seconds() {
        assert_eq!(duration_seconds(Duration::from_millis(4000)), 4);
        assert_eq!(duration_seconds(Duration::from_millis(2500)), 3);
        assert_eq!(duration_seconds(Duration::from_millis(10)), 1);
    }

    #[test]
    fn lease_body_carries_annotations_and_holder() {
        let lan = LanFacts { interface: "eth0".into(), subnets: parse_subnets("192.0.2.0/24").0 };
        let b =
            lease_body("node1", "purelb-system", &lan, Duration::from_secs(4), &MicroTime(Timestamp::now()));
        assert_eq!(b["metadata"]["name"], "purelb-node-node1");
        assert_eq!(b["metadata"]["annotations"][SUBNETS_ANNOTATION], "192.0.2.0/24");
        assert_eq!(b["metadata"]["annotations"][INTERFACE_ANNOTATION], "eth0");
        assert_eq!(b["metadata"]["labels"][LEASE_LABEL.0], LEASE_LABEL.1);
        assert_eq!(b["spec"]["holderIdentity"], "node1");
        assert_eq!(b["spec"]["leaseDurationSeconds"], 4);
    }

    #[test]
    fn facts_come_from_the_annotations() {
        let t0 = Instant::now();
        let mut l = NodeLeases::new("node1", 4 * S);
        assert!(l.apply(&lease("node2", "1", "192.0.2.0/24"), t0));
        let f = l.facts(|n| n == "node2", |_| false);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].subnets, parse_subnets("192.0.2.0/24").0);
        assert_eq!(f[0].interface, "eth0");
        assert!(f[0].live && f[0].excluded);
        // The same Lease again changes nothing.
        assert!(!l.apply(&lease("node2", "1", "192.0.2.0/24"), t0 + S));
        assert!(l.remove("purelb-node-node2"));
        assert!(
            l.facts(|_| false, |_| false).is_empty(),
            "a node without a Lease is not live: it has no facts"
        );
    }

    #[test]
    fn another_node_expires_when_unchanged_for_its_duration_without_events() {
        let t0 = Instant::now();
        let mut l = NodeLeases::new("node1", 4 * S);
        l.set_renewed(Some(renewal(t0, "1")));
        l.apply(&lease("node1", "1", ""), t0);
        l.apply(&lease("node2", "5", ""), t0);
        // Our own Lease keeps changing: our view is fresh.
        l.set_renewed(Some(renewal(t0 + 2 * S, "2")));
        l.apply(&lease("node1", "2", ""), t0 + 2 * S);
        assert!(!l.tick(t0 + 3 * S));
        l.set_renewed(Some(renewal(t0 + 4 * S, "3")));
        l.apply(&lease("node1", "3", ""), t0 + 4 * S);
        assert!(l.tick(t0 + 4 * S), "node2 unchanged for 4 s");
        assert_eq!(live(&l), [("node1".into(), true), ("node2".into(), false)]);
        // A renewal brings it back.
        assert!(l.apply(&lease("node2", "6", ""), t0 + 5 * S));
        assert_eq!(live(&l), [("node1".into(), true), ("node2".into(), true)]);
    }

    #[test]
    fn an_unchanged_lease_is_not_expired_without_proof() {
        // The race a paused API server makes: node2 renewed 1.5 s before node1, then the API stopped.
        // node1 is not yet stale when node2's deadline passes, but no renewal of node1 sent after that
        // deadline has come back, so node2 stays live.
        let t0 = Instant::now();
        let mut l = NodeLeases::new("node1", 4 * S);
        l.apply(&lease("node2", "5", ""), t0);
        l.set_renewed(Some(renewal(t0 + S + S / 2, "1")));
        l.apply(&lease("node1", "1", ""), t0 + S + S / 2);
        for ms in (0..=3000).step_by(250) {
            let now = t0 + 4 * S + Duration::from_millis(ms);
            assert!(!l.tick(now), "nothing flips at {now:?}");
            // Until node1 itself is stale (its own Lease unseen for 4 s, from t0 + 5.5 s).
            if ms < 1500 {
                assert!(l.wants_proof(now), "a renewal would settle it ({ms} ms past the deadline)");
            }
        }
        assert_eq!(live(&l), [("node1".into(), true), ("node2".into(), true)]);
        // The API returns (within the duration): our renewal sent after the deadline is seen, node2's
        // is not: proven expired.
        let now = t0 + 4 * S + S / 2;
        let mut l2 = NodeLeases::new("node1", 4 * S);
        l2.apply(&lease("node2", "5", ""), t0);
        l2.set_renewed(Some(renewal(t0 + S, "1")));
        l2.apply(&lease("node1", "1", ""), t0 + S);
        l2.set_renewed(Some(renewal(now, "2")));
        l2.apply(&lease("node1", "2", ""), now);
        assert!(l2.tick(now));
        assert_eq!(live(&l2), [("node1".into(), true), ("node2".into(), false)]);
        assert!(!l2.wants_proof(now));
    }

    #[test]
    fn verdicts_freeze_while_our_own_lease_is_not_seen_changing() {
        let t0 = Instant::now();
        let mut l = NodeLeases::new("node1", 4 * S);
        l.set_renewed(Some(renewal(t0, "1")));
        l.apply(&lease("node1", "1", ""), t0);
        l.apply(&lease("node2", "5", ""), t0);
        // The watch is stuck: neither Lease changes, though our renewals succeed.
        l.set_renewed(Some(renewal(t0 + 4 * S, "0")));
        l.tick(t0 + 5 * S);
        assert_eq!(live(&l), [("node1".into(), true), ("node2".into(), true)]);
    }

    #[test]
    fn this_node_stays_live_when_its_renewals_fail() {
        let t0 = Instant::now();
        let mut l = NodeLeases::new("node1", 4 * S);
        l.apply(&lease("node1", "1", ""), t0);
        l.set_renewed(Some(renewal(t0, "1")));
        assert!(!l.stale(t0 + S));
        // No renewal for a minute: this node is stale, but still live in its own eyes, with the LAN it
        // last published (the silence of the API is no reason to withdraw).
        assert!(!l.tick(t0 + 60 * S));
        assert!(l.stale(t0 + 60 * S));
        let me = l.facts(|_| false, |_| false);
        assert_eq!(me.len(), 1);
        assert!(me[0].live);
        assert_eq!(
            (me[0].interface.as_str(), format_subnets(&me[0].subnets).as_str()),
            ("eth0", "192.0.2.0/24")
        );
    }

    #[test]
    fn own_facts_come_from_the_renewal_not_the_watched_lease() {
        let t0 = Instant::now();
        let mut l = NodeLeases::new("node1", 4 * S);
        // The watched copy says no LAN (an old version); the renewer published eth0.
        l.apply(&lease("node1", "1", ""), t0);
        l.set_renewed(Some(renewal(t0, "1")));
        l.apply(&lease("node2", "1", "192.0.2.0/24"), t0);
        let f = l.facts(|_| false, |_| false);
        assert_eq!(f.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["node1", "node2"]);
        assert_eq!(format_subnets(&f[0].subnets), "192.0.2.0/24");
    }

    #[test]
    fn after_a_stale_spell_every_node_gets_a_whole_duration_to_renew() {
        let t0 = Instant::now();
        let mut l = NodeLeases::new("node1", 4 * S);
        l.set_renewed(Some(renewal(t0, "1")));
        l.apply(&lease("node1", "1", ""), t0);
        l.apply(&lease("node2", "5", ""), t0);
        // The API is away for 60 s: nothing changes and nothing expires.
        for t in 1..=60 {
            assert!(!l.tick(t0 + t * S), "nothing flips while stale (t = {t} s)");
        }
        // It returns: our renewal lands and is seen at t0 + 61 s; node2 has not renewed yet.
        l.set_renewed(Some(renewal(t0 + 61 * S, "2")));
        l.apply(&lease("node1", "2", ""), t0 + 61 * S);
        assert!(!l.stale(t0 + 61 * S));
        assert!(!l.tick(t0 + 63 * S), "node2 is not expired 2 s after our view is fresh again");
        assert_eq!(live(&l), [("node1".into(), true), ("node2".into(), true)]);
        // It never renews: a whole duration after the view came back, it expires.
        l.set_renewed(Some(renewal(t0 + 63 * S, "3")));
        l.apply(&lease("node1", "3", ""), t0 + 63 * S);
        l.set_renewed(Some(renewal(t0 + 65 * S, "4")));
        l.apply(&lease("node1", "4", ""), t0 + 65 * S);
        assert!(l.tick(t0 + 65 * S));
        assert_eq!(live(&l), [("node1".into(), true), ("node2".into(), false)]);
    }

    fn cfg(localint: &str) -> AgentConfig {
        AgentConfig::from_local(&purelb_core::api::LBNodeAgentLocal {
            localint: localint.into(),
            extlbint: "kube-lb0".into(),
            sendgarp: true,
        })
        .unwrap()
    }

    fn lan(iface: &str, subnets: &str) -> LanFacts {
        LanFacts { interface: iface.into(), subnets: parse_subnets(subnets).0 }
    }

    #[test]
    fn the_lan_is_kept_when_the_kernel_loses_it_under_the_same_configuration() {
        let c = cfg("default");
        let mut k = KnownLan::default();
        k.update(Ok(lan("eth0", "192.0.2.0/24,2001:db8:0:1::/64")), &c);
        assert!(!k.kept);
        // Link down: no default route.
        k.update(Err("there is no default route".into()), &c);
        assert!(k.kept);
        assert_eq!(k.facts, Some(lan("eth0", "192.0.2.0/24,2001:db8:0:1::/64")));
        // Link up, the IPv6 address flushed by the flap: still kept whole.
        k.update(Ok(lan("eth0", "192.0.2.0/24")), &c);
        assert!(k.kept);
        assert_eq!(k.facts, Some(lan("eth0", "192.0.2.0/24,2001:db8:0:1::/64")));
        // Everything back.
        k.update(Ok(lan("eth0", "192.0.2.0/24,2001:db8:0:1::/64")), &c);
        assert!(!k.kept);
        // A grown LAN or another interface is taken as it is.
        k.update(Ok(lan("eth1", "198.51.100.0/24")), &c);
        assert_eq!(k.facts, Some(lan("eth1", "198.51.100.0/24")));
    }

    #[test]
    fn a_changed_configuration_publishes_what_the_kernel_shows() {
        let mut k = KnownLan::default();
        k.update(Ok(lan("eth0", "192.0.2.0/24")), &cfg("default"));
        k.update(Err("no interface matches localint nomatch.*".into()), &cfg("nomatch.*"));
        assert!(!k.kept);
        assert_eq!(k.facts, Some(LanFacts::default()));
    }

    #[test]
    fn a_released_lease_is_not_live_even_when_frozen() {
        let t0 = Instant::now();
        let mut l = NodeLeases::new("node1", 4 * S);
        let mut free = lease("node2", "9", "");
        if let Some(s) = free.spec.as_mut() {
            s.holder_identity = None;
        }
        l.apply(&free, t0);
        assert_eq!(live(&l), [("node2".into(), false)]);
    }

    #[test]
    fn a_relist_drops_leases_that_are_gone() {
        let t0 = Instant::now();
        let mut l = NodeLeases::new("node1", 4 * S);
        l.apply(&lease("node2", "1", ""), t0);
        l.apply(&lease("node3", "1", ""), t0);
        let fresh = [lease("node3", "1", "")];
        assert!(l.replace_all(fresh.iter(), t0 + S));
        assert_eq!(live(&l), [("node3".into(), true)]);
    }
}
