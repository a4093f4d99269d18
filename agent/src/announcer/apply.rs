//! The kernel side of a reconcile, through the data plane: delete then add our (tagged) addresses
//! ([`Applied`], or the [`ApplyError`]s of what failed), GARP/NA for every local take-up, the held-address
//! gauges and one event per (Service, address) take-up.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use purelb_core::api::events;

use super::Announcer;
use crate::dataplane::DataPlane;
use crate::desired::{DesiredSet, Kind, diff, takeovers};
use crate::netlink::NetlinkError;

/// What one apply did.
#[derive(Debug, Default)]
pub(super) struct Applied {
    /// The desired addresses now in place.
    pub in_place: BTreeSet<IpAddr>,
    /// Those this apply added.
    pub added: BTreeSet<IpAddr>,
    /// What failed (the rest went on).
    pub failed: Vec<ApplyError>,
}

/// One step of a reconcile's kernel work that failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum ApplyError {
    #[error("listing links for the connected subnets: {0}")]
    ConnectedLinks(#[source] NetlinkError),
    #[error("listing our addresses: {0}")]
    ListOwned(#[source] NetlinkError),
    #[error("listing addresses before deleting: {0}")]
    ListBeforeDelete(#[source] NetlinkError),
    #[error("deleting {ip}/{prefix_len} from {interface}: {source}")]
    Delete { ip: IpAddr, prefix_len: u8, interface: String, source: NetlinkError },
    #[error("listing links: {0}")]
    Links(#[source] NetlinkError),
    #[error("adding {ip}: the LAN interface {interface} is not there")]
    NoLan { ip: IpAddr, interface: String },
    #[error("adding {ip}: interface {interface}: {source}")]
    ExtLb { ip: IpAddr, interface: String, source: Arc<NetlinkError> },
    #[error("listing addresses before adding: {0}")]
    ListBeforeAdd(#[source] NetlinkError),
    #[error("adding {ip}/{prefix_len} to {interface}: {source}")]
    Add { ip: IpAddr, prefix_len: u8, interface: String, source: NetlinkError },
}

impl<D: DataPlane> Announcer<D> {
    /// GARP/NA for takeovers, the held-address gauges and one event per take-up.
    pub(super) async fn after_apply(
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
        for (key, ip, kind) in self.announced.update(desired, in_place) {
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
            self.parts.writer.event(svc.object_ref(), false, reason, message);
        }
    }

    /// Deletes, then adds; returns what is in place and what failed (Err: our addresses could not even
    /// be listed).
    pub(super) async fn apply_addresses(&self, desired: &DesiredSet) -> Result<Applied, ApplyError> {
        let netlink = &self.parts.dataplane;
        let metrics = &self.parts.metrics;
        let mut errors = Vec::new();
        let owned = match netlink.owned().await {
            Ok(o) => o,
            Err(e) => {
                metrics.error("owned");
                return Err(ApplyError::ListOwned(e));
            }
        };
        let d = diff(desired.targets(), &owned);
        let targets: Vec<(u32, IpAddr, u8)> =
            d.delete.iter().map(|o| (o.index, o.address, o.prefix_len)).collect();
        // Nothing to delete costs no listing.
        let deleting = if targets.is_empty() { Ok(Vec::new()) } else { netlink.delete_many(&targets).await };
        let results = match deleting {
            Ok(r) => r,
            Err(e) => {
                metrics.error("owned");
                return Err(ApplyError::ListBeforeDelete(e));
            }
        };
        for (o, result) in d.delete.iter().zip(results) {
            match result {
                Ok(()) => {
                    tracing::info!(ip = %o.address, interface = %o.interface, prefix_len = o.prefix_len, "withdrew address")
                }
                Err(e) => {
                    metrics.error("delete");
                    errors.push(ApplyError::Delete {
                        ip: o.address,
                        prefix_len: o.prefix_len,
                        interface: o.interface.clone(),
                        source: e,
                    });
                }
            }
        }
        let mut in_place = d.kept.clone();
        let mut added = BTreeSet::new();
        if d.add.is_empty() {
            return Ok(Applied { in_place, added, failed: errors });
        }
        let links = if d.add.iter().any(|(_, t)| t.kind == Kind::Local) {
            match netlink.links().await {
                Ok(l) => l,
                Err(e) => {
                    metrics.error("links");
                    errors.push(ApplyError::Links(e));
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        let mut extlb: BTreeMap<String, Result<u32, Arc<NetlinkError>>> = BTreeMap::new();
        let mut adds = Vec::with_capacity(d.add.len());
        for (ip, t) in &d.add {
            let index = match t.kind {
                Kind::Local => match links.iter().find(|l| l.name == t.interface) {
                    Some(l) => l.index,
                    None => {
                        errors.push(ApplyError::NoLan { ip: *ip, interface: t.interface.clone() });
                        continue;
                    }
                },
                Kind::NonLocal => {
                    if !extlb.contains_key(&t.interface) {
                        let r = netlink.ensure_extlb(&t.interface).await.map_err(Arc::new);
                        if r.is_err() {
                            metrics.error("extlb");
                        }
                        extlb.insert(t.interface.clone(), r);
                    }
                    match extlb.get(&t.interface) {
                        Some(Ok(index)) => *index,
                        Some(Err(e)) => {
                            errors.push(ApplyError::ExtLb {
                                ip: *ip,
                                interface: t.interface.clone(),
                                source: e.clone(),
                            });
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
                errors.push(ApplyError::ListBeforeAdd(e));
                return Ok(Applied { in_place, added, failed: errors });
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
                    errors.push(ApplyError::Add {
                        ip: *ip,
                        prefix_len: t.prefix_len,
                        interface: t.interface.clone(),
                        source: e,
                    });
                }
            }
        }
        Ok(Applied { in_place, added, failed: errors })
    }

    /// Sends GARP / unsolicited NA for each local address this node just took up.
    pub(super) async fn announce_takeovers(&self, desired: &DesiredSet, ips: &[IpAddr]) {
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
    pub(super) fn garp(&self, interface: String, mac: [u8; 6], ip: IpAddr) {
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
}
