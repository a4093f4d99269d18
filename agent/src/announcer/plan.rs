//! One reconcile: re-plan the touched Services (`index`) with core's `node_view` — the is-ours rule,
//! `plan_for_node`, routed placements that overlap a connected subnet refused, yielded local addresses
//! left out, and this node's report when it is the reporter — fold each into the desired set, then
//! apply the kernel diff (only when a placement changed, or drift must be looked for), the policy
//! resets and the reports.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Instant;

use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use purelb_core::allocate::ServiceKey;
use purelb_core::announce::facts;
use purelb_core::announce::report::ServiceReport;
use purelb_core::announce::view::{NodeContext, node_view};
use purelb_core::announce::{AddressPlan, NodeFacts, Placement, change};
use purelb_core::pool::PoolConfig;

use super::Announcer;
use super::apply::ApplyError;
use super::index::Pending;
use super::reports::RESET_RETRY;
use crate::config;
use crate::dataplane::DataPlane;

impl<D: DataPlane> Announcer<D> {
    /// One reconcile; returns what failed.
    pub(super) async fn try_reconcile(&mut self) -> Vec<ApplyError> {
        let started = Instant::now();
        let me = self.settings.node.clone();
        let named = |keep: fn(&Node) -> bool| -> BTreeSet<String> {
            self.nodes.values().filter(|n| keep(n)).map(|n| n.name_any()).collect()
        };
        let (excluded, shutting_down) = (named(facts::node_excluded), named(facts::node_shutting_down));
        let nodes = self.tracker.facts(|n| excluded.contains(n), |n| shutting_down.contains(n));
        let pools = facts::pools(self.groups.values());
        let extlbint = self.config.extlbint.clone();
        match &self.inputs {
            Some((n, p, e)) if *p == pools && *e == extlbint => {
                if *n != nodes {
                    // Only other nodes changed (a Lease expired, was deleted or came back): re-plan the
                    // Services whose view here the change can reach, not every Service.
                    match self.reachable(&me, n, &nodes, &pools) {
                        Some(keys) => {
                            tracing::debug!(
                                services = keys.len(),
                                "other nodes changed: re-planning what they reach"
                            );
                            self.pending.services.extend(keys);
                        }
                        None => self.pending.all = true,
                    }
                    self.inputs = Some((nodes.clone(), pools.clone(), extlbint.clone()));
                }
            }
            _ => {
                self.pending.all = true;
                self.inputs = Some((nodes.clone(), pools.clone(), extlbint.clone()));
            }
        }
        if self.pending.all || self.pending.connected {
            match self.parts.dataplane.links().await {
                Ok(links) => {
                    let connected: Vec<_> =
                        links.iter().filter(|l| l.name != extlbint).flat_map(config::lan_subnets).collect();
                    if self.connected.as_ref() != Some(&connected) {
                        self.pending.all = true;
                        self.connected = Some(connected);
                    }
                }
                Err(e) => {
                    self.parts.metrics.error("links");
                    return vec![ApplyError::ConnectedLinks(e)];
                }
            }
        }
        let yielded: BTreeSet<IpAddr> = self.yielded.keys().copied().collect();
        let flipped: Vec<IpAddr> = yielded.symmetric_difference(&self.yielded_planned).copied().collect();
        self.pending.services.extend(self.index.sharers(&flipped));
        self.yielded_planned.clone_from(&yielded);
        let now = Instant::now();
        let overdue = self.resets.iter().filter(|(_, (_, at))| now.duration_since(*at) >= RESET_RETRY);
        let overdue: Vec<ServiceKey> = overdue.map(|(k, _)| k.clone()).collect();
        self.pending.services.extend(overdue);

        let pending = std::mem::replace(
            &mut self.pending,
            Pending { all: false, services: BTreeSet::new(), kernel: false, connected: false },
        );
        let todo = self.touched(&pending);
        let ips: BTreeSet<IpAddr> = todo.iter().flat_map(|k| self.index.addresses(k)).copied().collect();
        let incumbents = self.index.incumbents(&ips, &self.services);
        let connected = self.connected.clone();
        let ctx = NodeContext {
            me: &me,
            nodes: &nodes,
            pools: &pools,
            extlbint: &extlbint,
            connected: connected.as_deref(),
            yielded: &yielded,
        };
        for key in &todo {
            let Some(svc) = self.services.get(&key.namespace, &key.name) else {
                self.desired.set_service(key, &[]);
                self.submitted.remove(key);
                self.reporting.remove(key);
                self.resets.remove(key);
                self.refused.remove(key);
                continue;
            };
            let view = node_view(&ctx, svc, &self.index.endpoints, &incumbents);
            self.note_refused(key, &view.plans);
            self.desired.set_service(key, &view.plans);
            let reset = view.plans.iter().find_map(|p| match (p.reset_traffic_policy, &p.placement) {
                (true, Placement::Local { interface, .. }) => Some((p.address, interface.clone())),
                _ => None,
            });
            self.reset_traffic_policy(key, reset);
            if view.report.is_some() {
                self.reporting.insert(key.clone());
            } else {
                self.reporting.remove(key);
            }
            self.report(key, view.report);
        }
        let planned = Instant::now();

        let changed = self.desired.take_changed();
        let mut errors = Vec::new();
        if changed || pending.kernel || self.reannounce {
            let desired = std::mem::take(&mut self.desired);
            errors = match self.apply_addresses(&desired).await {
                Ok(applied) => {
                    self.after_apply(&me, &desired, &applied.in_place, &applied.added).await;
                    applied.failed
                }
                // Nothing is known of the kernel: keep what was held and announced as it was.
                Err(e) => vec![e],
            };
            self.desired = desired;
        }
        if !errors.is_empty() {
            self.pending.kernel = true;
        }
        tracing::debug!(
            services = self.services.len(),
            replanned = todo.len(),
            all = pending.all,
            addresses = self.desired.targets().len(),
            plan = ?planned.duration_since(started),
            kernel = ?planned.elapsed(),
            "reconcile"
        );
        errors
    }

