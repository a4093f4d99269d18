//! The API writes a reconcile decides: the `externalTrafficPolicy: Local` reset by the local winner,
//! and the report (announcing annotations, `purelb.io/Announced` condition) of every Service this node
//! is the reporter of.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use purelb_core::allocate::ServiceKey;
use purelb_core::announce::report::ServiceReport;
use purelb_core::api::conditions;
use purelb_core::service::ServiceFields;

use super::Announcer;
use crate::dataplane::DataPlane;
use crate::k8s::ReportWrite;

/// How long a policy reset may take to show before it is written again.
pub(super) const RESET_RETRY: Duration = Duration::from_secs(30);

impl<D: DataPlane> Announcer<D> {
    /// The local winner resets `externalTrafficPolicy: Local` to Cluster (once per Service version,
    /// written again after 30 s if it did not show up); `reset` is the local address and its interface
    /// when `key` needs it.
    pub(super) fn reset_traffic_policy(&mut self, key: &ServiceKey, reset: Option<(IpAddr, String)>) {
        let (Some((ip, iface)), Some(svc)) = (reset, self.services.get(&key.namespace, &key.name)) else {
            self.resets.remove(key);
            return;
        };
        let now = Instant::now();
        let version = svc.resource_version().unwrap_or_default();
        if self.resets.get(key).is_some_and(|(v, at)| *v == version && now.duration_since(*at) < RESET_RETRY)
        {
            return;
        }
        self.resets.insert(key.clone(), (version.to_string(), now));
        let why = format!(
            "PureLB will reset External Traffic Policy to Cluster: {ip} is a local address, which only one node ({} on {iface}) announces, so Local would drop the traffic for pods on other nodes",
            self.settings.node
        );
        self.parts.writer.reset_traffic_policy(key.clone(), svc.object_ref(), why);
    }

    /// Writes `desired`, the report this node must see on `key` as its reporter, when the Service
    /// shows something else and it was not already submitted.
    pub(super) fn report(&mut self, key: &ServiceKey, desired: Option<ServiceReport>) {
        let Some(svc) = self.services.get(&key.namespace, &key.name) else {
            self.submitted.remove(key);
            return;
        };
        let observed = ServiceReport::observed(svc);
        let Some(desired) = desired.filter(|d| *d != observed) else {
            // What the Service shows now (or what is no longer ours to write): forget it.
            self.submitted.remove(key);
            return;
        };
        if self.submitted.get(key) == Some(&desired) {
            return;
        }
        self.submitted.insert(key.clone(), desired.clone());
        let previous = svc.owned_condition(conditions::ANNOUNCED);
        self.parts.writer.report(ReportWrite { key: key.clone(), desired, observed, previous });
    }
}
