//! Unit tests of the allocation rules, one scenario each, built with `make_*` helpers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::api::{PoolSpec, ServiceGroupLocal, ServiceGroupSpec};

pub(super) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn pool(subnet: &str, pool: &str, aggregation: &str) -> PoolSpec {
    PoolSpec { subnet: subnet.into(), pool: pool.into(), aggregation: aggregation.into() }
}

fn make_group(v4: Vec<PoolSpec>, v6: Vec<PoolSpec>) -> ServiceGroupSpec {
    ServiceGroupSpec { local: Some(ServiceGroupLocal { v4pools: v4, v6pools: v6, ..Default::default() }) }
}

/// The seed's groups: `default`, `localaddr` (a local range) and `virtualsub` (172.31.1.0/24, /32).
pub(super) fn seed_index() -> AllocationIndex {
    let mut idx = AllocationIndex::new();
    idx.set_group(
        "purelb-system",
        "default",
        &make_group(vec![pool("172.30.250.0/24", "172.30.250.53-172.30.250.60", "default")], vec![]),
    );
    idx.set_group(
        "purelb-system",
        "localaddr",
        &make_group(vec![pool("192.0.2.0/24", "192.0.2.200-192.0.2.202", "default")], vec![]),
    );
    idx.set_group(
        "default",
        "virtualsub",
        &make_group(vec![pool("172.31.1.0/24", "172.31.1.0/24", "/32")], vec![]),
    );
    idx.set_group(
        "purelb-system",
        "dual",
        &make_group(
            vec![pool("198.51.100.0/24", "198.51.100.0/30", "/32")],
            vec![pool("2001:db8:100::/64", "2001:db8:100::/64", "/128")],
        ),
    );
    idx
}

pub(super) struct Svc(pub(super) Service);

pub(super) fn make_svc(name: &str) -> Svc {
    Svc(Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("servicetest".into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            ip_families: Some(vec!["IPv4".into()]),
            ip_family_policy: Some("SingleStack".into()),
            ports: Some(vec![ServicePort { port: 80, protocol: Some("TCP".into()), ..Default::default() }]),
            ..Default::default()
        }),
        status: None,
    })
}

impl Svc {
    pub(super) fn ann(mut self, k: &str, v: &str) -> Self {
        self.0.metadata.annotations.get_or_insert_with(BTreeMap::new).insert(k.into(), v.into());
        self
    }
    pub(super) fn group(self, g: &str) -> Self {
        self.ann(crate::api::annotations::SERVICE_GROUP, g)
    }
    fn share(self, key: &str) -> Self {
        self.ann(crate::api::annotations::ALLOW_SHARED_IP, key)
    }
    fn spec(mut self, f: impl FnOnce(&mut ServiceSpec)) -> Self {
        f(self.0.spec.as_mut().unwrap());
        self
    }
    fn port(self, port: i32) -> Self {
        self.spec(|s| {
            s.ports = Some(vec![ServicePort { port, protocol: Some("TCP".into()), ..Default::default() }])
        })
    }
    fn families(self, policy: &str, fams: &[&str]) -> Self {
        self.spec(|s| {
            s.ip_family_policy = Some(policy.into());
            s.ip_families = Some(fams.iter().map(|f| f.to_string()).collect());
        })
    }
    fn local(self) -> Self {
        self.spec(|s| s.external_traffic_policy = Some("Local".into()))
    }
    fn req(&self) -> ServiceRequest {
        ServiceRequest::from_service(&self.0).unwrap()
    }
}

/// Decides and, on success, commits; returns the decision.
pub(super) fn alloc(idx: &mut AllocationIndex, svc: &Svc) -> Decision {
    let req = svc.req();
    let d = idx.decide(&req);
    if let Ok(a) = &d.outcome {
        let ips: Vec<IpAddr> = a.iter().map(|a| a.address).collect();
        idx.commit(&req, &ips, d.group());
    }
    d
}

fn failed(d: &Decision) -> Reason {
    match &d.outcome {
        Ok(a) => panic!("expected a failure, got {a:?}"),
        Err(f) => f.reason,
    }
}

