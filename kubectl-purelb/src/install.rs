//! `install` and `uninstall`.
//!
//! - install: server-side applies the embedded manifests (field manager `kubectl-purelb`) in dependency
//!   order, waits for each CRD to be Established, and reports per object `created` (it did not exist),
//!   `configured` (its resourceVersion changed) or `unchanged` (it did not) — so a second run says
//!   `unchanged` for everything. `--dry-run` prints the manifests.
//! - uninstall: refuses while Services hold PureLB addresses unless `--force`; deletes the workloads
//!   first, then (with `--force`) removes PureLB's marks from those Services (the fields the allocator's
//!   and the agents' field managers own), then RBAC, CRDs (and with them every ServiceGroup and
//!   LBNodeAgent) and the namespace.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use purelb_core::allocate::ServiceKey;
use purelb_core::api::{AGENT_COMPONENT, ALLOCATOR_COMPONENT};
use serde::Serialize;
use serde_json::json;

use crate::cli::{InstallArgs, UninstallArgs};
use crate::cluster::Cluster;
use crate::error::{Exit, hinted, kube as kube_err};
use crate::manifests::{self, Object};
use crate::style::{self, Format, bad, good, table, warn};

/// The field manager of everything the plugin writes.
pub const MANAGER: &str = "kubectl-purelb";
const CRD_TIMEOUT: Duration = Duration::from_secs(60);

/// What applying one object did.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Applied {
    pub object: String,
    /// `created`, `configured` or `unchanged`.
    pub result: String,
}

/// The objects install applies, images rewritten.
pub fn planned(args: &InstallArgs) -> Result<Vec<Object>> {
    let mut objects = manifests::objects()?;
    manifests::rewrite_images(&mut objects, args.image_version.as_deref(), args.image_registry.as_deref());
    Ok(objects)
}

/// Finds the API resource of a kind, once per kind.
struct Resources {
    client: kube::Client,
    known: HashMap<GroupVersionKind, (ApiResource, ApiCapabilities)>,
}

impl Resources {
    async fn api(&mut self, o: &Object) -> Result<Api<DynamicObject>> {
        let (group, version) = o.group_version();
        let gvk = GroupVersionKind::gvk(group, version, &o.kind);
        if !self.known.contains_key(&gvk) {
            let found = kube::discovery::pinned_kind(&self.client, &gvk)
                .await
                .map_err(|e| kube_err(format!("finding the API of {} {}", o.api_version, o.kind), e))?;
            self.known.insert(gvk.clone(), found);
        }
        let Some((resource, caps)) = self.known.get(&gvk) else { anyhow::bail!("discovery lost {}", o.kind) };
        Ok(match (&caps.scope, &o.namespace) {
            (Scope::Namespaced, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, resource),
            (Scope::Namespaced, None) => Api::default_namespaced_with(self.client.clone(), resource),
            (Scope::Cluster, _) => Api::all_with(self.client.clone(), resource),
        })
    }
}

/// `kubectl purelb install`.
pub async fn install(cluster: Option<&Cluster>, args: &InstallArgs, format: Format) -> Result<()> {
    let objects = planned(args)?;
    if args.dry_run || cluster.is_none() {
        style::print(&manifests::to_yaml(&objects)?);
        return Ok(());
    }
    let Some(cluster) = cluster else { return Ok(()) };
    let mut resources = Resources { client: cluster.client.clone(), known: HashMap::new() };
    let pp =
        if args.force_conflicts { PatchParams::apply(MANAGER).force() } else { PatchParams::apply(MANAGER) };
    let mut results = Vec::new();
    for o in &objects {
        let api = resources.api(o).await?;
        let before =
            api.get_opt(&o.name).await.map_err(|e| kube_err(format!("reading {}", o.describe()), e))?;
        let after = match api.patch(&o.name, &pp, &Patch::Apply(&o.body)).await {
            Ok(a) => a,
            Err(kube::Error::Api(s)) if s.code == 409 => {
                return Err(hinted(
                    format!(
                        "applying {}: another field manager owns fields install sets: {}",
                        o.describe(),
                        s.message
                    ),
                    "run again with --force-conflicts to take them over",
                ));
            }
            Err(e) => return Err(kube_err(format!("applying {}", o.describe()), e)),
        };
        let result = match before {
            None => "created",
            Some(b) if b.metadata.resource_version == after.metadata.resource_version => "unchanged",
            Some(_) => "configured",
        };
        if !format.structured() {
            let painted = if result == "unchanged" { result.to_string() } else { good(result) };
            style::print(&format!("{} {painted}\n", o.describe()));
        }
        results.push(Applied { object: o.describe(), result: result.into() });
        if o.kind == "CustomResourceDefinition" {
            wait_established(&cluster.client, &o.name).await?;
        }
    }
    if let Some(text) = style::structured(&results, format)? {
        style::print(&text);
    } else {
        let changed = results.iter().filter(|r| r.result != "unchanged").count();
        style::print(&format!(
            "PureLB installed in {} ({} object(s), {changed} changed). Next: kubectl purelb sg create default; kubectl purelb status\n",
            cluster.install_namespace,
            results.len()
        ));
    }
    Ok(())
}

