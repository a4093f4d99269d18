//! Unit tests of [`reconcile()`]: one per kind of [`Outcome`], with the condition each one words, and
//! what [`Outcome::commit`] records and frees.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, ServiceStatus};

use super::tests::{Svc, alloc, ip, make_svc, seed_index};
use super::*;
use crate::api::annotations;

/// `svc` showing `ips` in `status.loadBalancer.ingress`.
fn showing(mut svc: Svc, ips: &[&str]) -> Svc {
    let ingress = ips.iter().map(|i| LoadBalancerIngress { ip: Some(i.to_string()), ..Default::default() });
    svc.0.status = Some(ServiceStatus {
        load_balancer: Some(LoadBalancerStatus { ingress: Some(ingress.collect()) }),
        ..Default::default()
    });
    svc
}

fn key(name: &str) -> ServiceKey {
    ServiceKey::new("servicetest", name)
}

#[test]
fn a_new_service_is_decided_and_committed_by_the_caller() {
    let mut idx = seed_index();
    let outcome = reconcile(&mut idx, &make_svc("a").group("localaddr").0);
    let Outcome::Decided { decision, condition, .. } = &outcome else { panic!("{outcome:?}") };
    assert_eq!(decision.addresses(), [ip("192.0.2.200")]);
    assert_eq!((condition.status, condition.reason), (true, Reason::Allocated));
    assert_eq!(
        condition.message,
        "192.0.2.200 from pool localaddr (192.0.2.200-192.0.2.202; lowest free address)"
    );
    // Nothing is recorded until the caller commits.
    assert!(idx.held(&key("a")).is_none());
    assert!(outcome.commit(&mut idx).is_empty());
    assert_eq!(idx.held(&key("a")).unwrap().addresses, [ip("192.0.2.200")]);
}

#[test]
fn a_shown_address_is_claimed_before_deciding_and_kept() {
    let mut idx = seed_index();
    let outcome = reconcile(&mut idx, &showing(make_svc("a").group("virtualsub"), &["172.31.1.9"]).0);
    let decision = outcome.decision().unwrap();
    assert_eq!(decision.addresses(), [ip("172.31.1.9")]);
    assert_eq!(idx.held(&key("a")).unwrap().addresses, [ip("172.31.1.9")]);
    assert_eq!(outcome.condition().message, "172.31.1.9 from pool virtualsub (172.31.1.0/24; already held)");
}

#[test]
fn a_shown_address_held_by_another_is_a_conflict_with_no_winner() {
    let mut idx = seed_index();
    alloc(&mut idx, &make_svc("a").group("virtualsub"));
    let outcome = reconcile(&mut idx, &showing(make_svc("b").group("virtualsub"), &["172.31.1.0"]).0);
    let Outcome::Conflict { shown, conflicts, condition, .. } = &outcome else { panic!("{outcome:?}") };
    assert_eq!(shown, &[ip("172.31.1.0")]);
    assert_eq!(conflicts[0].holders, [key("a")]);
    assert_eq!((condition.status, condition.reason), (false, Reason::AddressConflict));
    assert_eq!(
        condition.message,
        format!(
            "172.31.1.0 is also held by servicetest/a: {}; PureLB does not pick a winner: change or remove one of the Services",
            conflicts[0].why
        )
    );
    assert!(outcome.commit(&mut idx).is_empty());
    assert!(idx.held(&key("b")).is_none());
}

#[test]
fn an_unreadable_request_keeps_what_it_holds_and_says_so() {
    let mut idx = seed_index();
    alloc(&mut idx, &make_svc("a").group("localaddr"));
    let outcome = reconcile(&mut idx, &make_svc("a").group("localaddr").ann(annotations::ADDRESSES, "x").0);
    let Outcome::InvalidRequest { error, kept, condition, .. } = &outcome else { panic!("{outcome:?}") };
    assert_eq!(kept.as_ref().unwrap().addresses, [ip("192.0.2.200")]);
    assert_eq!((condition.status, condition.reason), (true, Reason::InvalidRequest));
    assert_eq!(condition.message, format!("keeps 192.0.2.200; the request cannot be read: {error}"));
}

