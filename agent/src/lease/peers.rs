//! The other nodes' Leases as this agent judges them ([`NodeLeases`]): live while they keep changing
//! on this process's monotonic clock, expired only when proven so, frozen while this agent's own view
//! is stale (the rules are in the parent module's header).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::ResourceExt;
use purelb_core::announce::NodeFacts;
use purelb_core::lease::{LeaseObservation, LeaseVerdict};
use purelb_core::pool::Subnet;

use super::{INTERFACE_ANNOTATION, LEASE_PREFIX, Renewal, SUBNETS_ANNOTATION, parse_subnets};

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

#[cfg(test)]
mod tests;
