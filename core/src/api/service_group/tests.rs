//! Tests of the ServiceGroup CRD: deserialisation of every accepted form, `pools()`, and the CEL rules
//! evaluated client-side (kube-cel) on good and bad groups.
#![allow(clippy::unwrap_used)]

use super::*;
use kube::CustomResourceExt;
use kube::core::cel::{ErrorKind, Validator};
use serde_json::{Value, json};

// === deserialisation and pools() ===

/// The seed's `virtualsub` group, verbatim.
const SEED_VIRTUALSUB: &str = "\
apiVersion: purelb.io/v1
kind: ServiceGroup
metadata:
  name: virtualsub
spec:
  local:
    v4pools:
    - subnet: '172.31.1.0/24'
      pool: '172.31.1.0/24'
      aggregation: '/32'
";

fn pool(subnet: &str, pool: &str, aggregation: &str) -> PoolSpec {
    PoolSpec { subnet: subnet.into(), pool: pool.into(), aggregation: aggregation.into() }
}

fn local_of(yaml: &str) -> ServiceGroupLocal {
    let sg: ServiceGroup = serde_saphyr::from_str(yaml).unwrap();
    sg.spec.local.unwrap()
}

#[test]
fn seed_virtualsub_deserialises_and_lists_its_pool() {
    let sg: ServiceGroup = serde_saphyr::from_str(SEED_VIRTUALSUB).unwrap();
    assert_eq!(sg.metadata.name.as_deref(), Some("virtualsub"));
    assert_eq!(sg.metadata.namespace, None);
    let pools = sg.spec.local.unwrap().pools().unwrap();
    assert_eq!(
        pools,
        vec![(
            "spec.local.v4pools[0]".to_string(),
            DeclaredFamily::V4,
            pool("172.31.1.0/24", "172.31.1.0/24", "/32")
        )]
    );
}

#[test]
fn single_pools_keep_their_family_and_default_aggregation() {
    let local = local_of(
        "apiVersion: purelb.io/v1\nkind: ServiceGroup\nmetadata: {name: single}\nspec:\n  local:\n    \
             v4pool: {subnet: 192.0.2.0/24, pool: 192.0.2.200-192.0.2.220}\n    \
             v6pool: {subnet: '2001:db8::/64', pool: '2001:db8::100/120', aggregation: /128}\n",
    );
    assert_eq!(
        local.pools().unwrap(),
        vec![
            (
                "spec.local.v4pool".to_string(),
                DeclaredFamily::V4,
                pool("192.0.2.0/24", "192.0.2.200-192.0.2.220", "default")
            ),
            (
                "spec.local.v6pool".to_string(),
                DeclaredFamily::V6,
                pool("2001:db8::/64", "2001:db8::100/120", "/128")
            ),
        ]
    );
}

#[test]
fn legacy_fields_make_one_pool_of_either_family() {
    let local = local_of(
        "apiVersion: purelb.io/v1\nkind: ServiceGroup\nmetadata: {name: legacy}\nspec:\n  local:\n    \
             subnet: 192.0.2.0/24\n    pool: 192.0.2.0/28\n",
    );
    assert_eq!(
        local.pools().unwrap(),
        vec![(
            "spec.local".to_string(),
            DeclaredFamily::Any,
            pool("192.0.2.0/24", "192.0.2.0/28", "default")
        )]
    );
}

#[test]
fn lists_come_before_singles_and_legacy() {
    let local = ServiceGroupLocal {
        v4pools: vec![pool("192.0.2.0/24", "192.0.2.0/28", "default")],
        v6pools: vec![pool("2001:db8::/64", "2001:db8::/120", "default")],
        v4pool: Some(pool("198.51.100.0/24", "198.51.100.0/28", "/32")),
        subnet: Some("203.0.113.0/24".into()),
        pool: Some("203.0.113.0/28".into()),
        ..Default::default()
    };
    let paths: Vec<String> = local.pools().unwrap().into_iter().map(|(path, _, _)| path).collect();
    assert_eq!(paths, ["spec.local.v4pools[0]", "spec.local.v4pool", "spec.local.v6pools[0]", "spec.local"]);
}

#[test]
fn legacy_subnet_without_pool_is_an_error() {
    let local = ServiceGroupLocal { subnet: Some("192.0.2.0/24".into()), ..Default::default() };
    assert_eq!(local.pools(), Err(PoolSpecError::LegacyIncomplete { missing: "pool", given: "subnet" }));
    let local = ServiceGroupLocal { pool: Some("192.0.2.0/28".into()), ..Default::default() };
    assert_eq!(local.pools(), Err(PoolSpecError::LegacyIncomplete { missing: "subnet", given: "pool" }));
}