#[test]
fn default_group_gives_the_lowest_free_address() {
    let mut idx = seed_index();
    let d = alloc(&mut idx, &make_svc("echoserver"));
    assert_eq!(d.addresses(), vec![ip("172.30.250.53")]);
    assert_eq!(d.group().map(GroupKey::as_str), Some("default"));
    assert_eq!(d.reason(), Reason::Allocated);
    let d2 = alloc(&mut idx, &make_svc("second"));
    assert_eq!(d2.addresses(), vec![ip("172.30.250.54")]);
}

#[test]
fn annotation_picks_the_group() {
    let mut idx = seed_index();
    let d = alloc(&mut idx, &make_svc("servicetest").group("localaddr"));
    assert_eq!(d.addresses(), vec![ip("192.0.2.200")]);
    assert_eq!(d.group().map(GroupKey::as_str), Some("localaddr"));
}

#[test]
fn seed_virtualsub_requested_then_lowest_is_the_network_address() {
    let mut idx = seed_index();
    let d = alloc(
        &mut idx,
        &make_svc("specificaddress")
            .group("virtualsub")
            .spec(|s| s.load_balancer_ip = Some("172.31.1.225".into())),
    );
    assert_eq!(d.addresses(), vec![ip("172.31.1.225")]);
    assert_eq!(d.outcome.as_ref().unwrap()[0].how, How::Requested(RequestSource::LoadBalancerIp));
    let d = alloc(&mut idx, &make_svc("endpoints").group("virtualsub").local());
    assert_eq!(d.addresses(), vec![ip("172.31.1.0")], "the seed allocates 172.31.1.0 from 172.31.1.0/24");
}

#[test]
fn requested_address_is_found_in_any_group() {
    let mut idx = seed_index();
    let d = alloc(&mut idx, &make_svc("x").ann(crate::api::annotations::ADDRESSES, "172.31.1.9"));
    assert_eq!(d.addresses(), vec![ip("172.31.1.9")]);
    assert_eq!(d.group().map(GroupKey::as_str), Some("virtualsub"));
}

#[test]
fn requested_address_outside_every_group_is_refused() {
    let mut idx = seed_index();
    let d = alloc(&mut idx, &make_svc("x").ann(crate::api::annotations::ADDRESSES, "203.0.113.7"));
    assert_eq!(failed(&d), Reason::AddressNotInAnyGroup);
    assert!(d.rejected.iter().any(|c| c.what == "group virtualsub"), "{:?}", d.rejected);
    assert!(idx.held(&ServiceKey::new("servicetest", "x")).is_none());
}

#[test]
fn requested_address_in_use_is_refused_naming_the_holder() {
    let mut idx = seed_index();
    alloc(&mut idx, &make_svc("a").ann(crate::api::annotations::ADDRESSES, "172.31.1.9"));
    let d = alloc(&mut idx, &make_svc("b").ann(crate::api::annotations::ADDRESSES, "172.31.1.9"));
    assert_eq!(failed(&d), Reason::AddressInUse);
    assert!(d.message().contains("servicetest/a"), "{}", d.message());
}

#[test]
fn sharing_with_same_key_and_disjoint_ports_is_accepted() {
    let mut idx = seed_index();
    let a = alloc(&mut idx, &make_svc("a").group("virtualsub").share("k").port(80));
    let b = alloc(&mut idx, &make_svc("b").group("virtualsub").share("k").port(443));
    assert_eq!(a.addresses(), b.addresses());
    assert!(matches!(b.outcome.as_ref().unwrap()[0].how, How::Shared { .. }));
    // The address stays until the last sharer leaves.
    assert!(idx.release(&ServiceKey::new("servicetest", "a")).is_empty());
    assert_eq!(idx.release(&ServiceKey::new("servicetest", "b")), a.addresses());
}

#[test]
fn sharing_with_a_common_port_is_refused_naming_service_and_port() {
    let mut idx = seed_index();
    alloc(&mut idx, &make_svc("a").share("k").port(80).ann(crate::api::annotations::ADDRESSES, "172.31.1.5"));
    let d = alloc(
        &mut idx,
        &make_svc("b").share("k").port(80).ann(crate::api::annotations::ADDRESSES, "172.31.1.5"),
    );
    assert_eq!(failed(&d), Reason::SharingConflict);
    assert!(d.message().contains("80/TCP") && d.message().contains("servicetest/a"), "{}", d.message());
}

