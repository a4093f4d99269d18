//! What the agent does on SIGTERM, after the loop stopped and the node Lease was given up.
//!
//! - Local addresses are handed over make before break ([`Handover`]): the other nodes elect the next
//!   holder of each as soon as the Lease is gone, and this node keeps the address until it hears that
//!   node's gratuitous ARP / NA (at most `--handover-timeout-ms`). The neighbours never see it
//!   unanswered.
//! - Routed addresses (on `kube-lb0`) stay when the agent is only restarting ([`Departure`]): the node
//!   keeps carrying them through kube-proxy and the next agent adopts them, so a rolling update never
//!   withdraws a route (each withdrawal and re-announcement rehashes the router's ECMP and resets the
//!   connections it moves, and upstream routers may dampen a flapping prefix). They are withdrawn when
//!   PureLB is being uninstalled: the agent's DaemonSet is gone or being deleted. An API server that
//!   does not answer is no evidence of an uninstall: the addresses stay, and an agent that starts
//!   later removes whatever is no longer wanted.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::DaemonSet;
use kube::Api;
use tokio::sync::mpsc;

pub use purelb_core::announce::departure::{Departure, ReadFailure, departure};

use crate::conflict::Sighting;
use crate::netlink::{Netlink, NetlinkError};

// === Handover ===

/// The local addresses a stopping agent still holds, and its conflict listeners on their LAN
/// interfaces, which hear the next holders' announcements.
pub struct Handover {
    local: BTreeSet<IpAddr>,
    pending: BTreeSet<IpAddr>,
    sighted: mpsc::Receiver<Sighting>,
    listeners: BTreeMap<String, tokio::task::JoinHandle<()>>,
}

impl Handover {
    pub fn new(
        local: BTreeSet<IpAddr>,
        sighted: mpsc::Receiver<Sighting>,
        listeners: BTreeMap<String, tokio::task::JoinHandle<()>>,
    ) -> Self {
        Self { pending: local.clone(), local, sighted, listeners }
    }

    /// The local addresses held when the loop stopped.
    pub fn local(&self) -> &BTreeSet<IpAddr> {
        &self.local
    }

    /// Waits until another MAC announced each local address, or `timeout`; returns the addresses
    /// nobody claimed in time (no other node can hold them, or the others cannot hear the API).
    pub async fn wait(&mut self, timeout: Duration) -> BTreeSet<IpAddr> {
        let deadline = tokio::time::Instant::now() + timeout;
        let began = Instant::now();
        while !self.pending.is_empty() {
            match tokio::time::timeout_at(deadline, self.sighted.recv()).await {
                Ok(Some(s)) => {
                    if self.pending.remove(&s.ip) {
                        tracing::info!(
                            ip = %s.ip,
                            mac = %crate::announcer::format_mac(&s.mac),
                            interface = %s.interface,
                            after = ?began.elapsed(),
                            "handed over: another node announces it"
                        );
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
        for listener in self.listeners.values() {
            listener.abort();
        }
        self.pending.clone()
    }
}

// === Departure ===

// The judgement is `purelb_core::announce::departure`; reading the DaemonSet is here.

/// Reads the agent's DaemonSet (at most `timeout`) and judges it.
pub async fn read_departure(api: &Api<DaemonSet>, name: &str, timeout: Duration) -> Departure {
    let read = match tokio::time::timeout(timeout, api.get_opt(name)).await {
        Ok(Ok(ds)) => Ok(ds),
        Ok(Err(kube::Error::Api(status))) => {
            Err(ReadFailure::Refused { code: status.code, message: status.message.clone() })
        }
        Ok(Err(e)) => Err(ReadFailure::NoAnswer(e.to_string())),
        Err(_) => Err(ReadFailure::NoAnswer(format!("no answer within {timeout:?}"))),
    };
    departure(name, read)
}

/// Deletes the addresses the agent owns: all of them, or (`only`) just those. Returns how many were
/// deleted.
pub async fn withdraw(netlink: &Netlink, only: Option<&BTreeSet<IpAddr>>) -> Result<usize, NetlinkError> {
    let owned: Vec<_> = netlink
        .owned()
        .await?
        .into_iter()
        .filter(|o| only.is_none_or(|set| set.contains(&o.address)))
        .collect();
    let targets: Vec<(u32, IpAddr, u8)> = owned.iter().map(|o| (o.index, o.address, o.prefix_len)).collect();
    let mut n = 0;
    for (o, result) in owned.iter().zip(netlink.delete_many(&targets).await?) {
        match result {
            Ok(()) => {
                n += 1;
                tracing::info!(ip = %o.address, interface = %o.interface, "withdrew address");
            }
            Err(e) => {
                tracing::warn!(ip = %o.address, interface = %o.interface, error = %e, "could not withdraw")
            }
        }
    }
    Ok(n)
}