#[test]
fn serialisation_round_trips_and_omits_empty_fields() {
    let sg = ServiceGroup::new(
        "g",
        ServiceGroupSpec {
            local: Some(ServiceGroupLocal {
                v4pools: vec![pool("192.0.2.0/24", "192.0.2.0/28", "default")],
                ..Default::default()
            }),
        },
    );
    let value = serde_json::to_value(&sg).unwrap();
    assert_eq!(
        value["spec"],
        json!({"local": {"v4pools": [{"subnet": "192.0.2.0/24", "pool": "192.0.2.0/28", "aggregation": "default"}]}})
    );
    assert_eq!(serde_json::from_value::<ServiceGroup>(value).unwrap().spec, sg.spec);
}

// === the CRD ===

#[test]
fn crd_has_short_name_status_and_printer_columns() {
    let crd = ServiceGroup::crd();
    assert_eq!(crd.spec.names.short_names, Some(vec!["sg".to_string()]));
    assert_eq!(crd.spec.scope, "Namespaced");
    let version = &crd.spec.versions[0];
    assert!(version.subresources.as_ref().unwrap().status.is_some());
    let columns: Vec<(&str, &str)> = version
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| (c.name.as_str(), c.json_path.as_str()))
        .collect();
    assert_eq!(
        columns,
        [
            ("Pools", ".status.pools"),
            ("Allocated", ".status.allocated"),
            ("Available", ".status.available"),
            ("Age", ".metadata.creationTimestamp")
        ]
    );
}

// === the CEL rules, evaluated client-side by kube-cel ===
//
// The same cases run against a real kube-apiserver in the lab's e2e tests; kube-cel is a second
// implementation, so a rule both accept is unlikely to lean on one implementation's quirk.

fn schema() -> Value {
    let crd = ServiceGroup::crd();
    let schema = crd.spec.versions[0].schema.as_ref().unwrap().open_api_v3_schema.as_ref().unwrap();
    serde_json::to_value(schema).unwrap()
}

/// The (path, message) of every rule `spec.local` breaks. Any failure other than a rule evaluating to
/// false (an evaluation error, an unsupported function) fails the test: it would reject for the wrong
/// reason and with the wrong message.
fn violations(local: Value) -> Vec<(String, String)> {
    let object = json!({
        "apiVersion": "purelb.io/v1",
        "kind": "ServiceGroup",
        "metadata": {"name": "g", "namespace": "default"},
        "spec": {"local": local},
    });
    match Validator::new().validate(&schema(), &object, None) {
        Ok(()) => vec![],
        Err(errors) => errors
            .into_vec()
            .into_iter()
            .map(|e| {
                assert_eq!(e.kind, ErrorKind::ValidationFailure, "{local}: {} ({})", e.message, e.rule);
                (e.field_path, e.message)
            })
            .collect(),
    }
}

fn v4pools(subnet: &str, pool: &str, aggregation: Option<&str>) -> Value {
    let mut p = json!({"subnet": subnet, "pool": pool});
    if let Some(aggregation) = aggregation {
        p["aggregation"] = json!(aggregation);
    }
    json!({"v4pools": [p]})
}

fn v6pools(subnet: &str, pool: &str, aggregation: Option<&str>) -> Value {
    let Value::Object(mut local) = v4pools(subnet, pool, aggregation) else { unreachable!() };
    let list = local.remove("v4pools").unwrap();
    json!({"v6pools": list})
}

#[track_caller]
fn accepted(local: Value) {
    assert_eq!(violations(local.clone()), vec![], "{local} should be accepted");
}

/// `local` breaks exactly one rule, reported at `path` with a message containing `message`.
#[track_caller]
fn rejected(local: Value, path: &str, message: &str) {
    let found = violations(local.clone());
    assert!(
        found.len() == 1 && found[0].0 == path && found[0].1.contains(message),
        "{local}: expected one violation at {path} containing {message:?}, got {found:?}"
    );
}

#[test]
fn cel_accepts_the_seed_group() {
    let sg: ServiceGroup = serde_saphyr::from_str(SEED_VIRTUALSUB).unwrap();
    accepted(serde_json::to_value(sg.spec.local).unwrap());
}

