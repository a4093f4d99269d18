//! The API writes a reconcile decides: the `externalTrafficPolicy: Local` reset by the local winner,
//! and the report (announcing annotations, `purelb.io/Announced` condition) of every Service this node
//! is the reporter of.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use kube::{Resource, ResourceExt};
use purelb_core::allocate::ServiceKey;
use purelb_core::announce::facts;
use purelb_core::announce::report::{self, ServiceReport};
use purelb_core::announce::{NodeFacts, ServiceFacts};
use purelb_core::api::conditions;
use purelb_core::pool::PoolConfig;

use super::Announcer;
use crate::dataplane::DataPlane;
use crate::k8s::ReportWrite;

impl<D: DataPlane> Announcer<D> {
    /// The local winner resets `externalTrafficPolicy: Local` to Cluster (once per Service version,
    /// retried after 30 s if the write did not show up).
    pub(super) fn reset_traffic_policies(&mut self, resets: Vec<(ServiceKey, IpAddr, String)>) {
        let now = Instant::now();
        let mut done = BTreeSet::new();
        for (key, ip, iface) in resets {
            if !done.insert(key.clone()) {
                continue;
            }
            let Some(svc) = self.services.get(&key.namespace, &key.name) else { continue };
            let version = svc.resource_version().unwrap_or_default();
            if self
                .resets
                .get(&key)
                .is_some_and(|(v, at)| *v == version && now.duration_since(*at) < Duration::from_secs(30))
            {
                continue;
            }
            self.resets.insert(key.clone(), (version, now));
            let why = format!(
                "PureLB will reset External Traffic Policy to Cluster: {ip} is a local address, which only one node ({} on {iface}) announces, so Local would drop the traffic for pods on other nodes",
                self.settings.node
            );
            self.parts.writer.reset_traffic_policy(key, svc.object_ref(&()), why);
        }
        self.resets.retain(|k, _| done.contains(k));
    }

    /// Writes the report of every Service this node is the reporter of, when it differs.
    pub(super) fn reports(
        &mut self,
        nodes: &[NodeFacts],
        pools: &[PoolConfig],
        endpoints: &BTreeMap<ServiceKey, BTreeSet<String>>,
        incumbents: &facts::Incumbents,
        extlbint: &str,
    ) {
        let me = self.settings.node.as_str();
        let mut seen = BTreeSet::new();
        for svc in self.services.values() {
            let key = ServiceKey::of(svc);
            let observed = ServiceReport::observed(svc);
            let ours = facts::is_ours(svc);
            if !ours && observed.is_empty() {
                continue;
            }
            let f =
                if ours { facts::service_facts(svc, endpoints, incumbents) } else { ServiceFacts::default() };
            if report::reporter(&f, nodes).as_deref() != Some(me) {
                continue;
            }
            let desired = report::report(&f, nodes, pools, extlbint);
            if desired == observed {
                continue;
            }
            seen.insert(key.clone());
            if self.submitted.get(&key) == Some(&desired) {
                continue;
            }
            self.submitted.insert(key.clone(), desired.clone());
            let previous = svc
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == conditions::ANNOUNCED))
                .cloned();
            self.parts.writer.report(ReportWrite { key, desired, observed, previous });
        }
        // Forget what the Services now show (or what is no longer ours to write).
        self.submitted.retain(|k, _| seen.contains(k));
    }
}
