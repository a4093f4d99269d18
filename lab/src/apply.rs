//! `kubectl apply --server-side` for the lab: every document of a multi-document YAML file, any kind
//! (found through discovery), field manager `purelb-lab`. A CustomResourceDefinition is waited for until
//! it is Established, so later documents (and later calls) can use its kind at once.
//!
//! Exposes [`apply_file`] and [`apply_yaml`].

use std::path::Path;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use serde_json::Value;

use crate::{LabError, wait_for};

/// The field manager of everything the lab applies.
pub const FIELD_MANAGER: &str = "purelb-lab";

/// How long a kind may take to appear in discovery (a CRD applied just before).
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(15);
const CRD_ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(30);

/// Applies every document of the YAML file at `path`, in order.
pub async fn apply_file(client: &kube::Client, path: &Path) -> Result<(), LabError> {
    let yaml = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| LabError::io(format!("reading manifest {}", path.display()), e))?;
    apply_yaml(client, &yaml, path).await
}

/// Applies every document of `yaml`, in order; `origin` names it in errors. A `kind: List` document's
/// items are applied one by one; empty documents are skipped.
pub async fn apply_yaml(client: &kube::Client, yaml: &str, origin: &Path) -> Result<(), LabError> {
    let manifest_error =
        |document: usize, message: String| LabError::Manifest { path: origin.to_owned(), document, message };
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(yaml).map_err(|e| manifest_error(0, format!("not YAML: {e}")))?;
    for (index, document) in documents.into_iter().enumerate() {
        let number = index + 1;
        match document {
            Value::Null => {}
            Value::Object(ref fields) if fields.get("kind").and_then(Value::as_str) == Some("List") => {
                let items = fields.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
                for item in items {
                    apply_object(client, item).await.map_err(|message| manifest_error(number, message))?;
                }
            }
            object => {
                apply_object(client, object).await.map_err(|message| manifest_error(number, message))?
            }
        }
    }
    Ok(())
}

/// Applies one object; the error text names it.
async fn apply_object(client: &kube::Client, object: Value) -> Result<(), String> {
    let text = |pointer: &str| object.pointer(pointer).and_then(Value::as_str).map(str::to_owned);
    let api_version = text("/apiVersion").ok_or("no apiVersion")?;
    let kind = text("/kind").ok_or("no kind")?;
    let name = text("/metadata/name").ok_or_else(|| format!("{kind} without metadata.name"))?;
    let namespace = text("/metadata/namespace").unwrap_or_else(|| "default".to_owned());
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version.as_str()));
    let gvk = GroupVersionKind::gvk(group, version, &kind);

    let (resource, capabilities) = discover(client, &gvk).await?;
    let (api, described): (Api<DynamicObject>, String) = match capabilities.scope {
        Scope::Namespaced => (
            Api::namespaced_with(client.clone(), &namespace, &resource),
            format!("{kind} {namespace}/{name}"),
        ),
        Scope::Cluster => (Api::all_with(client.clone(), &resource), format!("{kind} {name}")),
    };
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&object))
        .await
        .map_err(|e| format!("applying {described}: {e}"))?;
    tracing::debug!(object = %described, "applied");

    if group == "apiextensions.k8s.io" && kind == "CustomResourceDefinition" {
        wait_until_established(client, &name).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The resource serving `gvk`, waiting a little for kinds that were just registered.
async fn discover(
    client: &kube::Client,
    gvk: &GroupVersionKind,
) -> Result<(ApiResource, ApiCapabilities), String> {
    let what = format!("{}/{} {} in API discovery", gvk.group, gvk.version, gvk.kind);
    wait_for(&what, DISCOVERY_TIMEOUT, || async { kube::discovery::pinned_kind(client, gvk).await })
        .await
        .map_err(|e| e.to_string())
}

async fn wait_until_established(client: &kube::Client, name: &str) -> Result<(), LabError> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let what = format!("CustomResourceDefinition {name} to be Established");
    wait_for(&what, CRD_ESTABLISHED_TIMEOUT, || async {
        let crd = crds.get(name).await.map_err(|e| e.to_string())?;
        let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
        match conditions.iter().find(|c| c.type_ == "Established") {
            Some(c) if c.status == "True" => Ok(()),
            Some(c) => Err(format!("Established={} ({})", c.status, c.message.clone().unwrap_or_default())),
            None => Err("no Established condition yet".to_owned()),
        }
    })
    .await
}