#[test]
fn cel_accepts_good_pools() {
    accepted(v4pools("192.0.2.0/24", "192.0.2.200-192.0.2.220", None));
    accepted(v4pools("192.0.2.0/24", "192.0.2.200 - 192.0.2.220", Some("default")));
    accepted(v4pools("192.0.2.0/24", "192.0.2.7-192.0.2.7", Some("/0")));
    accepted(v4pools("10.0.0.0/8", "10.0.0.9-10.0.0.10", Some("/24"))); // 9 < 10 though "9" > "1"
    accepted(v4pools("192.0.2.0/24", "192.0.2.0/28", Some("/32")));
    accepted(v6pools("2001:db8:0:1::/64", "2001:db8:0:1::100/120", Some("/128")));
    accepted(v6pools("2001:db8::/64", "2001:db8::1-2001:db8::ffff", Some("/64")));
    accepted(v6pools("2001:db8::/64", "2001:DB8::A-2001:db8::b", None));
    accepted(v6pools("::/0", "::-::1", None));
    accepted(v6pools("::/0", "1:2:3:4:5:6:7::-1:2:3:4:5:6:7:8", None));
    accepted(v6pools("::/0", "::2:3:4:5:6:7:8-1::", None));
    accepted(json!({"v4pool": {"subnet": "192.0.2.0/24", "pool": "192.0.2.0/28"}}));
    accepted(json!({"v6pool": {"subnet": "2001:db8::/64", "pool": "2001:db8::/120"}}));
    accepted(json!({"subnet": "192.0.2.0/24", "pool": "192.0.2.10-192.0.2.20", "aggregation": "default"}));
    accepted(json!({"subnet": "2001:db8::/64", "pool": "2001:db8::/120", "aggregation": "/64"}));
}

#[test]
fn cel_rejects_a_subnet_that_is_not_a_cidr() {
    rejected(
        v4pools("192.0.2.0", "192.0.2.0/28", None),
        "spec.local.v4pools[0].subnet",
        "subnet must be a CIDR",
    );
    rejected(json!({"subnet": "nope", "pool": "192.0.2.0/28"}), "spec.local.subnet", "subnet must be a CIDR");
}

#[test]
fn cel_rejects_a_pool_that_is_neither_cidr_nor_range() {
    let message = "pool must be a CIDR (192.0.2.0/28) or a range";
    rejected(v4pools("192.0.2.0/24", "192.0.2.1-foo", None), "spec.local.v4pools[0].pool", message);
    rejected(
        v4pools("192.0.2.0/24", "192.0.2.1-192.0.2.2-192.0.2.3", None),
        "spec.local.v4pools[0].pool",
        message,
    );
    rejected(v4pools("192.0.2.0/24", "192.0.2.1", None), "spec.local.v4pools[0].pool", message);
    rejected(json!({"v4pool": {"subnet": "192.0.2.0/24", "pool": "x"}}), "spec.local.v4pool.pool", message);
}

#[test]
fn cel_rejects_a_pool_outside_its_subnet() {
    let (path, message) = ("spec.local.v4pools[0].pool", "pool must lie inside subnet");
    rejected(v4pools("192.0.2.0/24", "198.51.100.0/28", None), path, message);
    rejected(v4pools("192.0.2.0/25", "192.0.2.0/24", None), path, message);
    rejected(v4pools("192.0.2.0/24", "192.0.2.250-192.0.3.5", None), path, message);
    rejected(v6pools("2001:db8::/64", "2001:db8:1::/120", None), "spec.local.v6pools[0].pool", message);
    rejected(json!({"subnet": "192.0.2.0/24", "pool": "10.0.0.0/28"}), "spec.local.pool", message);
}

#[test]
fn cel_rejects_a_range_whose_first_address_is_above_its_last() {
    let message = "the first address of a range must not be above the last";
    rejected(v4pools("192.0.2.0/24", "192.0.2.20-192.0.2.10", None), "spec.local.v4pools[0].pool", message);
    rejected(v4pools("10.0.0.0/8", "10.2.0.0-10.1.255.255", None), "spec.local.v4pools[0].pool", message);
    rejected(
        v6pools("2001:db8::/64", "2001:db8::ff-2001:db8::f", None),
        "spec.local.v6pools[0].pool",
        message,
    );
    rejected(
        v6pools("2001:db8::/64", "2001:db8::1:0-2001:db8::ffff", None),
        "spec.local.v6pools[0].pool",
        message,
    );
    rejected(v6pools("::/0", "1:2:3:4:5:6:7:8-1:2:3:4:5:6:7::", None), "spec.local.v6pools[0].pool", message);
    rejected(json!({"subnet": "::/0", "pool": "::1-::"}), "spec.local.pool", message);
}

#[test]
fn cel_rejects_bad_aggregation() {
    let syntax = "aggregation must be 'default' or a prefix length";
    rejected(
        v4pools("192.0.2.0/24", "192.0.2.0/28", Some("32")),
        "spec.local.v4pools[0].aggregation",
        syntax,
    );
    rejected(
        v4pools("192.0.2.0/24", "192.0.2.0/28", Some("/032")),
        "spec.local.v4pools[0].aggregation",
        syntax,
    );
    rejected(
        v6pools("2001:db8::/64", "2001:db8::/120", Some("/129")),
        "spec.local.v6pools[0].aggregation",
        syntax,
    );
    let v4 = "aggregation of an IPv4 pool must be 'default' or /0 to /32";
    rejected(v4pools("192.0.2.0/24", "192.0.2.0/28", Some("/33")), "spec.local.v4pools[0].aggregation", v4);
    rejected(
        json!({"subnet": "192.0.2.0/24", "pool": "192.0.2.0/28", "aggregation": "/64"}),
        "spec.local.aggregation",
        v4,
    );
}