    /// The Services whose view on this node (placements, and the report it shows as their reporter) a
    /// change of the other nodes (`before` to `after`) can reach (core's `change::view_may_change`), with
    /// those sharing their addresses; None when this node itself changed (everything can move).
    fn reachable(
        &self,
        me: &str,
        before: &[NodeFacts],
        after: &[NodeFacts],
        pools: &[PoolConfig],
    ) -> Option<BTreeSet<ServiceKey>> {
        let changed = change::changed_nodes(before, after);
        if changed.iter().any(|c| c.name == me) {
            return None;
        }
        let this = after.iter().find(|n| n.name == me)?;
        let ips: BTreeSet<IpAddr> = self.index.all_addresses().copied().collect();
        let incumbents = self.index.incumbents(&ips, &self.services);
        let mut reached = BTreeSet::new();
        for key in self.index.known() {
            let Some(svc) = self.services.get(&key.namespace, &key.name) else {
                reached.insert(key.clone());
                continue;
            };
            let f = facts::service_facts(svc, &self.index.endpoints, &incumbents);
            let was_reporter = self.reporting.contains(key);
            if change::view_may_change(this, &f, was_reporter, &changed, before, after, pools) {
                reached.insert(key.clone());
            }
        }
        // Not ours (or without addresses) but still showing a report: whoever reports it clears it.
        for (id, svc) in self.services.iter() {
            let key = ServiceKey::new(id.0.clone(), id.1.clone());
            if !reached.contains(&key)
                && self.index.addresses(&key).is_empty()
                && !ServiceReport::observed(svc).is_empty()
            {
                reached.insert(key);
            }
        }
        let sharers = self.index.sharers(reached.iter().flat_map(|k| self.index.addresses(k)));
        reached.extend(sharers);
        Some(reached)
    }

    /// The Services to re-plan: every one (`all`), or the touched ones and those sharing an address
    /// with them (before or after the change); their address index is brought up to date on the way.
    fn touched(&mut self, pending: &Pending) -> BTreeSet<ServiceKey> {
        let mut todo: BTreeSet<ServiceKey> = if pending.all {
            let cached = self.services.values().map(ServiceKey::of);
            cached.chain(self.index.known().cloned()).chain(self.submitted.keys().cloned()).collect()
        } else {
            pending.services.clone()
        };
        let mut sharers = BTreeSet::new();
        for key in &todo {
            let now = self.services.get(&key.namespace, &key.name).filter(facts::is_ours);
            let now = now.map(facts::ingress_ips).unwrap_or_default();
            sharers.extend(self.index.sharers(self.index.addresses(key)));
            sharers.extend(self.index.sharers(&now));
            self.index.set_addresses(key, now);
        }
        todo.extend(sharers);
        todo
    }

    /// Logs, once each, the routed placements of `key` refused for overlapping a LAN.
    fn note_refused(&mut self, key: &ServiceKey, plans: &[AddressPlan]) {
        let mut refused = BTreeSet::new();
        for plan in plans {
            if let Placement::Absent = plan.placement
                && let Some(why) = plan.reasons.last().filter(|r| r.starts_with("refused:"))
            {
                if !self.refused.get(key).is_some_and(|r| r.contains(&plan.address)) {
                    tracing::warn!(service = %key, ip = %plan.address, %why, "not announcing");
                }
                refused.insert(plan.address);
            }
        }
        if refused.is_empty() {
            self.refused.remove(key);
        } else {
            self.refused.insert(key.clone(), refused);
        }
    }
}
