//! One reconcile: the desired set of this node (∪ of `plan_for_node` over our Services, routed
//! placements that overlap a LAN refused, yielded local addresses left out), then the kernel apply,
//! the policy resets and the reports.

use std::collections::BTreeSet;
use std::time::Instant;

use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use purelb_core::allocate::ServiceKey;
use purelb_core::announce::facts;
use purelb_core::announce::{Placement, plan_for_node, refuse_connected};

use super::Announcer;
use crate::config::{self};
use crate::dataplane::DataPlane;
use crate::desired::DesiredSet;

impl<D: DataPlane> Announcer<D> {
    /// One reconcile; returns what failed.
    pub(super) async fn try_reconcile(&mut self) -> Vec<String> {
        let started = Instant::now();
        let me = self.settings.node.clone();
        let named = |keep: fn(&Node) -> bool| -> BTreeSet<String> {
            self.nodes.values().filter(|n| keep(n)).map(|n| n.name_any()).collect()
        };
        let (excluded, shutting_down) = (named(facts::node_excluded), named(facts::node_shutting_down));
        let nodes = self.tracker.facts(|n| excluded.contains(n), |n| shutting_down.contains(n));
        let pools = facts::pools(self.groups.values());
        let endpoints = facts::endpoint_nodes(self.slices.values());
        let extlbint = self.config.extlbint.clone();

        let incumbents = facts::incumbents(self.services.values());
        let mut plans = Vec::new();
        for svc in self.services.values().filter(|s| facts::is_ours(s)) {
            let key = ServiceKey::of(svc);
            let f = facts::service_facts(svc, &endpoints, &incumbents);
            for plan in plan_for_node(&me, &f, &nodes, &pools, &extlbint) {
                plans.push((key.clone(), plan));
            }
        }
        let connected = if plans.iter().any(|(_, p)| matches!(p.placement, Placement::NonLocal { .. })) {
            match self.parts.dataplane.links().await {
                Ok(links) => Some(
                    links
                        .iter()
                        .filter(|l| l.name != extlbint)
                        .flat_map(config::lan_subnets)
                        .collect::<Vec<_>>(),
                ),
                Err(e) => {
                    self.parts.metrics.error("links");
                    return vec![format!("listing links for the connected subnets: {e}")];
                }
            }
        } else {
            None
        };
        let mut desired = DesiredSet::default();
        let mut resets = Vec::new();
        let mut refused = BTreeSet::new();
        for (key, mut plan) in plans {
            if let Some(connected) = &connected {
                plan = refuse_connected(plan, connected);
            }
            if matches!(plan.placement, Placement::Local { .. }) && self.yielded.contains_key(&plan.address) {
                plan.reasons.push("another node announced it (gratuitous ARP / NA): yielded".to_string());
                plan.placement = Placement::Absent;
            }
            if let Placement::Absent = plan.placement
                && let Some(why) = plan.reasons.last().filter(|r| r.starts_with("refused:"))
            {
                if !self.refused.contains(&(key.clone(), plan.address)) {
                    tracing::warn!(service = %key, ip = %plan.address, %why, "not announcing");
                }
                refused.insert((key.clone(), plan.address));
            }
            desired.add(&key, &plan);
            if let (true, Placement::Local { interface, .. }) = (plan.reset_traffic_policy, &plan.placement) {
                resets.push((key.clone(), plan.address, interface.clone()));
            }
        }

        self.refused = refused;
        self.desired_ips = desired.targets().keys().copied().collect();
        let planned = Instant::now();
        let errors = match self.apply_addresses(&desired).await {
            Ok((in_place, added, errors)) => {
                self.after_apply(&me, &desired, &in_place, &added).await;
                errors
            }
            // Nothing is known of the kernel: keep what was held and announced as it was.
            Err(e) => vec![e],
        };
        let applied = Instant::now();
        self.reset_traffic_policies(resets);
        self.reports(&nodes, &pools, &endpoints, &incumbents, &extlbint);
        tracing::debug!(
            services = self.services.len(),
            addresses = self.desired_ips.len(),
            plan = ?planned.duration_since(started),
            kernel = ?applied.duration_since(planned),
            reports = ?applied.elapsed(),
            "reconcile"
        );
        errors
    }
}