#[test]
fn sharing_with_another_key_is_refused() {
    let mut idx = seed_index();
    alloc(&mut idx, &make_svc("a").share("k1").ann(crate::api::annotations::ADDRESSES, "172.31.1.5"));
    let d = alloc(
        &mut idx,
        &make_svc("b").share("k2").port(81).ann(crate::api::annotations::ADDRESSES, "172.31.1.5"),
    );
    assert_eq!(failed(&d), Reason::SharingConflict);
}

#[test]
fn automatic_sharing_with_a_conflicting_port_takes_a_fresh_address() {
    let mut idx = seed_index();
    let a = alloc(&mut idx, &make_svc("a").group("virtualsub").share("k").port(80));
    let b = alloc(&mut idx, &make_svc("b").group("virtualsub").share("k").port(80));
    assert_ne!(a.addresses(), b.addresses());
    assert!(!b.rejected.is_empty());
}

#[test]
fn local_traffic_policy_may_not_share() {
    let mut idx = seed_index();
    let d = alloc(&mut idx, &make_svc("a").group("virtualsub").share("k").local());
    assert_eq!(failed(&d), Reason::SharingRefusedWithLocalPolicy);
    alloc(&mut idx, &make_svc("b").local().ann(crate::api::annotations::ADDRESSES, "172.31.1.5"));
    let d = alloc(
        &mut idx,
        &make_svc("c").share("k").port(81).ann(crate::api::annotations::ADDRESSES, "172.31.1.5"),
    );
    assert_eq!(failed(&d), Reason::SharingRefusedWithLocalPolicy);
}

#[test]
fn exhausted_pool_fails_then_succeeds_after_release() {
    let mut idx = seed_index();
    for n in 0..3 {
        assert_eq!(
            alloc(&mut idx, &make_svc(&format!("s{n}")).group("localaddr")).reason(),
            Reason::Allocated
        );
    }
    let d = alloc(&mut idx, &make_svc("s3").group("localaddr"));
    assert_eq!(failed(&d), Reason::PoolExhausted);
    assert!(d.message().contains("3/3"), "{}", d.message());
    idx.release(&ServiceKey::new("servicetest", "s1"));
    assert_eq!(alloc(&mut idx, &make_svc("s3").group("localaddr")).addresses(), vec![ip("192.0.2.201")]);
}

#[test]
fn missing_group_is_named() {
    let mut idx = seed_index();
    let d = alloc(&mut idx, &make_svc("x").group("nosuch"));
    assert_eq!(failed(&d), Reason::NoServiceGroup);
    assert!(d.message().contains("nosuch"));
    let mut empty = AllocationIndex::new();
    assert_eq!(failed(&alloc(&mut empty, &make_svc("y"))), Reason::NoServiceGroup);
}

#[test]
fn duplicate_group_names_are_not_guessed() {
    let mut idx = seed_index();
    idx.set_group(
        "other",
        "localaddr",
        &make_group(vec![pool("203.0.113.0/24", "203.0.113.0/24", "default")], vec![]),
    );
    let d = alloc(&mut idx, &make_svc("x").group("localaddr"));
    assert_eq!(failed(&d), Reason::DuplicateServiceGroup);
    assert!(d.message().contains("other") && d.message().contains("purelb-system"));
    idx.remove_group("other", "localaddr");
    assert_eq!(alloc(&mut idx, &make_svc("x").group("localaddr")).reason(), Reason::Allocated);
}

#[test]
fn invalid_group_is_reported_with_the_field() {
    let mut idx = AllocationIndex::new();
    idx.set_group("ns", "bad", &make_group(vec![pool("192.0.2.0/24", "198.51.100.0/24", "default")], vec![]));
    let d = alloc(&mut idx, &make_svc("x").group("bad"));
    assert_eq!(failed(&d), Reason::InvalidServiceGroup);
    assert!(d.message().contains("spec.local.v4pools[0]"), "{}", d.message());
}

