//! End-to-end tests of purelb-allocator against a real kube-apiserver and etcd: the seed's examples,
//! sharing, requested addresses, exhaustion and retry, families, classes, bad input. One allocator runs
//! for the whole file, as the `purelb-allocator` ServiceAccount with deploy/'s RBAC. Each test uses its
//! own namespace, group names and address ranges.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use purelb_core::api::{ServiceGroup, annotations};
use purelb_lab::{ControlPlane, TestNamespace, shared};
use tokio::sync::OnceCell;

static ALLOCATOR: OnceCell<Allocator> = OnceCell::const_new();

async fn lab() -> &'static ControlPlane {
    let lab = shared().await;
    ALLOCATOR.get_or_init(|| async { start_allocator(lab, "allocator-main", &[], true).await }).await;
    lab
}

fn svc_api(client: &kube::Client, ns: &str) -> Api<Service> {
    Api::namespaced(client.clone(), ns)
}

fn ann(svc: &Service, key: &str) -> Option<String> {
    svc.metadata.annotations.as_ref()?.get(key).cloned()
}

#[tokio::test]
async fn seed_examples_get_the_addresses_annotations_and_events_the_seed_shows() {
    let lab = lab().await;
    let client = lab.admin_client().await.unwrap();
    for ns in ["test", "servicetest"] {
        kubectl(lab, &["create", "namespace", ns]);
    }
    kubectl(lab, &["apply", "-f", example("servicegroup-default.yaml").to_str().unwrap()]);
    kubectl(lab, &["apply", "-f", example("servicegroup-localaddr.yaml").to_str().unwrap()]);

    // `kubectl expose ... --type=LoadBalancer` in namespace test, default group.
    kubectl(lab, &["apply", "-n", "test", "-f", example("echoserver-service.yaml").to_str().unwrap()]);
    let api = svc_api(&client, "test");
    let echo = wait_ingress(&api, "echoserver-service", 1).await;
    assert_eq!(ingress(&echo), vec!["172.30.250.53"]);
    assert_eq!(ann(&echo, annotations::ALLOCATED_BY).as_deref(), Some("PureLB"));
    assert_eq!(ann(&echo, annotations::ALLOCATED_FROM).as_deref(), Some("default"));
    let evs = wait_event(
        &client,
        "test",
        "echoserver-service",
        "IPAllocated",
        "Assigned IP 172.30.250.53 from pool default",
    )
    .await;
    assert!(
        evs.iter().any(|(t, r, _, c)| t == "Normal" && r == "IPAllocated" && c == "purelb-allocator"),
        "{evs:?}"
    );
    let cond = allocated_condition(&echo).expect("condition");
    assert_eq!((cond.status.as_str(), cond.reason.as_str()), ("True", "Allocated"));

    // servicetest: group localaddr.
    kubectl(lab, &["apply", "-f", example("servicetest.yaml").to_str().unwrap()]);
    let api = svc_api(&client, "servicetest");
    let st = wait_ingress(&api, "servicetest", 1).await;
    assert_eq!(ingress(&st), vec!["192.0.2.200"]);
    assert_eq!(ann(&st, annotations::ALLOCATED_FROM).as_deref(), Some("localaddr"));
    assert_eq!(
        ann(&st, annotations::SERVICE_GROUP).as_deref(),
        Some("localaddr"),
        "the user's annotation stays"
    );
    wait_event(
        &client,
        "servicetest",
        "servicetest",
        "IPAllocated",
        "Assigned IP 192.0.2.200 from pool localaddr",
    )
    .await;

    // specificaddress before its group exists: pending with a reason, then allocated when virtualsub appears.
    kubectl(lab, &["apply", "-f", example("specificaddress.yaml").to_str().unwrap()]);
    let pending = wait_reason(&api, "specificaddress", "AddressNotInAnyGroup").await;
    assert!(ingress(&pending).is_empty());
    kubectl(lab, &["apply", "-f", example("endpoints.yaml").to_str().unwrap()]);
    let sa = wait_ingress(&api, "specificaddress", 1).await;
    assert_eq!(ingress(&sa), vec!["172.31.1.225"]);
    assert_eq!(ann(&sa, annotations::ALLOCATED_FROM).as_deref(), Some("virtualsub"));
    wait_event(
        &client,
        "servicetest",
        "specificaddress",
        "IPAllocated",
        "Assigned IP 172.31.1.225 from pool virtualsub",
    )
    .await;
    let ep = wait_ingress(&api, "endpoints", 1).await;
    assert_eq!(ingress(&ep), vec!["172.31.1.0"], "the seed: 172.31.1.0 from virtualsub");
    wait_event(
        &client,
        "servicetest",
        "endpoints",
        "IPAllocated",
        "Assigned IP 172.31.1.0 from pool virtualsub",
    )
    .await;

    // The group's status counts what it handed out.
    let sg = wait_for_group(&client, "default", "virtualsub", |g| {
        g.status.as_ref().and_then(|s| s.allocated) == Some(2)
    })
    .await;
    assert_eq!(sg.status.unwrap().available.as_deref(), Some("254"));
}

