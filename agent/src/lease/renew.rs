//! This node's Lease: [`Renewer`] writes it every `--lease-renew-ms` (and at once when the
//! configuration changes or another Lease needs proof), naming the LAN that [`KnownLan`] keeps: the
//! kernel's answer, except that under an unchanged configuration the LAN never shrinks.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use tokio::sync::watch;

use super::{
    INTERFACE_ANNOTATION, LanFacts, MANAGER, Renewal, SUBNETS_ANNOTATION, format_subnets, lease_body,
    lease_name, parse_subnets,
};
use crate::config::{self, AgentConfig, NoLan};
use crate::metrics::Metrics;
use crate::netlink::{Netlink, NetlinkError};

/// How soon the renewer asks the kernel again when it has never read the LAN.
const LAN_RETRY: Duration = Duration::from_millis(250);

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
    pub fn update(&mut self, answer: Result<LanFacts, NoLan>, config: &AgentConfig) {
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
    fn log_change(&self, before: &KnownLan, config: &AgentConfig, why: Option<&NoLan>) {
        let why = why.map(ToString::to_string).unwrap_or_default();
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

/// What the renewer learnt of the LAN from the kernel.
enum LanReading {
    /// The kernel answered: the LAN, or why no interface is usable.
    Read(Result<LanFacts, NoLan>),
    /// The kernel could not be read: that says nothing about the LAN.
    Unreadable(NetlinkError),
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
            match self.read_lan(&config).await {
                LanReading::Read(answer) => {
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
                        lan.log_change(&before, &config, why.as_ref());
                        self.metrics.lan_kept.set(i64::from(lan.kept));
                    }
                }
                // The kernel did not answer: that says nothing about the LAN, so the Lease keeps what it
                // said (publishing "no LAN" would move every local address off this node and back).
                LanReading::Unreadable(e) => {
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

    /// What the kernel shows of the LAN `config` selects.
    async fn read_lan(&self, config: &AgentConfig) -> LanReading {
        let links = match self.netlink.links().await {
            Ok(links) => links,
            Err(e) => return LanReading::Unreadable(e),
        };
        let default_route = match config.localint {
            config::LocalInt::DefaultRoute => match self.netlink.default_route_interface().await {
                Ok(route) => route,
                Err(e) => return LanReading::Unreadable(e),
            },
            config::LocalInt::Pattern { .. } => None,
        };
        LanReading::Read(
            config::lan_interface(config, &links, default_route.as_deref())
                .map(|link| LanFacts { interface: link.name.clone(), subnets: config::lan_subnets(link) }),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
        k.update(Err(NoLan::NoDefaultRoute), &c);
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
        k.update(Err(NoLan::NoMatch("^(?:nomatch.*)$".into())), &cfg("nomatch.*"));
        assert!(!k.kept);
        assert_eq!(k.facts, Some(LanFacts::default()));
    }
}