#[test]
fn prefer_dual_stack_gets_both_or_degrades() {
    let mut idx = seed_index();
    let d = alloc(&mut idx, &make_svc("d").group("dual").families("PreferDualStack", &["IPv6", "IPv4"]));
    assert_eq!(d.addresses(), vec![ip("2001:db8:100::"), ip("198.51.100.0")], "ipFamilies order is kept");
    let d = alloc(
        &mut idx,
        &make_svc("v4only").group("virtualsub").families("PreferDualStack", &["IPv4", "IPv6"]),
    );
    assert_eq!(d.addresses(), vec![ip("172.31.1.0")]);
}

#[test]
fn require_dual_stack_fails_clearly_and_allocates_nothing() {
    let mut idx = seed_index();
    let d =
        alloc(&mut idx, &make_svc("r").group("virtualsub").families("RequireDualStack", &["IPv4", "IPv6"]));
    assert_eq!(failed(&d), Reason::FamilyUnavailable);
    assert!(d.message().contains("IPv6"), "{}", d.message());
    // Nothing was taken: the next Service still gets the first address.
    assert_eq!(alloc(&mut idx, &make_svc("n").group("virtualsub")).addresses(), vec![ip("172.31.1.0")]);
}

#[test]
fn dual_stack_is_all_or_nothing_when_one_family_is_exhausted() {
    let mut idx = seed_index();
    for n in 0..4 {
        alloc(&mut idx, &make_svc(&format!("v4-{n}")).group("dual"));
    }
    let d = alloc(&mut idx, &make_svc("r").group("dual").families("RequireDualStack", &["IPv4", "IPv6"]));
    assert_eq!(failed(&d), Reason::PoolExhausted);
    let six = alloc(&mut idx, &make_svc("six").group("dual").families("SingleStack", &["IPv6"]));
    assert_eq!(
        six.addresses(),
        vec![ip("2001:db8:100::")],
        "the failed dual-stack decision took no IPv6 address"
    );
}

#[test]
fn held_addresses_are_kept_and_decide_is_stable() {
    let mut idx = seed_index();
    let svc = make_svc("a").group("virtualsub");
    let first = alloc(&mut idx, &svc);
    alloc(&mut idx, &make_svc("b").group("virtualsub"));
    idx.release(&ServiceKey::new("servicetest", "a"));
    idx.claim(&svc.req(), &first.addresses());
    let again = idx.decide(&svc.req());
    assert_eq!(again.addresses(), first.addresses());
    assert_eq!(again.outcome.unwrap()[0].how, How::Kept);
}

#[test]
fn a_failed_change_keeps_the_working_address() {
    let mut idx = seed_index();
    let first = alloc(&mut idx, &make_svc("a").group("virtualsub"));
    alloc(&mut idx, &make_svc("b").ann(crate::api::annotations::ADDRESSES, "172.31.1.77"));
    let d = idx.decide(&make_svc("a").ann(crate::api::annotations::ADDRESSES, "172.31.1.77").req());
    assert_eq!(failed(&d), Reason::AddressInUse);
    assert_eq!(d.kept, first.addresses());
    assert!(d.message().starts_with("keeps 172.31.1.0"), "{}", d.message());
}

#[test]
fn deleted_group_keeps_held_addresses() {
    let mut idx = seed_index();
    let first = alloc(&mut idx, &make_svc("a").group("localaddr"));
    idx.remove_group("purelb-system", "localaddr");
    let d = idx.decide(&make_svc("a").group("localaddr").req());
    assert_eq!(d.addresses(), first.addresses());
}

#[test]
fn changing_the_group_moves_the_address() {
    let mut idx = seed_index();
    alloc(&mut idx, &make_svc("a").group("localaddr"));
    let d = alloc(&mut idx, &make_svc("a").group("virtualsub"));
    assert_eq!(d.addresses(), vec![ip("172.31.1.0")]);
    assert_eq!(
        alloc(&mut idx, &make_svc("b").group("localaddr")).addresses(),
        vec![ip("192.0.2.200")],
        "old address freed"
    );
}

