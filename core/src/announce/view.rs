//! [`node_view`]: what one node does for one Service, and what it reports — the one answer the agent
//! applies and `explain` can show.
//!
//! In order: the is-ours rule (`facts::is_ours`: a LoadBalancer Service with addresses and PureLB's
//! `allocated-by` mark; anything else gets no placement), `plan_for_node` on this node, the routed
//! placements refused for overlapping a subnet connected on this node (when its kernel was read), the
//! local addresses this node yielded after another MAC announced them, and — when this node is the
//! Service's reporter (`report::reporter`) — the report it must show. A Service that is not ours but
//! still shows a report is cleared by its reporter.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::report::{self, ServiceReport};
use super::{AddressPlan, Elections, NodeFacts, Placement, ServiceFacts, facts, plan_with, refuse_connected};
use crate::pool::{PoolConfig, Subnet};
use crate::service::{ServiceFields, ServiceKey};

/// The reason added to a local placement this node gave up after another MAC announced the address.
pub const YIELDED: &str = "another node announced it (gratuitous ARP / NA): yielded";

/// What every Service's view on one node depends on besides the Service itself.
#[derive(Clone, Copy, Debug)]
pub struct NodeContext<'a> {
    /// This node.
    pub me: &'a str,
    /// Every node (including this one).
    pub nodes: &'a [NodeFacts],
    /// Every pool of every ServiceGroup.
    pub pools: &'a [PoolConfig],
    /// The routed-address interface (`kube-lb0`).
    pub extlbint: &'a str,
    /// The subnets connected on this node's other interfaces, when its kernel was read.
    pub connected: Option<&'a [Subnet]>,
    /// Local addresses this node yielded to another node's announcement.
    pub yielded: &'a BTreeSet<IpAddr>,
}

/// One Service on one node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeView {
    /// The Service is PureLB's to announce (`facts::is_ours`).
    pub ours: bool,
    /// Its addresses (empty unless ours).
    pub addresses: Vec<IpAddr>,
    /// Where each address goes on this node (empty unless ours).
    pub plans: Vec<AddressPlan>,
    /// The report this node must see on the Service, when it is the Service's reporter and there is
    /// something to show or to clear.
    pub report: Option<ServiceReport>,
}

/// What node `ctx.me` does for `svc`. See the module documentation. `endpoints` are the nodes with a
/// ready endpoint of the Service, `incumbents` the nodes that announce its addresses now (from every
/// Service holding them: `facts::incumbents`).
pub fn node_view(
    ctx: &NodeContext<'_>,
    svc: &(impl ServiceFields + ?Sized),
    endpoints: &BTreeMap<ServiceKey, BTreeSet<String>>,
    incumbents: &facts::Incumbents,
) -> NodeView {
    let ours = facts::is_ours(svc);
    let f = if ours { facts::service_facts(svc, endpoints, incumbents) } else { ServiceFacts::default() };
    let elections = Elections::new(&f);
    let plans = plan_with(ctx.me, &f, ctx.nodes, ctx.pools, ctx.extlbint, &elections)
        .into_iter()
        .map(|plan| match ctx.connected {
            Some(connected) => refuse_connected(plan, connected),
            None => plan,
        })
        .map(|mut plan| {
            if matches!(plan.placement, Placement::Local { .. }) && ctx.yielded.contains(&plan.address) {
                plan.reasons.push(YIELDED.to_string());
                plan.placement = Placement::Absent;
            }
            plan
        })
        .collect();
    let report = if ours || !ServiceReport::observed(svc).is_empty() {
        (report::reporter_with(&f, ctx.nodes, &elections).as_deref() == Some(ctx.me))
            .then(|| report::report_with(&f, ctx.nodes, ctx.pools, ctx.extlbint, &elections))
    } else {
        None
    };
    NodeView { ours, addresses: f.addresses, plans, report }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Service;
    use serde_json::json;

    fn node(name: &str) -> NodeFacts {
        NodeFacts {
            name: name.into(),
            subnets: vec![Subnet::parse("192.0.2.0/24").unwrap()],
            interface: "eth0".into(),
            live: true,
            excluded: false,
            shutting_down: false,
        }
    }

    fn service(address: &str, marked: bool) -> Service {
        let annotations = if marked { json!({"purelb.io/allocated-by": "PureLB"}) } else { json!({}) };
        serde_json::from_value(json!({
            "metadata": {"name": "s", "namespace": "t", "annotations": annotations},
            "spec": {"type": "LoadBalancer"},
            "status": {"loadBalancer": {"ingress": [{"ip": address}]}},
        }))
        .unwrap()
    }

    fn view(svc: &Service, me: &str, connected: Option<&[Subnet]>, yielded: &BTreeSet<IpAddr>) -> NodeView {
        let nodes = [node("a")];
        let ctx = NodeContext { me, nodes: &nodes, pools: &[], extlbint: "kube-lb0", connected, yielded };
        node_view(&ctx, svc, &BTreeMap::new(), &facts::Incumbents::new())
    }

    #[test]
    fn a_service_without_the_mark_gets_no_placement() {
        let v = view(&service("192.0.2.200", false), "a", None, &BTreeSet::new());
        assert!(!v.ours);
        assert!(v.plans.is_empty());
        assert_eq!(v.report, None, "nothing shown, nothing to clear");
    }

    #[test]
    fn the_only_node_places_a_local_address_and_reports_it() {
        let v = view(&service("192.0.2.200", true), "a", None, &BTreeSet::new());
        assert!(matches!(v.plans[0].placement, Placement::Local { .. }));
        let report = v.report.unwrap();
        assert!(report.annotations.values().any(|a| a.starts_with("a")), "{report:?}");
    }

    #[test]
    fn a_yielded_local_address_is_absent_with_the_reason() {
        let ip: IpAddr = "192.0.2.200".parse().unwrap();
        let v = view(&service("192.0.2.200", true), "a", None, &BTreeSet::from([ip]));
        assert_eq!(v.plans[0].placement, Placement::Absent);
        assert_eq!(v.plans[0].reasons.last().map(String::as_str), Some(YIELDED));
    }

    #[test]
    fn a_routed_address_over_a_connected_subnet_is_refused() {
        let connected = [Subnet::parse("198.51.100.0/24").unwrap()];
        let routed = service("198.51.100.7", true);
        let free = view(&routed, "a", None, &BTreeSet::new());
        assert!(matches!(free.plans[0].placement, Placement::NonLocal { .. }));
        let refused = view(&routed, "a", Some(&connected), &BTreeSet::new());
        assert_eq!(refused.plans[0].placement, Placement::Absent);
        assert!(refused.plans[0].reasons.last().is_some_and(|r| r.starts_with("refused:")));
    }

    #[test]
    fn a_node_that_is_not_the_reporter_reports_nothing() {
        let v = view(&service("192.0.2.200", true), "b", None, &BTreeSet::new());
        assert_eq!(v.report, None);
    }
}
