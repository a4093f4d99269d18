//! Tests of `validate`: one bad configuration per test.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::testing::*;
use purelb_core::api::LBNodeAgent;

fn messages(r: &Report) -> Vec<(Severity, String)> {
    r.findings
        .iter()
        .map(|f| (f.severity, format!("{} {}: {}", f.object, f.field.clone().unwrap_or_default(), f.message)))
        .collect()
}

fn with_default(mut s: Snapshot) -> Snapshot {
    s.groups.push(group("purelb-system", "default", &[("10.9.0.0/24", "10.9.0.0/28")], &[]));
    s
}

#[test]
fn a_good_configuration_has_no_findings() {
    let r = validate(&with_default(snapshot()));
    assert!(r.findings.is_empty() && !r.fails(true), "{:?}", messages(&r));
}

#[test]
fn a_pool_outside_its_subnet_is_an_error_naming_the_field() {
    let mut s = with_default(snapshot());
    s.groups.push(group("ns", "bad", &[("192.0.2.0/24", "198.51.100.0/28")], &[]));
    let r = validate(&s);
    assert_eq!(r.errors, 1);
    assert!(r.fails(false));
    assert_eq!(
        messages(&r)[0].1,
        "ServiceGroup ns/bad spec.local.v4pools[0]: pool 198.51.100.0/28 is not inside subnet 192.0.2.0/24"
    );
}

#[test]
fn overlaps_within_and_between_groups_are_errors() {
    let mut s = with_default(snapshot());
    s.groups.push(group(
        "ns",
        "a",
        &[("192.0.2.0/24", "192.0.2.0/28"), ("192.0.2.0/24", "192.0.2.8-192.0.2.20")],
        &[],
    ));
    s.groups.push(group("ns", "b", &[("192.0.2.0/24", "192.0.2.20/32")], &[]));
    let r = validate(&s);
    let m = messages(&r);
    assert!(
        m.iter()
            .any(|(_, t)| t.contains("overlaps pool 192.0.2.0/28 (spec.local.v4pools[0]) of the same group")),
        "{m:?}"
    );
    assert!(
        m.iter().any(|(_, t)| t.contains("pool 192.0.2.8-192.0.2.20 overlaps pool 192.0.2.20/32")),
        "{m:?}"
    );
}

#[test]
fn one_name_in_two_namespaces_is_an_error() {
    let mut s = with_default(snapshot());
    s.groups.push(group("a", "web", &[("192.0.2.0/24", "192.0.2.0/28")], &[]));
    s.groups.push(group("b", "web", &[("192.0.2.0/24", "192.0.2.64/28")], &[]));
    let m = messages(&validate(&s));
    assert!(
        m.iter().any(|(sev, t)| *sev == Severity::Error && t.contains("defined in namespaces a, b")),
        "{m:?}"
    );
}

#[test]
fn no_default_group_is_a_warning_that_fails_only_strict() {
    let mut s = snapshot();
    s.groups.push(group("ns", "web", &[("10.9.0.0/24", "10.9.0.0/28")], &[]));
    let r = validate(&s);
    assert_eq!((r.errors, r.warnings), (0, 1));
    assert!(!r.fails(false) && r.fails(true));
}

#[test]
fn a_bad_localint_or_extlbint_is_an_error() {
    let mut s = with_default(snapshot());
    s.agents.push(yaml::<LBNodeAgent>(
        "apiVersion: purelb.io/v1\nkind: LBNodeAgent\nmetadata: {name: default, namespace: purelb-system}\nspec:\n  local: {localint: 'eth(', extlbint: 'a/b'}\n",
    ));
    let m = messages(&validate(&s));
    assert!(
        m.iter().any(|(_, t)| t.contains("spec.local.localint: \"eth(\" is not a regular expression")),
        "{m:?}"
    );
    assert!(
        m.iter().any(|(_, t)| t.contains("spec.local.extlbint: \"a/b\" is not an interface name")),
        "{m:?}"
    );
}

#[test]
fn ignored_lbnodeagents_are_warnings() {
    let mut s = with_default(snapshot());
    for (ns, name) in [("purelb-system", "default"), ("purelb-system", "zz"), ("elsewhere", "x")] {
        s.agents.push(yaml::<LBNodeAgent>(&format!(
            "apiVersion: purelb.io/v1\nkind: LBNodeAgent\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  local: {{}}\n"
        )));
    }
    let m = messages(&validate(&s));
    assert_eq!(m.len(), 2, "{m:?}");
    assert!(m.iter().any(|(_, t)| t.contains("LBNodeAgent elsewhere/x") && t.contains("ignored")));
    assert!(
        m.iter()
            .any(|(_, t)| t.contains("LBNodeAgent purelb-system/zz")
                && t.contains("use purelb-system/default"))
    );
}

#[test]
fn a_default_aggregation_pool_on_no_node_is_a_warning_when_nodes_are_known() {
    let mut s = with_default(snapshot());
    s.leases.push(lease("n1", "eth0", "10.9.0.0/24", 0, 10));
    s.leases.push(lease("n2", "eth0", "10.9.0.0/24", 0, 10));
    s.groups.push(group("ns", "lan", &[("192.0.2.0/24", "192.0.2.0/28")], &[]));
    s.groups.push(yaml(
        "apiVersion: purelb.io/v1\nkind: ServiceGroup\nmetadata: {name: routed, namespace: ns}\nspec:\n  local:\n    v4pools:\n    - {subnet: '198.51.100.0/24', pool: '198.51.100.0/24', aggregation: '/32'}\n",
    ));
    let r = validate(&s);
    let m = messages(&r);
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(
        m[0].1.contains("ServiceGroup ns/lan")
            && m[0].1.contains("subnet 192.0.2.0/24 of pool 192.0.2.0/28 is on no node"),
        "{m:?}"
    );
    // Two nodes on one LAN: their subnet is named once.
    assert!(m[0].1.contains("from their agents' Leases): 10.9.0.0/24)"), "{m:?}");
    // Without any node known, nothing is said.
    s.leases.clear();
    assert!(validate(&s).findings.is_empty());
}
