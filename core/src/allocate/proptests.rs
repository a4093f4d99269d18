//! Property tests of the allocation index: random sequences of Service changes (create, edit, delete,
//! requested addresses, sharing keys and ports, family policies, ETP Local, class), ServiceGroup edits
//! (pools change, groups vanish, a name defined twice) and allocator restarts, replayed the way the
//! allocator (`controller/src/allocator.rs`) drives the index — claim what a Service shows, decide,
//! apply, write the status, re-decide pending Services when something was freed — and checked after
//! every step:
//! - no address is held by two Services without a valid share (same key, no common port, no ETP Local),
//!   in the index and in the Services' statuses alike;
//! - a Service asking for both families (`RequireDualStack`) holds both or neither;
//! - a restart (a fresh index rebuilt by [`claim_existing`] from the Services as written) holds exactly
//!   what the old index held, and re-deciding after it changes no Service's addresses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    LoadBalancerIngress, LoadBalancerStatus, Service, ServicePort, ServiceSpec, ServiceStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use proptest::prelude::*;
use proptest::test_runner::Config;

use super::*;
use crate::api::{
    ALLOCATED_BY_VALUE, LOAD_BALANCER_CLASS, PoolSpec, ServiceGroupLocal, ServiceGroupSpec, annotations,
};
use crate::pool::Family;
use crate::service::ingress_ips;

/// Cases per property (each a sequence of up to [`MAX_STEPS`] steps).
const SEQUENCE_CASES: u32 = 1024;
const MAX_STEPS: usize = 40;
const NAMESPACES: [&str; 2] = ["purelb-system", "other"];
const GROUPS: [&str; 3] = ["default", "g1", "g2"];
/// Small, overlapping pools: exhaustion, sharing and groups that contain each other's addresses.
const V4_POOLS: [&str; 5] =
    ["192.0.2.0-192.0.2.2", "192.0.2.2-192.0.2.4", "192.0.2.8/30", "192.0.2.6/31", "198.51.100.0/24"];
const V6_POOLS: [&str; 3] = ["2001:db8::-2001:db8::2", "2001:db8::2-2001:db8::3", "2001:db8::8/126"];
const REQUESTS: [&str; 9] = [
    "192.0.2.1",
    "192.0.2.4",
    "192.0.2.9",
    "2001:db8::1",
    "2001:db8::9",
    "192.0.2.2, 2001:db8::2",
    "203.0.113.7",
    "not-an-address",
    "",
];
const FAMILIES: [(&str, &[&str]); 5] = [
    ("SingleStack", &["IPv4"]),
    ("SingleStack", &["IPv6"]),
    ("PreferDualStack", &["IPv4", "IPv6"]),
    ("RequireDualStack", &["IPv6", "IPv4"]),
    ("RequireDualStack", &["IPv4", "IPv6"]),
];
const SERVICES: usize = 6;