async fn wait_for_group(
    client: &kube::Client,
    ns: &str,
    name: &str,
    ok: impl Fn(&ServiceGroup) -> bool,
) -> ServiceGroup {
    let api: Api<ServiceGroup> = Api::namespaced(client.clone(), ns);
    purelb_lab::wait_for(&format!("ServiceGroup {ns}/{name} status"), Duration::from_secs(30), || async {
        api.get_opt(name).await.ok().flatten().filter(|g| ok(g))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn sharing_is_accepted_with_the_same_key_and_refused_otherwise() {
    let lab = lab().await;
    let client = lab.admin_client().await.unwrap();
    let ns = TestNamespace::new(&client, "share").await.unwrap();
    create_group(
        &client,
        ns.name(),
        &group("t-share", Some(("198.51.100.0/24", "198.51.100.0/29", "/32")), None),
    )
    .await;
    let api = svc_api(&client, ns.name());
    let g = (annotations::SERVICE_GROUP, "t-share");
    create(&api, &lb_service("a", 80, &[g, (annotations::ALLOW_SHARED_IP, "k")], "")).await;
    let a = wait_ingress(&api, "a", 1).await;
    create(&api, &lb_service("b", 443, &[g, (annotations::ALLOW_SHARED_IP, "k")], "")).await;
    let b = wait_ingress(&api, "b", 1).await;
    assert_eq!(ingress(&a), ingress(&b), "same key, disjoint ports: one address");
    let ip = ingress(&a)[0].clone();

    create(
        &api,
        &lb_service(
            "same-port",
            80,
            &[g, (annotations::ALLOW_SHARED_IP, "k"), (annotations::ADDRESSES, &ip)],
            "",
        ),
    )
    .await;
    let c = wait_reason(&api, "same-port", "SharingConflict").await;
    let msg = allocated_condition(&c).unwrap().message;
    assert!(msg.contains("80/TCP") && msg.contains(&format!("{}/a", ns.name())), "{msg}");
    wait_events_where(&client, ns.name(), "same-port", "a SharingConflict warning", |(t, r, m, _)| {
        t == "Warning" && r == "AllocationFailed" && m.contains("SharingConflict")
    })
    .await;

    create(
        &api,
        &lb_service(
            "other-key",
            8080,
            &[g, (annotations::ALLOW_SHARED_IP, "other"), (annotations::ADDRESSES, &ip)],
            "",
        ),
    )
    .await;
    wait_reason(&api, "other-key", "SharingConflict").await;
    create(&api, &lb_service("no-key", 8081, &[g, (annotations::ADDRESSES, &ip)], "")).await;
    wait_reason(&api, "no-key", "AddressInUse").await;
    create(
        &api,
        &lb_service(
            "local",
            9090,
            &[g, (annotations::ALLOW_SHARED_IP, "k")],
            "  externalTrafficPolicy: Local\n",
        ),
    )
    .await;
    wait_reason(&api, "local", "SharingRefusedWithLocalPolicy").await;

    // The address stays while a sharer holds it: after a leaves, no-key still cannot have it; after b leaves it can.
    api.delete("a", &DeleteParams::default()).await.unwrap();
    api.delete("same-port", &DeleteParams::default()).await.unwrap();
    api.delete("other-key", &DeleteParams::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(ingress(&api.get("no-key").await.unwrap()).is_empty());
    api.delete("b", &DeleteParams::default()).await.unwrap();
    let nk = wait_ingress(&api, "no-key", 1).await;
    assert_eq!(ingress(&nk), vec![ip]);
    ns.cleanup().await.unwrap();
}

#[tokio::test]
async fn requested_addresses_must_be_in_a_group_and_free() {
    let lab = lab().await;
    let client = lab.admin_client().await.unwrap();
    let ns = TestNamespace::new(&client, "request").await.unwrap();
    create_group(
        &client,
        ns.name(),
        &group("t-req", Some(("198.51.100.0/24", "198.51.100.64/28", "/32")), None),
    )
    .await;
    let api = svc_api(&client, ns.name());
    create(&api, &lb_service("outside", 80, &[(annotations::ADDRESSES, "192.0.2.250")], "")).await;
    let s = wait_reason(&api, "outside", "AddressNotInAnyGroup").await;
    assert!(allocated_condition(&s).unwrap().message.contains("192.0.2.250"));
    assert!(ingress(&s).is_empty());

    create(&api, &lb_service("first", 80, &[(annotations::ADDRESSES, "198.51.100.70")], "")).await;
    assert_eq!(ingress(&wait_ingress(&api, "first", 1).await), vec!["198.51.100.70"]);
    create(&api, &lb_service("second", 81, &[], "  loadBalancerIP: 198.51.100.70\n")).await;
    let s = wait_reason(&api, "second", "AddressInUse").await;
    assert!(allocated_condition(&s).unwrap().message.contains(&format!("{}/first", ns.name())));
    ns.cleanup().await.unwrap();
}

#[tokio::test]
async fn exhausted_pool_leaves_the_service_pending_until_an_address_is_freed() {
    let lab = lab().await;
    let client = lab.admin_client().await.unwrap();
    let ns = TestNamespace::new(&client, "exhaust").await.unwrap();
    create_group(
        &client,
        ns.name(),
        &group("t-small", Some(("198.51.100.0/24", "198.51.100.96-198.51.100.97", "/32")), None),
    )
    .await;
    let api = svc_api(&client, ns.name());
    let g = [(annotations::SERVICE_GROUP, "t-small")];
    create(&api, &lb_service("one", 80, &g, "")).await;
    create(&api, &lb_service("two", 80, &g, "")).await;
    wait_ingress(&api, "one", 1).await;
    wait_ingress(&api, "two", 1).await;
    create(&api, &lb_service("three", 80, &g, "")).await;
    let s = wait_reason(&api, "three", "PoolExhausted").await;
    assert_eq!(allocated_condition(&s).unwrap().status, "False");
    assert!(ingress(&s).is_empty());
    wait_events_where(&client, ns.name(), "three", "an AllocationFailed warning", |(t, r, _, _)| {
        t == "Warning" && r == "AllocationFailed"
    })
    .await;
    let freed = ingress(&api.get("one").await.unwrap());
    api.delete("one", &DeleteParams::default()).await.unwrap();
    let three = wait_ingress(&api, "three", 1).await;
    assert_eq!(ingress(&three), freed);
    assert_eq!(allocated_condition(&three).unwrap().reason, "Allocated");
    ns.cleanup().await.unwrap();
}

#[tokio::test]
async fn family_policies_are_honoured() {
    let lab = lab().await;
    let client = lab.admin_client().await.unwrap();
    let ns = TestNamespace::new(&client, "family").await.unwrap();
    create_group(
        &client,
        ns.name(),
        &group(
            "t-dual",
            Some(("198.51.100.0/24", "198.51.100.128/30", "/32")),
            Some(("2001:db8:100::/64", "2001:db8:100::/64", "/128")),
        ),
    )
    .await;
    create_group(
        &client,
        ns.name(),
        &group("t-v4only", Some(("198.51.100.0/24", "198.51.100.136/30", "/32")), None),
    )
    .await;
    let api = svc_api(&client, ns.name());
    create(
        &api,
        &lb_service(
            "prefer",
            80,
            &[(annotations::SERVICE_GROUP, "t-dual")],
            "  ipFamilyPolicy: PreferDualStack\n  ipFamilies: [IPv6, IPv4]\n",
        ),
    )
    .await;
    let s = wait_ingress(&api, "prefer", 2).await;
    assert_eq!(ingress(&s), vec!["2001:db8:100::", "198.51.100.128"], "ipFamilies order");
    create(
        &api,
        &lb_service(
            "degrade",
            80,
            &[(annotations::SERVICE_GROUP, "t-v4only")],
            "  ipFamilyPolicy: PreferDualStack\n",
        ),
    )
    .await;
    assert_eq!(ingress(&wait_ingress(&api, "degrade", 1).await), vec!["198.51.100.136"]);
    create(
        &api,
        &lb_service(
            "require",
            80,
            &[(annotations::SERVICE_GROUP, "t-v4only")],
            "  ipFamilyPolicy: RequireDualStack\n",
        ),
    )
    .await;
    let s = wait_reason(&api, "require", "FamilyUnavailable").await;
    assert!(ingress(&s).is_empty(), "all or nothing");
    assert!(allocated_condition(&s).unwrap().message.contains("IPv6"));
    create(&api, &lb_service("after", 80, &[(annotations::SERVICE_GROUP, "t-v4only")], "")).await;
    assert_eq!(
        ingress(&wait_ingress(&api, "after", 1).await),
        vec!["198.51.100.137"],
        "the refused request took nothing"
    );
    ns.cleanup().await.unwrap();
}

#[tokio::test]
async fn a_foreign_load_balancer_class_is_left_alone() {
    let lab = lab().await;
    let client = lab.admin_client().await.unwrap();
    let ns = TestNamespace::new(&client, "class").await.unwrap();
    create_group(
        &client,
        ns.name(),
        &group("t-class", Some(("198.51.100.0/24", "198.51.100.144/30", "/32")), None),
    )
    .await;
    let api = svc_api(&client, ns.name());
    let g = [(annotations::SERVICE_GROUP, "t-class")];
    create(&api, &lb_service("foreign", 80, &g, "  loadBalancerClass: example.com/other\n")).await;
    create(
        &api,
        &lb_service(
            "ours",
            80,
            &g,
            "  loadBalancerClass: purelb.io/purelb\n  allocateLoadBalancerNodePorts: false\n",
        ),
    )
    .await;
    assert_eq!(
        ingress(&wait_ingress(&api, "ours", 1).await),
        vec!["198.51.100.144"],
        "the foreign one took nothing"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let foreign = api.get("foreign").await.unwrap();
    assert!(ingress(&foreign).is_empty());
    assert_eq!(ann(&foreign, annotations::ALLOCATED_BY), None);
    assert_eq!(ann(&foreign, annotations::ALLOCATED_FROM), None);
    assert!(allocated_condition(&foreign).is_none());
    assert!(events(&client, ns.name(), "foreign").await.is_empty());
    ns.cleanup().await.unwrap();
}

#[tokio::test]
async fn a_bad_annotation_never_changes_a_working_address() {
    let lab = lab().await;
    let client = lab.admin_client().await.unwrap();
    let ns = TestNamespace::new(&client, "badann").await.unwrap();
    create_group(
        &client,
        ns.name(),
        &group("t-bad", Some(("198.51.100.0/24", "198.51.100.152/30", "/32")), None),
    )
    .await;
    let api = svc_api(&client, ns.name());
    create(&api, &lb_service("svc", 80, &[(annotations::SERVICE_GROUP, "t-bad")], "")).await;
    let before = ingress(&wait_ingress(&api, "svc", 1).await);
    let patch = serde_json::json!({"metadata": {"annotations": {annotations::ADDRESSES: "not-an-ip"}}});
    api.patch("svc", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    let s = wait_reason(&api, "svc", "InvalidRequest").await;
    assert_eq!(ingress(&s), before);
    let c = allocated_condition(&s).unwrap();
    assert!(c.message.contains("not-an-ip") && c.message.contains(&before[0]), "{}", c.message);
    // Fix it: back to Allocated with the same address.
    let patch = serde_json::json!({"metadata": {"annotations": {annotations::ADDRESSES: null}}});
    api.patch("svc", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    let s = wait_reason(&api, "svc", "Allocated").await;
    assert_eq!(ingress(&s), before);
    ns.cleanup().await.unwrap();
}

#[tokio::test]
async fn leaving_load_balancer_type_releases_the_address() {
    let lab = lab().await;
    let client = lab.admin_client().await.unwrap();
    let ns = TestNamespace::new(&client, "release").await.unwrap();
    create_group(
        &client,
        ns.name(),
        &group("t-rel", Some(("198.51.100.0/24", "198.51.100.160/32", "/32")), None),
    )
    .await;
    let api = svc_api(&client, ns.name());
    let g = [(annotations::SERVICE_GROUP, "t-rel")];
    create(&api, &lb_service("lb", 80, &g, "")).await;
    wait_ingress(&api, "lb", 1).await;
    create(&api, &lb_service("waiting", 80, &g, "")).await;
    wait_reason(&api, "waiting", "PoolExhausted").await;
    let patch = serde_json::json!({"spec": {"type": "ClusterIP"}});
    api.patch("lb", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    assert_eq!(ingress(&wait_ingress(&api, "waiting", 1).await), vec!["198.51.100.160"]);
    let lb = purelb_lab::wait_for(
        "purelb marks removed from the ClusterIP Service",
        Duration::from_secs(15),
        || async {
            api.get("lb")
                .await
                .ok()
                .filter(|s| ann(s, annotations::ALLOCATED_BY).is_none() && allocated_condition(s).is_none())
        },
    )
    .await
    .unwrap();
    assert!(ingress(&lb).is_empty());
    ns.cleanup().await.unwrap();
}

/// Earlier versions applied the annotations to the main resource and the status separately; this one
/// writes both through the status subresource. A Service allocated by an earlier version still loses
/// every mark when it is released.
#[tokio::test]
async fn marks_an_earlier_version_applied_to_the_main_resource_are_removed_on_release() {
    let lab = lab().await;
    let client = lab.admin_client().await.unwrap();
    let ns = TestNamespace::new(&client, "upgrade").await.unwrap();
    create_group(
        &client,
        ns.name(),
        &group("t-upg", Some(("198.51.100.0/24", "198.51.100.161/32", "/32")), None),
    )
    .await;
    let api = svc_api(&client, ns.name());
    create(&api, &lb_service("lb", 80, &[(annotations::SERVICE_GROUP, "t-upg")], "")).await;
    wait_ingress(&api, "lb", 1).await;
    // What an earlier allocator wrote: the same annotations, applied to the main resource.
    let old = serde_json::json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "lb", "annotations": {
            annotations::ALLOCATED_BY: "PureLB", annotations::ALLOCATED_FROM: "t-upg"}}});
    let pp = PatchParams::apply(purelb_core::api::ALLOCATOR_COMPONENT).force();
    api.patch("lb", &pp, &Patch::Apply(&old)).await.unwrap();
    let held = api.get("lb").await.unwrap();
    let entries = held.metadata.managed_fields.as_ref().unwrap();
    let ours = |sub: Option<&str>| {
        entries.iter().any(|m| {
            m.manager.as_deref() == Some(purelb_core::api::ALLOCATOR_COMPONENT)
                && m.subresource.as_deref() == sub
        })
    };
    assert!(ours(Some("status")) && ours(None), "both field sets are ours: {entries:?}");
    let patch = serde_json::json!({"spec": {"type": "ClusterIP"}});
    api.patch("lb", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    purelb_lab::wait_for("every purelb mark removed", Duration::from_secs(15), || async {
        api.get("lb").await.ok().filter(|s| {
            ann(s, annotations::ALLOCATED_BY).is_none()
                && ann(s, annotations::ALLOCATED_FROM).is_none()
                && allocated_condition(s).is_none()
                && ingress(s).is_empty()
        })
    })
    .await
    .unwrap();
    ns.cleanup().await.unwrap();
}

#[tokio::test]
async fn duplicate_group_names_are_reported_not_guessed() {
    let lab = lab().await;
    let client = lab.admin_client().await.unwrap();
    let ns1 = TestNamespace::new(&client, "dup1").await.unwrap();
    let ns2 = TestNamespace::new(&client, "dup2").await.unwrap();
    create_group(
        &client,
        ns1.name(),
        &group("t-dup", Some(("198.51.100.0/24", "198.51.100.168/30", "/32")), None),
    )
    .await;
    create_group(
        &client,
        ns2.name(),
        &group("t-dup", Some(("198.51.100.0/24", "198.51.100.172/30", "/32")), None),
    )
    .await;
    // Both definitions are reported on their groups (so the allocator has seen both)...
    for ns in [ns1.name(), ns2.name()] {
        let g = wait_for_group(&client, ns, "t-dup", |g| {
            g.status
                .as_ref()
                .is_some_and(|s| s.conditions.iter().any(|c| c.reason == "DuplicateServiceGroup"))
        })
        .await;
        assert_eq!(g.status.unwrap().conditions[0].status, "False");
    }
    // ...and a Service asking for that name is told why it gets nothing.
    let api = svc_api(&client, ns1.name());
    create(&api, &lb_service("svc", 80, &[(annotations::SERVICE_GROUP, "t-dup")], "")).await;
    let s = wait_reason(&api, "svc", "DuplicateServiceGroup").await;
    let msg = allocated_condition(&s).unwrap().message;
    assert!(msg.contains(ns1.name()) && msg.contains(ns2.name()), "{msg}");
    assert!(ingress(&s).is_empty());
    Api::<ServiceGroup>::namespaced(client.clone(), ns2.name())
        .delete("t-dup", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(ingress(&wait_ingress(&api, "svc", 1).await), vec!["198.51.100.168"]);
    ns2.cleanup().await.unwrap();
    ns1.cleanup().await.unwrap();
}

#[tokio::test]
async fn metrics_and_health_endpoints_answer() {
    let lab = lab().await;
    let admin = &ALLOCATOR.get().unwrap().admin;
    let _ = lab;
    assert_eq!(http_get(admin, "/livez").await.map(|r| r.0), Some(200));
    assert_eq!(http_get(admin, "/readyz").await.map(|r| r.0), Some(200));
    let (code, body) = http_get(admin, "/metrics").await.unwrap();
    assert_eq!(code, 200);
    for name in ["purelb_allocator_allocations_total", "purelb_allocator_decision_seconds"] {
        assert!(body.contains(name), "{name} missing from /metrics:\n{body}");
    }
}

#[tokio::test]
async fn a_status_cleared_by_someone_else_is_restored_with_the_same_address() {
    let lab = lab().await;
    let client = lab.admin_client().await.unwrap();
    let ns = TestNamespace::new(&client, "repair").await.unwrap();
    create_group(
        &client,
        ns.name(),
        &group("t-repair", Some(("198.51.100.0/24", "198.51.100.176/30", "/32")), None),
    )
    .await;
    let api = svc_api(&client, ns.name());
    create(&api, &lb_service("svc", 80, &[(annotations::SERVICE_GROUP, "t-repair")], "")).await;
    let before = ingress(&wait_ingress(&api, "svc", 1).await);
    let patch = serde_json::json!({"status": {"loadBalancer": {"ingress": null}}});
    api.patch_status("svc", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    let after = ingress(&wait_ingress(&api, "svc", 1).await);
    assert_eq!(after, before);
    ns.cleanup().await.unwrap();
}
