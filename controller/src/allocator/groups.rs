//! The ServiceGroups' side of the allocator loop: each changed group's status (its `Valid` condition,
//! worded by core, and its pools' usage), its gauges, and a Warning event when it becomes unusable.

use std::sync::Arc;

use kube::ResourceExt;
use purelb_core::allocate::GroupCondition;
use purelb_core::api::{ServiceGroup, conditions, events};
use serde_json::json;

use super::Allocator;
use crate::metrics::GroupLabel;

impl Allocator {
    /// Writes the status of every group whose usage or validity changed, and reports new problems.
    pub(super) async fn flush_groups(&mut self) {
        for name in std::mem::take(&mut self.dirty_groups) {
            let defs: Vec<Arc<ServiceGroup>> =
                self.groups.iter().filter(|((_, n), _)| name == n.as_str()).map(|(_, g)| g.clone()).collect();
            let state = self.index.group(&name).cloned();
            let usage = self.index.usage(&name);
            if let Some(u) = &usage {
                let label = GroupLabel { group: name.to_string() };
                self.metrics
                    .pool_size
                    .get_or_create(&label)
                    .set(i64::try_from(u.allocated.saturating_add(u.available)).unwrap_or(i64::MAX));
                self.metrics
                    .pool_in_use
                    .get_or_create(&label)
                    .set(i64::try_from(u.allocated).unwrap_or(i64::MAX));
            }
            for g in defs {
                let ns = g.namespace().unwrap_or_default();
                let condition =
                    state.as_ref().map_or_else(GroupCondition::usable, |s| s.condition(name.as_str()));
                let GroupCondition { valid, reason, message } = condition;
                let previous = g
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.iter().find(|c| c.type_ == conditions::GROUP_VALID));
                let since = match previous {
                    Some(c) if (c.status == "True") == valid && c.reason == reason => {
                        c.last_transition_time.clone()
                    }
                    _ => k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                        k8s_openapi::jiff::Timestamp::now(),
                    ),
                };
                let mut status = json!({"conditions": [{
                    "type": conditions::GROUP_VALID, "status": if valid { "True" } else { "False" }, "reason": reason,
                    "message": message, "lastTransitionTime": since,
                }]});
                if let Some(u) = &usage {
                    status["pools"] = json!(u.pools);
                    status["allocated"] = json!(u64::try_from(u.allocated).unwrap_or(u64::MAX));
                    status["available"] = json!(u.available.to_string());
                }
                let writer = self.writer.clone();
                let (gns, gname) = (ns.clone(), name.to_string());
                tokio::spawn(async move { writer.group_status(&gns, &gname, status).await });
                let id = (ns, name.to_string());
                if !valid && self.reported_groups.get(&id) != Some(&message) {
                    let writer = self.writer.clone();
                    let note = format!("{reason}: {message}");
                    let obj = g.clone();
                    tokio::spawn(async move {
                        writer.event_on(obj.as_ref(), true, events::INVALID_SERVICE_GROUP, note).await;
                    });
                    self.reported_groups.insert(id, message);
                } else if valid {
                    self.reported_groups.remove(&id);
                }
            }
        }
    }
}