/// What a user can set on one Service.
#[derive(Clone, Debug)]
struct Attrs {
    group: Option<&'static str>,
    addresses: Option<&'static str>,
    share: Option<&'static str>,
    ports: Vec<(i32, &'static str)>,
    families: usize,
    local: bool,
    /// None: class-less (ours); else the class.
    class: Option<&'static str>,
    load_balancer: bool,
}

#[derive(Clone, Debug)]
enum Op {
    /// Create or edit Service `n`.
    Apply(usize, Attrs),
    Delete(usize),
    /// Create or edit group `name` in `namespace`: (subnet, pool) pairs.
    SetGroup {
        namespace: usize,
        name: usize,
        pools: Vec<(&'static str, &'static str)>,
    },
    RemoveGroup {
        namespace: usize,
        name: usize,
    },
    /// A new allocator: an empty index rebuilt from the Services as they are written.
    Restart,
}

fn attrs() -> impl Strategy<Value = Attrs> {
    let group = prop_oneof![3 => Just(None), 4 => prop::sample::select(GROUPS.to_vec()).prop_map(Some), 1 => Just(Some("nosuch"))];
    let addresses = prop_oneof![3 => Just(None), 2 => prop::sample::select(REQUESTS.to_vec()).prop_map(Some)];
    let share = prop_oneof![2 => Just(None), 2 => Just(Some("a")), 1 => Just(Some("b"))];
    let ports = prop::collection::btree_set(
        prop::sample::select(vec![(80, "TCP"), (443, "TCP"), (53, "UDP"), (53, "TCP")]),
        0..=2,
    )
    .prop_map(|s| s.into_iter().collect::<Vec<_>>());
    let class = prop_oneof![6 => Just(None), 1 => Just(Some(LOAD_BALANCER_CLASS)), 1 => Just(Some("example.com/other"))];
    (
        group,
        addresses,
        share,
        ports,
        0..FAMILIES.len(),
        prop::bool::weighted(0.2),
        class,
        prop::bool::weighted(0.9),
    )
        .prop_map(|(group, addresses, share, ports, families, local, class, load_balancer)| Attrs {
            group,
            addresses,
            share,
            ports,
            families,
            local,
            class,
            load_balancer,
        })
}

fn pools() -> impl Strategy<Value = Vec<(&'static str, &'static str)>> {
    let v4 = prop::sample::select(V4_POOLS.to_vec())
        .prop_map(|p| (if p.starts_with("198.51.100.") { "198.51.100.0/24" } else { "192.0.2.0/24" }, p));
    let v6 = prop::sample::select(V6_POOLS.to_vec()).prop_map(|p| ("2001:db8::/64", p));
    // One in ten: a pool outside its subnet (an invalid group).
    let broken = Just(("192.0.2.0/24", "203.0.113.0/30"));
    prop::collection::vec(prop_oneof![6 => v4, 4 => v6, 1 => broken], 0..=3)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..SERVICES, attrs()).prop_map(|(n, a)| Op::Apply(n, a)),
        2 => (0..SERVICES).prop_map(Op::Delete),
        3 => (prop::bool::weighted(0.1), 0..GROUPS.len(), pools()).prop_map(|(other, name, pools)| {
            Op::SetGroup { namespace: usize::from(other), name, pools }
        }),
        1 => (prop::bool::weighted(0.3), 0..GROUPS.len())
            .prop_map(|(other, name)| Op::RemoveGroup { namespace: usize::from(other), name }),
        1 => Just(Op::Restart),
    ]
}

fn group_spec(pools: &[(&str, &str)]) -> ServiceGroupSpec {
    let (mut v4pools, mut v6pools) = (Vec::new(), Vec::new());
    for (subnet, pool) in pools {
        let spec =
            PoolSpec { subnet: subnet.to_string(), pool: pool.to_string(), aggregation: "default".into() };
        if pool.contains(':') { v6pools.push(spec) } else { v4pools.push(spec) }
    }
    ServiceGroupSpec { local: Some(ServiceGroupLocal { v4pools, v6pools, ..Default::default() }) }
}

fn key(n: usize) -> ServiceKey {
    ServiceKey::new("apps", format!("s{n}"))
}

