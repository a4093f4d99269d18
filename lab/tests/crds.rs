//! End-to-end tests of the CRDs that deploy/ ships, against a real kube-apiserver: the seed's
//! ServiceGroup is accepted verbatim, and each invalid ServiceGroup is rejected by the API server's CEL
//! rules with a message naming the field. Also deploy/'s FlowSchema: the API server classifies
//! PureLB's Lease requests, and only those, into the `leader-election` priority level.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use k8s_openapi::api::flowcontrol::v1::{FlowSchema, PriorityLevelConfiguration};
use kube::api::{Api, PostParams};
use purelb_core::api::{LBNodeAgent, ServiceGroup};
use purelb_lab::{TestNamespace, client_from_kubeconfig, shared};

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

/// The FlowSchema and priority level UIDs the API server answered `path` with (its APF headers).
async fn classified(client: &kube::Client, path: &str) -> (String, String) {
    let request = http::Request::get(path).body(Vec::new()).unwrap();
    let response = client.send(request.map(kube::client::Body::from)).await.unwrap();
    assert!(response.status().is_success(), "GET {path}: {}", response.status());
    let header = |name: &str| {
        response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
    };
    (header("x-kubernetes-pf-flowschema-uid"), header("x-kubernetes-pf-prioritylevel-uid"))
}

#[tokio::test]
async fn the_flowschema_puts_purelb_lease_requests_and_only_those_in_leader_election() {
    let lab = shared().await;
    install(lab).await;
    let admin = lab.admin_client().await.unwrap();
    let schema = Api::<FlowSchema>::all(admin.clone()).get("purelb-leases").await.unwrap();
    let dangling = schema
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_.as_deref() == Some("Dangling"))
        .and_then(|c| c.status);
    assert_ne!(
        dangling.as_deref(),
        Some("True"),
        "the FlowSchema names a priority level the API server lacks"
    );
    let schema_uid = schema.metadata.uid.unwrap();
    let level = Api::<PriorityLevelConfiguration>::all(admin).get("leader-election").await.unwrap();
    let level_uid = level.metadata.uid.unwrap();
    for account in ["purelb-agent", "purelb-allocator"] {
        let kubeconfig = lab.service_account_kubeconfig(NS, account).await.unwrap();
        let client = client_from_kubeconfig(&kubeconfig).await.unwrap();
        let leases = format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases");
        assert_eq!(
            classified(&client, &leases).await,
            (schema_uid.clone(), level_uid.clone()),
            "{account}'s Lease requests"
        );
        let (other_schema, other_level) = classified(&client, "/api/v1/services?limit=1").await;
        assert!(
            !other_schema.is_empty(),
            "{account}: the API server did not say how it classified a Service list"
        );
        assert_ne!(other_schema, schema_uid, "{account}'s Service requests matched the Lease FlowSchema");
        assert_ne!(other_level, level_uid, "{account}'s Service requests went to leader-election");
    }
}
