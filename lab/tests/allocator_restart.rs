//! End-to-end tests of what must survive allocator restarts, crashes and leader changes, against a real
//! kube-apiserver and etcd. The tests stop and start allocators, so they run one at a time (a lock), each
//! with its own allocator processes, namespace and group.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams};
use purelb_core::api::annotations;
use purelb_lab::{TestNamespace, shared, wait_for};
use tokio::sync::Mutex;

static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// Every Service of the namespace with its ingress addresses.
async fn addresses(api: &Api<Service>) -> BTreeMap<String, Vec<String>> {
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|s| (s.metadata.name.clone().unwrap(), ingress(&s)))
        .collect()
}

/// Every Service of the namespace with its `purelb.io/Allocated` condition's message and transition time.
async fn records(api: &Api<Service>) -> BTreeMap<String, (String, String)> {
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|s| {
            let c = allocated_condition(&s).expect("Allocated condition");
            (s.metadata.name.clone().unwrap(), (c.message, format!("{:?}", c.last_transition_time)))
        })
        .collect()
}

async fn create_many(api: &Api<Service>, prefix: &str, n: usize, group: &str) {
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            let svc = lb_service(&format!("{prefix}-{i}"), 80, &[(annotations::SERVICE_GROUP, group)], "");
            async move { create(&api, &svc).await }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
}

#[tokio::test]
async fn a_restarted_allocator_keeps_every_address() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let lab = shared().await;
    let client = lab.admin_client().await.unwrap();
    let first = start_allocator(lab, "restart-a", &[], true).await;
    let ns = TestNamespace::new(&client, "restart").await.unwrap();
    create_group(
        &client,
        ns.name(),
        &group("r-keep", Some(("203.0.113.0/24", "203.0.113.0/26", "/32")), None),
    )
    .await;
    let api: Api<Service> = Api::namespaced(client.clone(), ns.name());
    create_many(&api, "svc", 20, "r-keep").await;
    // Free one address in the middle, so that a restarted allocator that re-allocated "lowest free"
    // instead of keeping addresses would visibly move Services.
    for i in 0..20 {
        wait_ingress(&api, &format!("svc-{i}"), 1).await;
    }
    api.delete("svc-0", &Default::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = addresses(&api).await;
    let recorded = records(&api).await;
    assert!(
        recorded.values().all(|(m, _)| m.contains("lowest free")),
        "each condition records how its address was chosen: {recorded:?}"
    );
    first.child.terminate().await.unwrap();

    let second = start_allocator(lab, "restart-b", &[], true).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(addresses(&api).await, before, "no Service's address changed across the restart");
    assert_eq!(records(&api).await, recorded, "the decision's record is kept, not rewritten, by a restart");
    // A new Service gets the freed address, not one somebody holds.
    create(&api, &lb_service("new", 80, &[(annotations::SERVICE_GROUP, "r-keep")], "")).await;
    let new = ingress(&wait_ingress(&api, "new", 1).await);
    assert!(!before.values().any(|v| v == &new), "{new:?} duplicates an existing address");
    // One IPAllocated per allocation, from the first allocator; the second only kept addresses.
    for (name, _) in before {
        let n = occurrences(&client, ns.name(), &name, "IPAllocated").await;
        assert_eq!(n, 1, "{name}: IPAllocated {n} times");
    }
    second.child.terminate().await.unwrap();
    ns.cleanup().await.unwrap();
}

