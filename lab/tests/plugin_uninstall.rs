//! End-to-end test of `kubectl purelb uninstall` on its own lab (it removes cluster-wide objects): it
//! refuses while a Service holds a PureLB address, and with `--force` leaves nothing of PureLB behind —
//! no CRDs, RBAC, FlowSchema, workloads or namespace, and no PureLB marks on the Service.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod plugin_helpers;

use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::Api;
use plugin_helpers::*;
use purelb_lab::{TestNamespace, shared, wait_for};

#[tokio::test]
async fn uninstall_refuses_with_allocated_services_and_with_force_leaves_nothing_behind() {
    let lab = shared().await;
    let installed = plugin(lab, &["install"]);
    assert_eq!(installed.code, 0, "{installed:?}");
    assert_eq!(
        kubectl(lab, &["get", "flowschema", "purelb-leases", "-o", "name"]).trim(),
        "flowschema.flowcontrol.apiserver.k8s.io/purelb-leases"
    );
    let allocator = start_allocator_as_installed(lab).await;

    let client = lab.admin_client().await.unwrap();
    let ns = TestNamespace::new(&client, "plugin-uninstall").await.unwrap();
    let made = plugin(
        lab,
        &["sg", "create", "default", "-n", "purelb-system", "--v4-pool", "198.51.100.0/28", "--yes"],
    );
    assert_eq!(made.code, 0, "{made:?}");
    let api: Api<Service> = Api::namespaced(client.clone(), ns.name());
    create(&api, &lb_service("web", 80, &[], "")).await;
    wait_ingress(&api, "web", 1).await;
    let key = format!("{}/web", ns.name());

    let refused = plugin(lab, &["uninstall"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.err.contains("refusing to uninstall")
            && refused.err.contains(&format!("{key} (198.51.100.0)")),
        "{refused:?}"
    );
    assert!(refused.err.contains("--force"), "{refused:?}");
    assert_eq!(
        kubectl(lab, &["get", "crd", "servicegroups.purelb.io", "-o", "name"]).trim(),
        "customresourcedefinition.apiextensions.k8s.io/servicegroups.purelb.io"
    );

    // The Deployment would stop the allocator's pods first; here it is a plain process.
    allocator.kill().unwrap();
    let forced = plugin(lab, &["uninstall", "--force"]);
    assert_eq!(forced.code, 0, "{forced:?}");
    assert!(forced.out.contains(&format!("Service {key} PureLB's marks removed")), "{forced:?}");

    // No PureLB mark is left on the Service; it waits for another load balancer.
    let svc = api.get("web").await.unwrap();
    assert!(ingress(&svc).is_empty(), "ingress left: {:?}", svc.status);
    assert!(allocated_condition(&svc).is_none(), "condition left: {:?}", svc.status);
    let left: Vec<String> = svc
        .metadata
        .annotations
        .unwrap_or_default()
        .into_keys()
        .filter(|k| k.starts_with("purelb.io/"))
        .collect();
    assert!(left.is_empty(), "annotations left: {left:?}");

    // Cluster-wide objects are gone (CRDs are finalized by the API server itself).
    wait_for("PureLB's CRDs to be gone", Duration::from_secs(60), || async {
        let (_, out) = kubectl_try(lab, &["get", "crd", "-o", "name"]);
        if out.contains("purelb.io") { Err(out) } else { Ok(()) }
    })
    .await
    .unwrap();
    for kind in ["clusterrole", "clusterrolebinding", "flowschema"] {
        let out = kubectl(lab, &["get", kind, "-o", "name"]);
        assert!(!out.contains("purelb"), "{kind} left: {out}");
    }
    // The lab's kube-controller-manager empties the Terminating namespace and drops its finalizer.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    wait_for("namespace purelb-system to be gone", Duration::from_secs(60), || async {
        namespaces.get_opt("purelb-system").await.ok().flatten().is_none().then_some(())
    })
    .await
    .unwrap();
    let (ok, out) = kubectl_try(lab, &["get", "namespace", "purelb-system"]);
    assert!(!ok && out.contains("NotFound"), "{out}");

    // A second uninstall finds nothing and says so.
    let again = plugin(lab, &["uninstall"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.out.contains("not found") && !again.out.contains(" deleted"), "{again:?}");
    ns.cleanup().await.unwrap();
}
