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
//! - Fail-static: when this agent has not seen its own Lease change for a whole duration, its watch (or
//!   the API server) is what is stale, not the other nodes: their verdicts are frozen instead of all
//!   expiring at once, which would make this node take over every local address. Its own liveness still
//!   follows its renewals, so an agent cut off from the API server withdraws its addresses within one
//!   Lease duration — which is also when the others take them over.

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
    /// When our last successful renewal was sent.
    renewed: Option<Instant>,
}

impl NodeLeases {
    /// No Lease seen yet; `me` is this node, `own_duration` its Lease duration.
    pub fn new(me: &str, own_duration: Duration) -> Self {
        Self { me: me.to_string(), own_duration, entries: BTreeMap::new(), own_seen: None, renewed: None }
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
        let previous = self.entries.get(&node);
        let (observation, verdict) = LeaseObservation::observe(
            previous.map(|e| &e.observation),
            &version,
            holder.as_deref(),
            duration,
            now,
        );
        let live = if node == self.me {
            self.self_live(now)
        } else {
            judge(verdict, previous.is_some_and(|e| e.live), self.watch_fresh(now))
        };
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

    /// Records when our last successful renewal was sent.
    pub fn set_renewed(&mut self, at: Option<Instant>) {
        self.renewed = at;
    }

    /// Whether this node's own Lease has been seen.
    pub fn has_own(&self) -> bool {
        self.entries.contains_key(&self.me)
    }

    /// Whether our watch showed our own Lease change within its duration (see the module header).
    pub fn watch_fresh(&self, now: Instant) -> bool {
        self.own_seen.as_ref().is_some_and(|(_, t)| now.saturating_duration_since(*t) < self.own_duration)
    }

    fn self_live(&self, now: Instant) -> bool {
        self.renewed.is_some_and(|t| now.saturating_duration_since(t) < self.own_duration)
    }

    /// Re-judges every Lease at `now`. Returns whether some node's liveness flipped.
    pub fn tick(&mut self, now: Instant) -> bool {
        let fresh = self.watch_fresh(now);
        let self_live = self.self_live(now);
        let mut flipped = false;
        for (node, e) in self.entries.iter_mut() {
            let (observation, verdict) = LeaseObservation::observe(
                Some(&e.observation),
                &e.version,
                e.holder.as_deref(),
                e.duration,
                now,
            );
            e.observation = observation;
            let live = if *node == self.me { self_live } else { judge(verdict, e.live, fresh) };
            if live != e.live {
                tracing::info!(%node, live, "node liveness changed");
                e.live = live;
                flipped = true;
            }
        }
        flipped
    }

    /// The facts of every node with a Lease; `excluded` tells which nodes carry the exclude label.
    pub fn facts(&self, excluded: impl Fn(&str) -> bool) -> Vec<NodeFacts> {
        self.entries
            .iter()
            .map(|(name, e)| NodeFacts {
                name: name.clone(),
                subnets: e.subnets.clone(),
                interface: e.interface.clone(),
                live: e.live,
                excluded: excluded(name),
            })
            .collect()
    }
}

/// Another node's liveness: held is live, released is not, expired is not — unless our own view is
/// stale (`fresh` false), when the previous verdict stands.
fn judge(verdict: LeaseVerdict, was_live: bool, fresh: bool) -> bool {
    match verdict {
        LeaseVerdict::Held => true,
        LeaseVerdict::Free => false,
        LeaseVerdict::Expired => was_live && !fresh,
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
    /// When the last successful renewal was sent.
    pub renewed: watch::Sender<Option<Instant>>,
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
        let mut lan: Option<LanFacts> = None;
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
                Ok(Ok(facts)) => {
                    if lan.as_ref() != Some(&facts) {
                        tracing::info!(interface = %facts.interface, subnets = %format_subnets(&facts.subnets), "LAN interface");
                    }
                    lan = Some(facts);
                }
                Ok(Err(why)) => {
                    if lan.as_ref().is_none_or(|l| !l.interface.is_empty()) {
                        tracing::warn!(%why, localint = %config.localint, "no usable LAN interface: only non-local addresses will be announced");
                    }
                    lan = Some(LanFacts::default());
                }
                // The kernel did not answer: that says nothing about the LAN, so the Lease keeps what it
                // said (publishing "no LAN" would move every local address off this node and back).
                Err(e) => {
                    self.metrics.error("lan");
                    tracing::warn!(error = %e, "could not read the LAN interface; the Lease keeps the last one");
                }
            }
            // Nothing is known of the LAN yet: try again shortly rather than publish a wrong one.
            let Some(known) = lan.as_ref() else {
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
                Ok(Ok(_)) => {
                    self.metrics.renewal(true);
                    let _ = self.renewed.send(Some(sent));
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
                _ = stop.wait_for(|s| *s) => return,
            }
        }
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
        l.facts(|_| false).into_iter().map(|f| (f.name, f.live)).collect()
    }