async fn wait_established(client: &kube::Client, name: &str) -> Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let start = Instant::now();
    loop {
        let crd = crds.get(name).await.map_err(|e| kube_err(format!("reading CRD {name}"), e))?;
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            return Ok(());
        }
        if start.elapsed() > CRD_TIMEOUT {
            return Err(hinted(
                format!("CRD {name} is not Established after {}s", CRD_TIMEOUT.as_secs()),
                format!("kubectl describe crd {name}"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `kubectl purelb uninstall`.
pub async fn uninstall(cluster: &Cluster, args: &UninstallArgs, format: Format) -> Result<()> {
    let allocated = cluster.allocated_services().await?;
    let held: Vec<String> = allocated
        .iter()
        .map(|(k, s)| {
            let ips: Vec<String> = crate::facts::ingress_ips(s).iter().map(ToString::to_string).collect();
            format!("{k} ({})", if ips.is_empty() { "no address yet".into() } else { ips.join(", ") })
        })
        .collect();
    if !held.is_empty() && !args.force {
        style::eprint(&format!(
            "{} {} Service(s) hold PureLB addresses: {}\n\
             Uninstalling removes the allocator and the agents: the agents withdraw these addresses from the nodes (traffic to them stops) and nothing frees or renews them.\n\
             With --force, PureLB's marks (status.loadBalancer.ingress, the purelb.io/* annotations and conditions) are also removed from them, and they wait, pending, for another load balancer.\n\
             hint: delete those Services first, or run again with --force\n",
            bad("refusing to uninstall:"),
            held.len(),
            held.join(", ")
        ));
        return Err(Exit(1).into());
    }
    let mut objects = manifests::objects()?;
    objects.reverse();
    // Workloads first (so nothing re-writes a Service while it is cleaned), the namespace last.
    objects.sort_by_key(|o| match o.kind.as_str() {
        "Deployment" | "DaemonSet" | "StatefulSet" => 0,
        "Namespace" => 3,
        "CustomResourceDefinition" => 2,
        _ => 1,
    });
    if args.dry_run {
        let mut rows: Vec<Vec<String>> =
            objects.iter().map(|o| vec![o.describe(), "would be deleted".into()]).collect();
        for k in allocated.keys() {
            rows.push(vec![format!("Service {k}"), "PureLB's marks would be removed".into()]);
        }
        style::print(&table(&["OBJECT", "RESULT"], &rows));
        return Ok(());
    }
    let mut resources = Resources { client: cluster.client.clone(), known: HashMap::new() };
    let mut results = Vec::new();
    let mut cleaned = false;
    for o in &objects {
        if !cleaned && !matches!(o.kind.as_str(), "Deployment" | "DaemonSet" | "StatefulSet") {
            for key in allocated.keys() {
                let left = release_service(&cluster.client, key).await?;
                let result = if left.is_empty() {
                    "PureLB's marks removed".to_string()
                } else {
                    format!("left: {}", left.join(", "))
                };
                if !format.structured() {
                    style::print(&format!("Service {key} {result}\n"));
                }
                results.push(Applied { object: format!("Service {key}"), result });
            }
            cleaned = true;
        }
        let api = match resources.api(o).await {
            Ok(api) => api,
            // A CRD already gone takes its kind with it; nothing of that kind is left to delete.
            Err(_) if o.kind != "CustomResourceDefinition" && o.api_version.contains("purelb.io") => continue,
            Err(e) => return Err(e),
        };
        let result = match api.delete(&o.name, &DeleteParams::background()).await {
            Ok(either) => match either {
                either::Either::Left(obj)
                    if obj.metadata.deletion_timestamp.is_some() && o.kind == "Namespace" =>
                {
                    "deleting (the namespace controller removes what is left, then the namespace)"
                }
                _ => "deleted",
            },
            Err(kube::Error::Api(s)) if s.code == 404 => "not found",
            Err(e) => return Err(kube_err(format!("deleting {}", o.describe()), e)),
        };
        if !format.structured() {
            let painted = if result == "deleted" { good(result) } else { warn(result) };
            style::print(&format!("{} {painted}\n", o.describe()));
        }
        results.push(Applied { object: o.describe(), result: result.into() });
    }
    if let Some(text) = style::structured(&results, format)? {
        style::print(&text);
    }
    Ok(())
}

/// Removes what PureLB's allocator and agents wrote on a Service (an empty apply by each field manager
/// removes the fields it owns). Returns what is still there.
async fn release_service(client: &kube::Client, key: &ServiceKey) -> Result<Vec<String>> {
    let api: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), &key.namespace);
    let meta = json!({"name": key.name, "namespace": key.namespace});
    for manager in [ALLOCATOR_COMPONENT, AGENT_COMPONENT] {
        let pp = PatchParams::apply(manager).force();
        let body = json!({"apiVersion": "v1", "kind": "Service", "metadata": meta});
        let status = json!({"apiVersion": "v1", "kind": "Service", "metadata": meta, "status": {}});
        for (what, result) in [
            ("annotations", api.patch(&key.name, &pp, &Patch::Apply(&body)).await),
            ("status", api.patch_status(&key.name, &pp, &Patch::Apply(&status)).await),
        ] {
            match result {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Vec::new()),
                Err(e) => return Err(kube_err(format!("removing {manager}'s {what} from Service {key}"), e)),
            }
        }
    }
    let svc = api.get(&key.name).await.map_err(|e| kube_err(format!("reading Service {key}"), e))?;
    let mut left: Vec<String> = svc
        .metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| k.starts_with(purelb_core::api::ANNOTATION_PREFIX) && !is_user_annotation(k))
        .map(|(k, _)| format!("annotation {k}"))
        .collect();
    if !crate::facts::ingress_ips(&svc).is_empty() {
        left.push("status.loadBalancer.ingress (written by another field manager)".into());
    }
    Ok(left)
}

fn is_user_annotation(k: &str) -> bool {
    use purelb_core::api::annotations::{ADDRESSES, ALLOW_SHARED_IP, SERVICE_GROUP};
    k == SERVICE_GROUP || k == ALLOW_SHARED_IP || k == ADDRESSES
}
