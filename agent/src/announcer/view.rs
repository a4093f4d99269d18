//! Fail-static and address conflicts: following this agent's view of the API (entering and leaving
//! fail-static, with its log lines, metrics and event), yielding a local address another MAC announces
//! while the view is stale, and the conflict listeners on the LAN interfaces.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Instant, SystemTime};

use futures::StreamExt;
use kube::Resource;
use purelb_core::api::events;

use super::{Announcer, CONTEST_MEMORY, format_mac};
use crate::conflict::Sighting;
use crate::dataplane::DataPlane;
use crate::desired::DesiredSet;
use crate::metrics::ConflictAction;

impl<D: DataPlane> Announcer<D> {
    /// Another MAC announces `sighting.ip`, an address this node holds as a local one. With a stale
    /// view that is another node's takeover (positive evidence this agent cannot get from the API), so
    /// the address is yielded at once. With a fresh view the election (which the other nodes compute
    /// alike) decides: the sighting is a moment of two holders while views converge, and yielding on
    /// it would let two nodes yield to each other and leave the address on none; it is remembered in
    /// case the view turns stale right after (the other node saw this one's Lease expire first).
    pub(super) fn on_sighting(&mut self, sighting: Sighting) {
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

    pub(super) fn yield_address(&mut self, ip: IpAddr, now: Instant) {
        self.contested.remove(&ip);
        self.yielded.insert(ip, now);
        self.parts.metrics.conflict(ConflictAction::Yielded);
        self.dirty = true;
        self.not_before = now;
    }

    /// Follows this agent's view of the API: logs and exports entering and leaving fail-static,
    /// records the event on leaving it, and lets yields lapse once the view is fresh.
    pub(super) fn follow_view(&mut self, now: Instant) {
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
    pub(super) async fn listen_for_conflicts(&mut self, desired: &DesiredSet) {
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
}