#[tokio::test]
async fn kill_9_during_a_burst_of_300_leaves_no_duplicates_and_none_pending() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let lab = shared().await;
    let client = lab.admin_client().await.unwrap();
    let first = start_allocator(lab, "burst-a", &[], true).await;
    let ns = TestNamespace::new(&client, "burst").await.unwrap();
    let mut g = group("r-burst", Some(("198.51.100.0/24", "198.51.100.0/24", "/32")), None);
    let extra = purelb_core::api::PoolSpec {
        subnet: "203.0.113.0/24".into(),
        pool: "203.0.113.128/25".into(),
        aggregation: "/32".into(),
    };
    g.spec.local.as_mut().unwrap().v4pools.push(extra);
    create_group(&client, ns.name(), &g).await;
    let api: Api<Service> = Api::namespaced(client.clone(), ns.name());

    let creator = {
        let api = api.clone();
        tokio::spawn(async move { create_many(&api, "b", 300, "r-burst").await })
    };
    // Kill the allocator while the burst is being allocated.
    wait_for("some of the burst allocated", Duration::from_secs(60), || async {
        let n = addresses(&api).await.values().filter(|v| !v.is_empty()).count();
        (n >= 30).then_some(())
    })
    .await
    .unwrap();
    first.child.kill().unwrap();
    let killed_at = addresses(&api).await.values().filter(|v| !v.is_empty()).count();
    creator.await.unwrap();
    let second = start_allocator(lab, "burst-b", &[], true).await;
    let all = wait_for("all 300 Services allocated", Duration::from_secs(120), || async {
        let a = addresses(&api).await;
        (a.len() == 300 && a.values().all(|v| v.len() == 1)).then_some(a)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", second.child.log_tail(30)));
    let distinct: BTreeSet<&String> = all.values().flatten().collect();
    assert_eq!(distinct.len(), 300, "duplicate addresses after kill -9 (killed with {killed_at} allocated)");
    second.child.terminate().await.unwrap();
    ns.cleanup().await.unwrap();
}

#[tokio::test]
async fn only_the_leader_allocates_and_a_standby_takes_over() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let lab = shared().await;
    let client = lab.admin_client().await.unwrap();
    let a = start_allocator(lab, "leader-a", &[], true).await;
    let b = start_allocator(lab, "leader-b", &[], false).await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), NS);
    let holder = || async {
        leases.get_opt("purelb-allocator").await.ok().flatten().and_then(|l| l.spec?.holder_identity)
    };
    assert_eq!(holder().await.as_deref(), Some("leader-a"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(http_get(&b.admin, "/readyz").await.map(|r| r.0), Some(503), "the standby does not act");
    let log_b = std::fs::read_to_string(b.child.log_path()).unwrap_or_default();
    assert!(!log_b.contains("initial sync done"), "the standby started allocating:\n{log_b}");

    let ns = TestNamespace::new(&client, "leader").await.unwrap();
    create_group(
        &client,
        ns.name(),
        &group("r-lead", Some(("203.0.113.0/24", "203.0.113.64/28", "/32")), None),
    )
    .await;
    let api: Api<Service> = Api::namespaced(client.clone(), ns.name());
    a.child.kill().unwrap();
    let killed = Instant::now();
    create(&api, &lb_service("after-failover", 80, &[(annotations::SERVICE_GROUP, "r-lead")], "")).await;
    wait_ready_at(&b.admin, &b.child).await;
    wait_ingress(&api, "after-failover", 1).await;
    let took = killed.elapsed();
    assert_eq!(holder().await.as_deref(), Some("leader-b"));
    assert!(took < Duration::from_secs(15), "failover took {took:?}");
    eprintln!("leader failover after SIGKILL: {took:?}");
    // A graceful stop releases the Lease at once.
    b.child.terminate().await.unwrap();
    let released = wait_for("Lease released", Duration::from_secs(5), || async {
        holder().await.is_none().then_some(())
    })
    .await;
    assert!(
        released.is_ok(),
        "the Lease was not released on SIGTERM: {:?}",
        leases.get("purelb-allocator").await
    );
    ns.cleanup().await.unwrap();
}

#[tokio::test]
async fn two_services_claiming_one_address_are_reported_not_resolved() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let lab = shared().await;
    let client = lab.admin_client().await.unwrap();
    let first = start_allocator(lab, "conflict-a", &[], true).await;
    let ns = TestNamespace::new(&client, "conflict").await.unwrap();
    create_group(
        &client,
        ns.name(),
        &group("r-conf", Some(("203.0.113.0/24", "203.0.113.80/29", "/32")), None),
    )
    .await;
    let api: Api<Service> = Api::namespaced(client.clone(), ns.name());
    let g = [(annotations::SERVICE_GROUP, "r-conf")];
    create(&api, &lb_service("holder", 80, &g, "")).await;
    let ip = ingress(&wait_ingress(&api, "holder", 1).await)[0].clone();
    first.child.terminate().await.unwrap();

    // While no allocator runs, someone writes the same address into another Service's status.
    create(&api, &lb_service("claimer", 80, &g, "")).await;
    let patch = serde_json::json!({"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}});
    api.patch_status("claimer", &Default::default(), &kube::api::Patch::Merge(&patch)).await.unwrap();

    let second = start_allocator(lab, "conflict-b", &[], true).await;
    let claimer = wait_reason(&api, "claimer", "AddressConflict").await;
    let c = allocated_condition(&claimer).unwrap();
    assert_eq!(c.status, "False");
    assert!(c.message.contains(&format!("{}/holder", ns.name())) && c.message.contains(&ip), "{}", c.message);
    wait_events_where(&client, ns.name(), "claimer", "an AddressConflict warning", |(t, r, _, _)| {
        t == "Warning" && r == "AddressConflict"
    })
    .await;
    assert_eq!(ingress(&api.get("holder").await.unwrap()), vec![ip.clone()], "the older Service keeps it");
    assert_eq!(ingress(&claimer), vec![ip.clone()], "PureLB did not pick a winner by rewriting");

    // When the holder goes, the claimer's address becomes valid.
    api.delete("holder", &Default::default()).await.unwrap();
    let claimer = wait_reason(&api, "claimer", "Allocated").await;
    assert_eq!(ingress(&claimer), vec![ip]);
    second.child.terminate().await.unwrap();
    ns.cleanup().await.unwrap();
}
