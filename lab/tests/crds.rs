//! End-to-end tests of the CRDs that deploy/ ships, against a real kube-apiserver: the seed's
//! ServiceGroup is accepted verbatim, and each invalid ServiceGroup is rejected by the API server's CEL
//! rules with a message naming the field.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use kube::api::{Api, PostParams};
use purelb_core::api::{LBNodeAgent, ServiceGroup};
use purelb_lab::{TestNamespace, shared};

fn sg(local: &str) -> ServiceGroup {
    yaml(&format!(
        "apiVersion: purelb.io/v1\nkind: ServiceGroup\nmetadata:\n  name: bad\nspec:\n  local:\n{local}"
    ))
}

fn v4(subnet: &str, pool: &str, aggregation: &str) -> String {
    format!(
        "    v4pools:\n    - subnet: '{subnet}'\n      pool: '{pool}'\n      aggregation: '{aggregation}'\n"
    )
}

fn v6(subnet: &str, pool: &str, aggregation: &str) -> String {
    format!(
        "    v6pools:\n    - subnet: '{subnet}'\n      pool: '{pool}'\n      aggregation: '{aggregation}'\n"
    )
}

#[tokio::test]
async fn the_seed_servicegroup_is_accepted_verbatim_and_listed_with_columns() {
    let lab = shared().await;
    install(lab).await;
    kubectl(lab, &["create", "namespace", "servicetest"]);
    kubectl(lab, &["apply", "-f", example("endpoints.yaml").to_str().unwrap()]);
    let out = kubectl(lab, &["get", "sg", "-n", "default", "virtualsub"]);
    for column in ["NAME", "POOLS", "ALLOCATED", "AVAILABLE", "AGE", "virtualsub"] {
        assert!(out.contains(column), "{column} missing from `kubectl get sg`:\n{out}");
    }
}

#[tokio::test]
async fn invalid_servicegroups_are_rejected_by_the_api_server_naming_the_field() {
    let lab = shared().await;
    install(lab).await;
    let client = lab.admin_client().await.unwrap();
    let ns = TestNamespace::new(&client, "crd").await.unwrap();
    let api: Api<ServiceGroup> = Api::namespaced(client.clone(), ns.name());
    let cases: Vec<(&str, String, &str)> = vec![
        ("subnet not a CIDR", v4("192.0.2.0", "192.0.2.0/28", "default"), "spec.local.v4pools[0].subnet"),
        (
            "pool neither CIDR nor range",
            v4("192.0.2.0/24", "192.0.2.1-foo", "default"),
            "spec.local.v4pools[0].pool",
        ),
        (
            "pool outside its subnet",
            v4("192.0.2.0/24", "198.51.100.0/28", "default"),
            "pool must lie inside subnet",
        ),
        (
            "range outside its subnet",
            v4("192.0.2.0/25", "192.0.2.100-192.0.2.200", "default"),
            "pool must lie inside subnet",
        ),
        (
            "v4 range start above end",
            v4("192.0.2.0/24", "192.0.2.20-192.0.2.10", "default"),
            "must not be above the last",
        ),
        (
            "v6 range start above end",
            v6("2001:db8::/64", "2001:db8::1:0-2001:db8::ffff", "default"),
            "must not be above the last",
        ),
        (
            "aggregation not default or /NN",
            v4("192.0.2.0/24", "192.0.2.0/28", "32"),
            "spec.local.v4pools[0].aggregation",
        ),
        ("v4 aggregation above /32", v4("192.0.2.0/24", "192.0.2.0/28", "/33"), "/0 to /32"),
        (
            "v6 aggregation above /128",
            v6("2001:db8::/64", "2001:db8::/120", "/129"),
            "spec.local.v6pools[0].aggregation",
        ),
        ("v6 pool in v4pools", v4("2001:db8::/64", "2001:db8::/120", "default"), "spec.local.v4pools"),
        ("v4 pool in v6pools", v6("192.0.2.0/24", "192.0.2.0/28", "default"), "spec.local.v6pools"),
        ("legacy subnet without pool", "    subnet: '192.0.2.0/24'\n".to_string(), "spec.local.pool"),
    ];
    for (what, local, expect) in cases {
        let err = api.create(&PostParams::default(), &sg(&local)).await.expect_err(what);
        let kube::Error::Api(status) = &err else { panic!("{what}: not an API error: {err}") };
        assert_eq!(status.code, 422, "{what}: {status:?}");
        assert!(
            status.message.contains(expect),
            "{what}: the message does not name {expect:?}: {}",
            status.message
        );
    }
    // The same shapes, valid, are accepted (so the rejections above are about the rule, not the shape).
    for (n, local) in [
        v4("192.0.2.0/24", "192.0.2.10-192.0.2.20", "/32"),
        v6("2001:db8::/64", "2001:db8::ffff-2001:db8::1:0", "default"),
        "    subnet: '192.0.2.0/24'\n    pool: '192.0.2.0/28'\n".to_string(),
    ]
    .into_iter()
    .enumerate()
    {
        let mut good = sg(&local);
        good.metadata.name = Some(format!("good-{n}"));
        api.create(&PostParams::default(), &good)
            .await
            .unwrap_or_else(|e| panic!("valid group {n} refused: {e}"));
    }
    let lbna: Api<LBNodeAgent> = Api::namespaced(client.clone(), ns.name());
    let bad: LBNodeAgent = yaml(
        "apiVersion: purelb.io/v1\nkind: LBNodeAgent\nmetadata:\n  name: bad\nspec:\n  local:\n    localint: 'eth('\n",
    );
    let err = lbna.create(&PostParams::default(), &bad).await.expect_err("bad regex");
    assert!(err.to_string().contains("localint"), "{err}");
    ns.cleanup().await.unwrap();
}