#[test]
fn an_unreadable_request_without_addresses_says_only_what_is_wrong() {
    let mut idx = seed_index();
    let outcome = reconcile(&mut idx, &make_svc("a").ann(annotations::ADDRESSES, "x").0);
    let Outcome::InvalidRequest { error, kept, condition, .. } = &outcome else { panic!("{outcome:?}") };
    assert!(kept.is_none());
    assert_eq!((condition.status, condition.message.as_str()), (false, error.to_string().as_str()));
}

#[test]
fn an_unreadable_request_showing_an_address_claims_it_first() {
    let mut idx = seed_index();
    let svc = showing(make_svc("a").group("virtualsub").ann(annotations::ADDRESSES, "x"), &["172.31.1.7"]);
    let outcome = reconcile(&mut idx, &svc.0);
    assert!(matches!(outcome, Outcome::InvalidRequest { .. }), "{outcome:?}");
    assert!(outcome.condition().status);
    assert_eq!(idx.held(&key("a")).unwrap().addresses, [ip("172.31.1.7")]);
}

#[test]
fn a_refused_change_keeps_the_working_address_and_stays_true() {
    let mut idx = seed_index();
    alloc(&mut idx, &make_svc("a").group("localaddr"));
    alloc(&mut idx, &make_svc("b").ann(annotations::ADDRESSES, "172.31.1.77"));
    let outcome = reconcile(&mut idx, &make_svc("a").ann(annotations::ADDRESSES, "172.31.1.77").0);
    let condition = outcome.condition();
    assert_eq!((condition.status, condition.reason), (true, Reason::AddressInUse));
    assert!(
        condition.message.starts_with("keeps 192.0.2.200; the change was refused: "),
        "{}",
        condition.message
    );
    assert!(outcome.commit(&mut idx).is_empty());
    assert_eq!(idx.held(&key("a")).unwrap().addresses, [ip("192.0.2.200")]);
}

#[test]
fn a_failure_without_addresses_is_false() {
    let mut idx = seed_index();
    let outcome = reconcile(&mut idx, &make_svc("a").group("nosuch").0);
    let condition = outcome.condition();
    assert_eq!((condition.status, condition.reason), (false, Reason::NoServiceGroup));
    assert!(outcome.commit(&mut idx).is_empty());
    assert!(idx.held(&key("a")).is_none());
}

#[test]
fn commit_returns_the_addresses_a_move_frees() {
    let mut idx = seed_index();
    alloc(&mut idx, &make_svc("a").group("localaddr"));
    let outcome = reconcile(&mut idx, &make_svc("a").group("virtualsub").0);
    assert_eq!(outcome.decision().unwrap().addresses(), [ip("172.31.1.0")]);
    assert_eq!(outcome.commit(&mut idx), [ip("192.0.2.200")]);
    assert!(idx.holding(ip("192.0.2.200")).is_none());
}

#[test]
fn a_service_the_index_already_holds_is_not_claimed_again() {
    let mut idx = seed_index();
    alloc(&mut idx, &make_svc("a").group("localaddr"));
    // A stale or hand-edited status shows another address: the index is the truth.
    let outcome = reconcile(&mut idx, &showing(make_svc("a").group("localaddr"), &["192.0.2.201"]).0);
    assert_eq!(outcome.decision().unwrap().addresses(), [ip("192.0.2.200")]);
    assert!(idx.holding(ip("192.0.2.201")).is_none());
}

#[test]
fn an_unreadable_request_whose_shown_address_is_taken_holds_nothing() {
    let mut idx = seed_index();
    alloc(&mut idx, &make_svc("a").group("virtualsub"));
    let svc = showing(make_svc("b").group("virtualsub").ann(annotations::ADDRESSES, "x"), &["172.31.1.0"]);
    let outcome = reconcile(&mut idx, &svc.0);
    let Outcome::InvalidRequest { error, kept, condition, .. } = &outcome else { panic!("{outcome:?}") };
    assert!(kept.is_none());
    assert_eq!((condition.status, condition.message.clone()), (false, error.to_string()));
    assert!(idx.held(&key("b")).is_none());
    assert_eq!(idx.holding(ip("172.31.1.0")).unwrap().holders.len(), 1);
}