/// Service `n` with `attrs`, keeping what the allocator wrote on `old` and its creation time.
fn service(n: usize, a: &Attrs, old: Option<&Service>, created: i64) -> Service {
    let mut ann: BTreeMap<String, String> = BTreeMap::new();
    if let Some(old) = old.and_then(|o| o.metadata.annotations.as_ref()) {
        for k in [annotations::ALLOCATED_BY, annotations::ALLOCATED_FROM] {
            if let Some(v) = old.get(k) {
                ann.insert(k.into(), v.clone());
            }
        }
    }
    for (k, v) in [
        (annotations::SERVICE_GROUP, a.group),
        (annotations::ADDRESSES, a.addresses),
        (annotations::ALLOW_SHARED_IP, a.share),
    ] {
        if let Some(v) = v {
            ann.insert(k.into(), v.into());
        }
    }
    let (policy, families) = FAMILIES[a.families];
    Service {
        metadata: ObjectMeta {
            name: Some(key(n).name),
            namespace: Some(key(n).namespace),
            annotations: Some(ann),
            creation_timestamp: old
                .and_then(|o| o.metadata.creation_timestamp.clone())
                .or_else(|| Some(Time(Timestamp::from_second(created).unwrap()))),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some(if a.load_balancer { "LoadBalancer" } else { "ClusterIP" }.into()),
            load_balancer_class: a.class.map(str::to_string),
            ip_family_policy: Some(policy.into()),
            ip_families: Some(families.iter().map(|f| f.to_string()).collect()),
            external_traffic_policy: Some(if a.local { "Local" } else { "Cluster" }.into()),
            ports: Some(
                a.ports
                    .iter()
                    .map(|(port, protocol)| ServicePort {
                        port: *port,
                        protocol: Some(protocol.to_string()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        status: old.and_then(|o| o.status.clone()),
    }
}

/// The cluster as the allocator sees it, and the allocator's state.
#[derive(Default)]
struct Cluster {
    index: AllocationIndex,
    groups: BTreeMap<(String, String), ServiceGroupSpec>,
    services: BTreeMap<ServiceKey, Service>,
    pending: BTreeSet<ServiceKey>,
    log: Vec<String>,
}

/// What the allocator writes on a Service: the ingress addresses and `allocated-from` (None: remove
/// everything it wrote).
fn write(svc: &mut Service, desired: Option<(Vec<IpAddr>, Option<String>)>) {
    let ann = svc.metadata.annotations.get_or_insert_with(BTreeMap::new);
    ann.remove(annotations::ALLOCATED_BY);
    ann.remove(annotations::ALLOCATED_FROM);
    let (ips, group) = desired.unwrap_or_default();
    if let Some(group) = group {
        ann.insert(annotations::ALLOCATED_BY.into(), ALLOCATED_BY_VALUE.into());
        ann.insert(annotations::ALLOCATED_FROM.into(), group);
    }
    let ingress: Vec<LoadBalancerIngress> =
        ips.iter().map(|ip| LoadBalancerIngress { ip: Some(ip.to_string()), ..Default::default() }).collect();
    svc.status = Some(ServiceStatus {
        load_balancer: Some(LoadBalancerStatus { ingress: (!ingress.is_empty()).then_some(ingress) }),
        ..Default::default()
    });
}

// === impl Cluster ===

impl Cluster {
    /// One allocator turn for `key`, as `Allocator::reconcile` takes it. Returns whether addresses
    /// were freed.
    fn reconcile(&mut self, key: &ServiceKey) -> bool {
        let Some(svc) = self.services.get(key).cloned() else {
            self.pending.remove(key);
            return !self.index.release(key).is_empty();
        };
        if ownership(&svc, true) != Ownership::Ours {
            self.pending.remove(key);
            let freed = !self.index.release(key).is_empty();
            self.write(key, None);
            return freed;
        }
        let observed = ingress_ips(&svc);
        let req = match ServiceRequest::from_service(&svc) {
            Ok(req) => req,
            Err(_) => {
                if self.index.held(key).is_none() && !observed.is_empty() {
                    let _ = self.index.claim(&ServiceRequest::lenient(&svc), &observed);
                }
                self.index.keep(&ServiceRequest::lenient(&svc));
                let held = self.index.held(key).cloned();
                if held.is_none() {
                    self.pending.remove(key);
                }
                self.write(key, Some(held_write(held.as_ref())));
                return false;
            }
        };
        if self.index.held(key).is_none() && !observed.is_empty() {
            let conflicts = self.index.claim(&req, &observed);
            if !conflicts.is_empty() {
                self.log.push(format!("{key}: AddressConflict {conflicts:?}"));
                self.pending.insert(key.clone());
                return false;
            }
        }
        let before = self.index.held(key).map(|h| h.addresses.clone()).unwrap_or_default();
        let decision = self.index.decide(&req);
        self.log.push(format!("{key}: {} {}", decision.reason(), decision.message()));
        self.index.apply(&req, &decision);
        let held = self.index.held(key).cloned();
        match &decision.outcome {
            Ok(assigned) if assigned.len() == req.families.len() => {
                self.pending.remove(key);
            }
            _ => {
                self.pending.insert(key.clone());
            }
        }
        self.write(key, Some(held_write(held.as_ref())));
        let now = held.map(|h| h.addresses).unwrap_or_default();
        before.iter().any(|ip| !now.contains(ip) && self.index.holding(*ip).is_none())
    }

    fn write(&mut self, key: &ServiceKey, desired: Option<(Vec<IpAddr>, Option<String>)>) {
        if let Some(svc) = self.services.get_mut(key) {
            write(svc, desired);
        }
    }

    /// Decides for `touched` (every Service when the groups changed), then, while something was freed,
    /// for every pending Service, as `Allocator::process` does.
    fn process(&mut self, touched: impl IntoIterator<Item = ServiceKey>, groups_changed: bool) {
        let mut touched: BTreeSet<ServiceKey> = touched.into_iter().collect();
        if groups_changed {
            touched.extend(self.services.keys().cloned());
        }
        for key in touched {
            self.reconcile(&key);
        }
        // Any change may unblock a pending Service (an address freed, a sharer's key or ports changed).
        let mut retry = true;
        let mut passes = self.pending.len();
        while retry && passes > 0 {
            passes -= 1;
            retry = false;
            for key in self.pending.clone() {
                retry |= self.reconcile(&key);
            }
        }
    }

    fn step(&mut self, op: &Op, at: i64) -> Result<(), TestCaseError> {
        match op {
            Op::Apply(n, a) => {
                let svc = service(*n, a, self.services.get(&key(*n)), at);
                self.services.insert(key(*n), svc);
                self.process([key(*n)], false);
            }
            Op::Delete(n) => {
                self.services.remove(&key(*n));
                self.process([key(*n)], false);
            }
            Op::SetGroup { namespace, name, pools } => {
                let spec = group_spec(pools);
                self.index.set_group(NAMESPACES[*namespace], GROUPS[*name], &spec);
                self.groups.insert((NAMESPACES[*namespace].into(), GROUPS[*name].into()), spec);
                self.process([], true);
            }
            Op::RemoveGroup { namespace, name } => {
                self.index.remove_group(NAMESPACES[*namespace], GROUPS[*name]);
                self.groups.remove(&(NAMESPACES[*namespace].into(), GROUPS[*name].into()));
                self.process([], true);
            }
            Op::Restart => {
                let mut fresh = AllocationIndex::new();
                for ((ns, name), spec) in &self.groups {
                    fresh.set_group(ns, name, spec);
                }
                let conflicts = claim_existing(&mut fresh, self.services.values(), true);
                prop_assert!(conflicts.is_empty(), "the restart found conflicts: {conflicts:?}");
                prop_assert_eq!(
                    holdings(&fresh),
                    holdings(&self.index),
                    "the restart rebuilt other holdings"
                );
                let before = self.statuses();
                self.index = fresh;
                self.pending.clear();
                let all: Vec<ServiceKey> = self.services.keys().cloned().collect();
                self.process(all, true);
                let after = self.statuses();
                for (key, ips) in &before {
                    if !ips.is_empty() {
                        prop_assert_eq!(
                            Some(ips),
                            after.get(key),
                            "{} changed addresses across a restart",
                            key
                        );
                    }
                }
            }
        }
        Ok(())
    }

    fn statuses(&self) -> BTreeMap<ServiceKey, Vec<IpAddr>> {
        self.services.iter().map(|(k, s)| (k.clone(), ingress_ips(s))).collect()
    }

    /// The invariants every step must keep.
    fn check(&self) -> Result<(), TestCaseError> {
        let requests: BTreeMap<ServiceKey, ServiceRequest> =
            self.services.iter().map(|(k, s)| (k.clone(), ServiceRequest::lenient(s))).collect();
        // The index is consistent with itself.
        for (key, held) in self.index.services() {
            for ip in &held.addresses {
                let holding = self.index.holding(*ip);
                prop_assert!(
                    holding.is_some_and(|h| h.holders.contains_key(key)),
                    "{key} holds {ip} but the address does not list it"
                );
            }
        }
        for (ip, holding) in self.index.addresses() {
            prop_assert!(!holding.holders.is_empty(), "{ip} is held by nobody");
            for key in holding.holders.keys() {
                prop_assert!(
                    self.index.held(key).is_some_and(|h| h.addresses.contains(ip)),
                    "{ip} lists {key}, which does not hold it"
                );
            }
        }
        // Every Service shows exactly what the index says it holds.
        for (key, svc) in &self.services {
            let held = self.index.held(key).map(|h| h.addresses.clone()).unwrap_or_default();
            prop_assert_eq!(ingress_ips(svc), held, "{} shows other addresses than it holds", key);
        }
        // No two Services show one address without a valid share.
        let mut shown: BTreeMap<IpAddr, Vec<&ServiceKey>> = BTreeMap::new();
        for (key, svc) in &self.services {
            for ip in ingress_ips(svc) {
                shown.entry(ip).or_default().push(key);
            }
        }
        for (ip, holders) in &shown {
            if holders.len() < 2 {
                continue;
            }
            let reqs: Vec<&ServiceRequest> = holders.iter().map(|k| &requests[*k]).collect();
            let first_key = reqs[0].sharing_key.as_deref();
            for (a, req) in reqs.iter().enumerate() {
                prop_assert!(first_key.is_some(), "{ip} is shown by {holders:?}, which have no sharing key");
                prop_assert_eq!(req.sharing_key.as_deref(), first_key, "{} is shared under two keys", ip);
                prop_assert!(!req.local_traffic_policy, "{ip} is shared by {} with ETP Local", req.key);
                for other in &reqs[a + 1..] {
                    let common: Vec<&PortKey> =
                        req.ports.iter().filter(|p| other.ports.contains(p)).collect();
                    prop_assert!(
                        common.is_empty(),
                        "{ip} is shared by {} and {} on {common:?}",
                        req.key,
                        other.key
                    );
                }
            }
        }
        // A Service asking for both families holds both or neither; nobody holds two of one family.
        for (key, held) in self.index.services() {
            let families: BTreeSet<Family> = held.addresses.iter().map(|ip| Family::of(*ip)).collect();
            prop_assert_eq!(families.len(), held.addresses.len(), "{} holds two of one family", key);
            if let Some(req) = self.services.get(key).and_then(|s| ServiceRequest::from_service(s).ok())
                && req.policy == FamilyPolicy::RequireDualStack
            {
                prop_assert_eq!(families.len(), 2, "{} asks for both families and holds {:?}", key, held);
            }
        }
        Ok(())
    }
}

fn held_write(held: Option<&Held>) -> (Vec<IpAddr>, Option<String>) {
    match held {
        Some(h) => (h.addresses.clone(), h.group.as_ref().map(ToString::to_string)),
        None => (Vec::new(), None),
    }
}

/// Everything the index holds, comparable.
fn holdings(index: &AllocationIndex) -> (BTreeMap<ServiceKey, Held>, BTreeMap<IpAddr, Holding>) {
    (
        index.services().map(|(k, h)| (k.clone(), h.clone())).collect(),
        index.addresses().map(|(ip, h)| (*ip, h.clone())).collect(),
    )
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut cluster = Cluster::default();
    cluster.index.set_group("purelb-system", "default", &group_spec(&[("192.0.2.0/24", V4_POOLS[0])]));
    cluster
        .groups
        .insert(("purelb-system".into(), "default".into()), group_spec(&[("192.0.2.0/24", V4_POOLS[0])]));
    for (step, op) in ops.iter().enumerate() {
        let at = 1_700_000_000 + i64::try_from(step / 2).unwrap();
        let result = cluster.step(op, at).and_then(|()| cluster.check());
        if let Err(e) = result {
            let tail = cluster.log.iter().rev().take(12).rev().cloned().collect::<Vec<_>>().join("\n  ");
            return Err(TestCaseError::fail(format!(
                "after step {step} ({op:?}): {e}\n  last decisions:\n  {tail}"
            )));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(Config { cases: SEQUENCE_CASES, failure_persistence: None, ..Config::default() })]

    #[test]
    fn random_sequences_keep_shares_valid_dual_stack_whole_and_restarts_identical(
        ops in prop::collection::vec(op(), 1..=MAX_STEPS)
    ) {
        run(&ops)?;
    }
}

// === random strings in every annotation and field a Service is read by ===

/// A Service with random text in every annotation PureLB reads or writes and in every spec and status
/// field the allocator reads.
fn random_service() -> impl Strategy<Value = Service> {
    use crate::api::proptests::text;
    let opt = || prop::option::weighted(0.6, text());
    let known = |values: &'static [&'static str]| prop_oneof![3 => prop::sample::select(values.to_vec()).prop_map(|v| Some(v.to_string())), 1 => prop::option::of(text())];
    (
        prop::collection::vec((prop::sample::select(annotations::ALL.to_vec()), text()), 0..6),
        (opt(), known(&["LoadBalancer", "ClusterIP"]), known(&[LOAD_BALANCER_CLASS]), opt()),
        (
            known(&["SingleStack", "PreferDualStack", "RequireDualStack"]),
            prop::option::of(prop::collection::vec(known(&["IPv4", "IPv6"]), 0..3)),
            known(&["Local", "Cluster"]),
        ),
        prop::collection::vec((any::<i32>(), prop::option::of(text())), 0..3),
        prop::collection::vec(
            prop_oneof![text(), prop::sample::select(REQUESTS.to_vec()).prop_map(String::from)],
            0..3,
        ),
    )
        .prop_map(|(ann, (lb_ip, type_, class, name), (policy, families, etp), ports, ingress)| {
            let mut svc = Service {
                metadata: ObjectMeta {
                    name: name.or(Some("s".into())),
                    namespace: Some("apps".into()),
                    annotations: Some(ann.into_iter().map(|(k, v)| (k.to_string(), v)).collect()),
                    ..Default::default()
                },
                spec: Some(ServiceSpec {
                    type_,
                    load_balancer_class: class,
                    load_balancer_ip: lb_ip,
                    ip_family_policy: policy,
                    ip_families: families.map(|f| f.into_iter().flatten().collect()),
                    external_traffic_policy: etp,
                    ports: Some(
                        ports
                            .into_iter()
                            .map(|(port, protocol)| ServicePort { port, protocol, ..Default::default() })
                            .collect(),
                    ),
                    ..Default::default()
                }),
                status: None,
            };
            svc.status = Some(ServiceStatus {
                load_balancer: Some(LoadBalancerStatus {
                    ingress: Some(
                        ingress
                            .into_iter()
                            .map(|ip| LoadBalancerIngress { ip: Some(ip), ..Default::default() })
                            .collect(),
                    ),
                }),
                ..Default::default()
            });
            svc
        })
}

/// The seed-like groups the random Services are decided against (both families, a requested address
/// of [`REQUESTS`] in most of them).
fn string_index() -> AllocationIndex {
    let mut index = AllocationIndex::new();
    index.set_group(
        "purelb-system",
        "default",
        &group_spec(&[("192.0.2.0/24", V4_POOLS[0]), ("2001:db8::/64", V6_POOLS[0])]),
    );
    index.set_group("purelb-system", "g1", &group_spec(&[("192.0.2.0/24", V4_POOLS[2])]));
    index
}

proptest! {
    #![proptest_config(Config { cases: crate::api::proptests::STRING_CASES, failure_persistence: None, ..Config::default() })]

    /// Reading a Service never panics and an unreadable one is refused with a reason naming the
    /// annotation or field; deciding, applying, claiming and keeping it never panic either, and every
    /// failure carries a reason code and a message.
    #[test]
    fn random_annotations_and_fields_give_a_decision_or_a_reason(svc in random_service(), other in random_service()) {
        let _ = ownership(&svc, true);
        let mut index = string_index();
        match ServiceRequest::from_service(&svc) {
            Ok(req) => {
                let d = index.decide(&req);
                prop_assert!(!d.message().trim().is_empty(), "{:?}: an empty message", d.reason());
                if let Err(f) = &d.outcome {
                    prop_assert_ne!(f.reason, Reason::Allocated);
                }
                index.apply(&req, &d);
                let again = index.decide(&req);
                prop_assert_eq!(again.addresses(), d.addresses(), "deciding twice changed the answer");
            }
            Err(e) => {
                let message = e.to_string();
                prop_assert!(
                    message.contains("purelb.io/") || message.contains("spec."),
                    "the reason names no annotation or field: {message}"
                );
                index.keep(&ServiceRequest::lenient(&svc));
            }
        }
        // Start-up over random statuses: whatever is claimed is consistent, and never held twice
        // without a share.
        let mut fresh = string_index();
        let _ = claim_existing(&mut fresh, [&svc, &other], true);
        for (ip, holding) in fresh.addresses() {
            prop_assert!(!holding.holders.is_empty(), "{ip}");
        }
        let _ = crate::announce::facts::is_ours(&svc);
    }
}

// === regressions: the shrunk inputs of the bugs the properties found, one plain test each ===

fn plain(families: usize) -> Attrs {
    Attrs {
        group: None,
        addresses: None,
        share: None,
        ports: Vec::new(),
        families,
        local: false,
        class: None,
        load_balancer: true,
    }
}

fn set_group(name: usize, pools: &[(&'static str, &'static str)]) -> Op {
    Op::SetGroup { namespace: 0, name, pools: pools.to_vec() }
}

/// PreferDualStack degraded to IPv4, then RequireDualStack: it kept IPv4 alone (half a dual stack).
#[test]
fn regression_require_dual_stack_after_a_degraded_prefer_holds_neither() {
    run(&[Op::Apply(0, plain(2)), Op::Apply(0, plain(3))]).unwrap();
}

/// A sharer whose annotation became unreadable kept its old sharing key in the index; a restart
/// rebuilt it without.
#[test]
fn regression_an_unreadable_request_drops_its_old_sharing_key() {
    let shared = Attrs { share: Some("a"), ..plain(2) };
    let unreadable = Attrs { addresses: Some("not-an-address"), ..plain(0) };
    run(&[Op::Apply(3, shared), Op::Apply(3, unreadable), Op::Restart]).unwrap();
}

/// A held address that a group edit moved into another group was recorded under that group after a
/// restart (and then renumbered).
#[test]
fn regression_a_restart_records_the_group_written_on_the_service() {
    run(&[
        Op::Apply(4, plain(2)),
        Op::Apply(0, plain(2)),
        Op::Apply(1, plain(2)),
        set_group(1, &[("192.0.2.0/24", "192.0.2.0-192.0.2.2")]),
        set_group(0, &[]),
        Op::Restart,
    ])
    .unwrap();
}

/// A Service that kept its address after a failed change (a group that did not exist yet) was not
/// re-decided when the group appeared; a restart moved it.
#[test]
fn regression_a_new_group_re_decides_services_that_keep_an_address() {
    let moved = Attrs { group: Some("g2"), ..plain(2) };
    run(&[
        Op::Apply(0, plain(0)),
        Op::Apply(0, moved),
        set_group(2, &[("192.0.2.0/24", "192.0.2.2-192.0.2.4")]),
        Op::Restart,
    ])
    .unwrap();
}

/// A group edit that removed a family's pools made a PreferDualStack Service drop its working
/// address of that family (FamilyUnavailable) — but only when it was re-decided.
#[test]
fn regression_a_group_edit_keeps_a_working_address_of_a_removed_family() {
    run(&[Op::Apply(0, plain(2)), set_group(0, &[("2001:db8::/64", "2001:db8::-2001:db8::2")]), Op::Restart])
        .unwrap();
}

/// A degraded PreferDualStack Service did not take the family's address freed by another Service.
#[test]
fn regression_a_degraded_prefer_dual_stack_takes_a_freed_address() {
    run(&[
        Op::Apply(0, plain(1)),
        Op::Apply(3, plain(2)),
        Op::Apply(2, plain(1)),
        set_group(0, &[("2001:db8::/64", "2001:db8::2-2001:db8::3")]),
        Op::Apply(2, plain(0)),
        Op::Restart,
    ])
    .unwrap();
}

/// A requested IPv4 address from another group made `allocated-from` that group, so the Service's kept
/// IPv6 address (its own group edited) was renumbered on the next decision.
#[test]
fn regression_allocated_from_prefers_the_group_asked_for() {
    let requested = Attrs { group: Some("g2"), addresses: Some("192.0.2.9"), ..plain(2) };
    run(&[
        set_group(2, &[("2001:db8::/64", "2001:db8::8/126")]),
        Op::Apply(5, Attrs { group: Some("g2"), ..plain(1) }),
        set_group(2, &[("2001:db8::/64", "2001:db8::-2001:db8::2")]),
        set_group(0, &[("192.0.2.0/24", "192.0.2.8/30")]),
        Op::Apply(5, requested),
        Op::Restart,
    ])
    .unwrap();
}

/// A Service refused an address another held under another key was not retried when the holder
/// changed its key; a restart gave it the address.
#[test]
fn regression_a_pending_service_is_retried_when_a_sharer_changes() {
    run(&[
        Op::Apply(3, plain(0)),
        Op::Apply(2, Attrs { share: Some("b"), ..plain(0) }),
        Op::Apply(3, Attrs { share: Some("a"), addresses: Some("192.0.2.1"), ..plain(0) }),
        Op::Apply(2, Attrs { share: Some("a"), ports: vec![(443, "TCP")], ..plain(0) }),
        Op::Restart,
    ])
    .unwrap();
}

/// Changing the ports of one of two sharers to a common one kept both on the address.
#[test]
fn regression_a_sharer_whose_ports_now_collide_moves() {
    let a = Attrs { share: Some("a"), ports: vec![(80, "TCP")], ..plain(0) };
    let b = Attrs { share: Some("a"), ports: vec![(443, "TCP")], ..plain(0) };
    let b_on_80 = Attrs { share: Some("a"), ports: vec![(80, "TCP")], ..plain(0) };
    run(&[Op::Apply(0, a), Op::Apply(1, b), Op::Apply(1, b_on_80), Op::Restart]).unwrap();
}

/// A Service that moved to a group already holding its address was still recorded under the old
/// group, which a restart did not believe once the old group's pools changed.
#[test]
fn regression_a_kept_address_is_recorded_under_the_group_asked_for() {
    run(&[
        set_group(1, &[("192.0.2.0/24", "192.0.2.0-192.0.2.2")]),
        Op::Apply(1, plain(2)),
        Op::Apply(1, Attrs { group: Some("g1"), ..plain(0) }),
        set_group(0, &[]),
        Op::Restart,
    ])
    .unwrap();
}