#[test]
fn claim_reports_two_services_holding_one_address() {
    let mut idx = seed_index();
    let a = make_svc("a").group("virtualsub");
    let b = make_svc("b").group("virtualsub");
    assert!(idx.claim(&a.req(), &[ip("172.31.1.4")]).is_empty());
    let conflicts = idx.claim(&b.req(), &[ip("172.31.1.4")]);
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].holders, vec![ServiceKey::new("servicetest", "a")]);
    assert!(idx.held(&ServiceKey::new("servicetest", "b")).is_none());
    // The claimed address is not handed out again.
    assert_eq!(alloc(&mut idx, &make_svc("c").group("virtualsub")).addresses(), vec![ip("172.31.1.0")]);
    idx.claim(&make_svc("z").req(), &[ip("172.31.1.0")]);
    assert_eq!(alloc(&mut idx, &make_svc("d").group("virtualsub")).addresses(), vec![ip("172.31.1.1")]);
}

#[test]
fn group_added_after_claim_reserves_claimed_addresses() {
    let mut idx = AllocationIndex::new();
    idx.claim(&make_svc("a").req(), &[ip("172.31.1.0")]);
    idx.set_group(
        "default",
        "virtualsub",
        &make_group(vec![pool("172.31.1.0/24", "172.31.1.0/24", "/32")], vec![]),
    );
    assert_eq!(alloc(&mut idx, &make_svc("b").group("virtualsub")).addresses(), vec![ip("172.31.1.1")]);
    assert_eq!(idx.usage("virtualsub").unwrap().allocated, 2);
    assert_eq!(idx.usage("virtualsub").unwrap().available, 254);
}

#[test]
fn bad_annotations_are_read_errors_not_panics() {
    for (k, v) in [
        (crate::api::annotations::ADDRESSES, "not-an-ip"),
        (crate::api::annotations::ADDRESSES, "192.0.2.1,192.0.2.2"),
        (crate::api::annotations::SERVICE_GROUP, " "),
        (crate::api::annotations::ALLOW_SHARED_IP, ""),
    ] {
        assert!(ServiceRequest::from_service(&make_svc("x").ann(k, v).0).is_err(), "{k}={v}");
    }
}

#[test]
fn requested_family_must_be_wanted() {
    let mut idx = seed_index();
    let d = alloc(&mut idx, &make_svc("x").ann(crate::api::annotations::ADDRESSES, "2001:db8:100::5"));
    assert_eq!(failed(&d), Reason::InvalidRequest);
}

#[test]
fn ownership_follows_type_and_class() {
    assert_eq!(ownership(&make_svc("a").0, true), Ownership::Ours);
    assert_eq!(ownership(&make_svc("a").0, false), Ownership::OtherClass(None));
    let purelb = make_svc("a").spec(|s| s.load_balancer_class = Some("purelb.io/purelb".into()));
    assert_eq!(ownership(&purelb.0, false), Ownership::Ours);
    let other = make_svc("a").spec(|s| s.load_balancer_class = Some("example.com/other".into()));
    assert_eq!(ownership(&other.0, true), Ownership::OtherClass(Some("example.com/other".into())));
    let cluster_ip = make_svc("a").spec(|s| s.type_ = Some("ClusterIP".into()));
    assert_eq!(ownership(&cluster_ip.0, true), Ownership::NotLoadBalancer);
}

#[test]
fn editing_a_group_under_a_working_address_keeps_it() {
    let mut idx = seed_index();
    let first = alloc(&mut idx, &make_svc("a").group("localaddr"));
    idx.set_group(
        "purelb-system",
        "localaddr",
        &make_group(vec![pool("192.0.2.0/24", "192.0.2.210-192.0.2.212", "default")], vec![]),
    );
    let d = idx.decide(&make_svc("a").group("localaddr").req());
    assert_eq!(d.addresses(), first.addresses());
    assert!(d.trace.iter().any(|t| t.contains("no longer in a pool")), "{:?}", d.trace);
}

#[test]
fn a_claim_outside_every_pool_is_kept_after_restart() {
    let mut idx = seed_index();
    let svc = make_svc("a").group("localaddr");
    assert!(idx.claim(&svc.req(), &[ip("192.0.2.250")]).is_empty());
    assert_eq!(idx.decide(&svc.req()).addresses(), vec![ip("192.0.2.250")]);
}