#[test]
fn cel_rejects_a_pool_in_the_other_familys_list() {
    rejected(
        v4pools("2001:db8::/64", "2001:db8::/120", None),
        "spec.local.v4pools",
        "v4pools holds IPv4 pools only",
    );
    rejected(
        v6pools("192.0.2.0/24", "192.0.2.0/28", None),
        "spec.local.v6pools",
        "v6pools holds IPv6 pools only",
    );
    rejected(
        json!({"v4pool": {"subnet": "2001:db8::/64", "pool": "2001:db8::/120"}}),
        "spec.local.v4pool",
        "v4pool holds IPv4 pools only",
    );
    rejected(
        json!({"v6pool": {"subnet": "192.0.2.0/24", "pool": "192.0.2.0/28"}}),
        "spec.local.v6pool",
        "v6pool holds IPv6 pools only",
    );
}

#[test]
fn cel_rejects_an_incomplete_legacy_pool() {
    rejected(json!({"subnet": "192.0.2.0/24"}), "spec.local.pool", "pool is required when subnet is set");
    rejected(json!({"pool": "192.0.2.0/28"}), "spec.local.subnet", "subnet is required when pool is set");
    rejected(
        json!({"aggregation": "/32"}),
        "spec.local.subnet",
        "subnet is required when aggregation is set",
    );
}

#[test]
fn cel_explains_a_mixed_or_dotted_range() {
    let found = violations(v4pools("192.0.2.0/24", "192.0.2.1-2001:db8::1", None));
    assert!(
        found.iter().any(|(_, m)| m.contains("both addresses of a range must be of the same family")),
        "{found:?}"
    );
    rejected(
        v6pools("64:ff9b::/96", "64:ff9b::1.2.3.4-64:ff9b::1.2.3.5", None),
        "spec.local.v6pools[0].pool",
        "write the addresses of an IPv6 range in hex groups",
    );
}

/// The range-order rule agrees with Rust's address order on every pair of a set of addresses, each
/// written compressed (`::`), in full, and in upper case.
#[test]
fn cel_range_order_matches_address_order() {
    use std::net::{Ipv4Addr, Ipv6Addr};
    let compiled = kube::core::cel::compile_schema(&schema());
    let order_violated = |pool: String| {
        let object = json!({
            "apiVersion": "purelb.io/v1",
            "kind": "ServiceGroup",
            "metadata": {"name": "g", "namespace": "default"},
            "spec": {"local": {"subnet": if pool.contains(':') { "::/0" } else { "0.0.0.0/0" }, "pool": pool}},
        });
        match Validator::new().validate_compiled(&compiled, &object, None) {
            Ok(()) => false,
            Err(errors) => {
                let errors = errors.into_vec();
                assert!(
                    errors.len() == 1 && errors[0].message.contains("must not be above the last"),
                    "{pool}: {errors:?}"
                );
                true
            }
        }
    };

    let v6: Vec<Ipv6Addr> = [
        "::",
        "::1",
        "::1:0",
        "::ffff",
        "1::",
        "1::1",
        "0:1::",
        "2001:db8::",
        "2001:db8::1",
        "2001:db8::ffff:0",
        "2001:db8:0:1::",
        "fe80::1:2:3:4",
        "ffff::",
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    ]
    .iter()
    .map(|a| a.parse().unwrap())
    .collect();
    let spellings = |a: &Ipv6Addr| {
        let full = a.segments().iter().map(|g| format!("{g:x}")).collect::<Vec<_>>().join(":");
        [a.to_string(), full.clone(), full.to_uppercase()]
    };
    for a in &v6 {
        for b in &v6 {
            for (sa, sb) in spellings(a).iter().zip(spellings(b).iter().rev()) {
                assert_eq!(order_violated(format!("{sa}-{sb}")), a > b, "{sa}-{sb}");
            }
        }
    }

    let v4: Vec<Ipv4Addr> =
        ["0.0.0.0", "0.0.0.9", "0.0.0.10", "10.0.0.0", "10.1.255.255", "10.2.0.0", "255.255.255.255"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
    for a in &v4 {
        for b in &v4 {
            assert_eq!(order_violated(format!("{a}-{b}")), a > b, "{a}-{b}");
        }
    }
}