    const S: Duration = Duration::from_secs(1);

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
        let f = l.facts(|n| n == "node2");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].subnets, parse_subnets("192.0.2.0/24").0);
        assert_eq!(f[0].interface, "eth0");
        assert!(f[0].live && f[0].excluded);
        // The same Lease again changes nothing.
        assert!(!l.apply(&lease("node2", "1", "192.0.2.0/24"), t0 + S));
        assert!(l.remove("purelb-node-node2"));
        assert!(l.facts(|_| false).is_empty(), "a node without a Lease is not live: it has no facts");
    }

    #[test]
    fn another_node_expires_when_unchanged_for_its_duration_without_events() {
        let t0 = Instant::now();
        let mut l = NodeLeases::new("node1", 4 * S);
        l.set_renewed(Some(t0));
        l.apply(&lease("node1", "1", ""), t0);
        l.apply(&lease("node2", "5", ""), t0);
        // Our own Lease keeps changing: our view is fresh.
        l.set_renewed(Some(t0 + 2 * S));
        l.apply(&lease("node1", "2", ""), t0 + 2 * S);
        assert!(!l.tick(t0 + 3 * S));
        l.set_renewed(Some(t0 + 4 * S));
        l.apply(&lease("node1", "3", ""), t0 + 4 * S);
        assert!(l.tick(t0 + 4 * S), "node2 unchanged for 4 s");
        assert_eq!(live(&l), [("node1".into(), true), ("node2".into(), false)]);
        // A renewal brings it back.
        assert!(l.apply(&lease("node2", "6", ""), t0 + 5 * S));
        assert_eq!(live(&l), [("node1".into(), true), ("node2".into(), true)]);
    }

    #[test]
    fn verdicts_freeze_while_our_own_lease_is_not_seen_changing() {
        let t0 = Instant::now();
        let mut l = NodeLeases::new("node1", 4 * S);
        l.set_renewed(Some(t0));
        l.apply(&lease("node1", "1", ""), t0);
        l.apply(&lease("node2", "5", ""), t0);
        // The watch is stuck: neither Lease changes, though our renewals succeed.
        l.set_renewed(Some(t0 + 4 * S));
        l.tick(t0 + 5 * S);
        assert_eq!(live(&l), [("node1".into(), true), ("node2".into(), true)]);
    }

    #[test]
    fn this_node_is_live_while_its_renewals_succeed() {
        let t0 = Instant::now();
        let mut l = NodeLeases::new("node1", 4 * S);
        l.apply(&lease("node1", "1", ""), t0);
        assert_eq!(live(&l), [("node1".into(), false)], "no renewal yet");
        l.set_renewed(Some(t0));
        assert!(l.tick(t0 + S));
        assert!(l.has_own());
        assert!(l.tick(t0 + 4 * S), "the last renewal is a whole duration old");
        assert_eq!(live(&l), [("node1".into(), false)]);
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
