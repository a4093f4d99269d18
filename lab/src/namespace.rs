//! One Kubernetes namespace per test, and its removal.
//!
//! [`TestNamespace::cleanup`] empties the namespace and removes its `kubernetes` finalizer itself, as the
//! namespace controller would: cleanup then takes well under a second instead of waiting for
//! kube-controller-manager's discovery and its queue.
//!
//! Exposes [`TestNamespace`].

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, NamespaceSpec};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::discovery::{Discovery, Scope, verbs};
use serde_json::json;

use crate::{LabError, wait_for};

/// How long cleanup waits for the namespace to be gone.
const GONE_TIMEOUT: Duration = Duration::from_secs(30);

// === impl TestNamespace ===

/// A uniquely named namespace (`<prefix>-<random>`), created by the admin. Call
/// [`TestNamespace::cleanup`] at the end of the test; a namespace left behind only costs a little etcd
/// space in a throwaway lab.
pub struct TestNamespace {
    name: String,
    client: kube::Client,
}

impl std::fmt::Debug for TestNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNamespace").field("name", &self.name).finish_non_exhaustive()
    }
}

impl TestNamespace {
    /// Creates a namespace named `<prefix>-<5 random characters>` (the apiserver picks the suffix).
    pub async fn new(client: &kube::Client, prefix: &str) -> Result<TestNamespace, LabError> {
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let namespace = Namespace {
            metadata: ObjectMeta { generate_name: Some(format!("{prefix}-")), ..Default::default() },
            ..Default::default()
        };
        let created = namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .map_err(|e| LabError::kube(format!("creating a namespace named {prefix}-*"), e))?;
        let name = created.metadata.name.unwrap_or_default();
        tracing::debug!(namespace = %name, "created test namespace");
        Ok(TestNamespace { name, client: client.clone() })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The client that created the namespace.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// Deletes the namespace and everything in it, and waits until it is gone.
    pub async fn cleanup(self) -> Result<(), LabError> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let ns = &self.name;
        // Deleting first puts the namespace in Terminating, which stops new objects from being created.
        delete_namespace(&namespaces, ns).await?;
        self.delete_contents().await?;

        // What the namespace controller does last: drop the `kubernetes` finalizer, then delete again.
        let finalized = Namespace {
            metadata: ObjectMeta { name: Some(ns.clone()), ..Default::default() },
            spec: Some(NamespaceSpec { finalizers: Some(Vec::new()) }),
            ..Default::default()
        };
        match namespaces.replace_subresource("finalize", ns, &PostParams::default(), &finalized).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.is_not_found() => return Ok(()),
            Err(e) => return Err(LabError::kube(format!("finalizing namespace {ns}"), e)),
        }
        delete_namespace(&namespaces, ns).await?;

        wait_for(&format!("namespace {ns} to be gone"), GONE_TIMEOUT, || async {
            match namespaces.get_opt(ns).await {
                Ok(None) => Ok(()),
                Ok(Some(namespace)) => Err(format!(
                    "still there, phase {:?}",
                    namespace.status.and_then(|s| s.phase).unwrap_or_default()
                )),
                Err(e) => Err(e.to_string()),
            }
        })
        .await
    }

    /// Deletes every namespaced object in the namespace, kind by kind, at once (grace period 0: no
    /// kubelet will ever confirm a pod's end) and removing finalizers that nobody is left to honour.
    async fn delete_contents(&self) -> Result<(), LabError> {
        let ns = &self.name;
        let discovery = Discovery::new(self.client.clone())
            .run()
            .await
            .map_err(|e| LabError::kube(format!("discovering kinds to empty namespace {ns}"), e))?;
        let now = DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::background() };
        let unfinalize = Patch::Merge(json!({ "metadata": { "finalizers": null } }));
        for group in discovery.groups() {
            for (resource, capabilities) in group.recommended_resources() {
                if capabilities.scope != Scope::Namespaced
                    || !capabilities.supports_operation(verbs::DELETE_COLLECTION)
                    || !capabilities.supports_operation(verbs::PATCH)
                {
                    continue;
                }
                let what = |verb: &str| format!("{verb} {} in namespace {ns}", resource.plural);
                let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &resource);
                let left = match api.delete_collection(&now, &ListParams::default()).await {
                    Ok(either) => either.left().map(|list| list.items).unwrap_or_default(),
                    Err(kube::Error::Api(status)) if status.is_not_found() || status.code == 405 => continue,
                    Err(e) => return Err(LabError::kube(what("deleting all"), e)),
                };
                for object in left {
                    if object.metadata.finalizers.as_ref().is_none_or(Vec::is_empty) {
                        continue;
                    }
                    let name = object.metadata.name.unwrap_or_default();
                    match api.patch(&name, &PatchParams::default(), &unfinalize).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(status)) if status.is_not_found() => {}
                        Err(e) => {
                            return Err(LabError::kube(
                                what(&format!("removing finalizers of {name} among")),
                                e,
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

async fn delete_namespace(namespaces: &Api<Namespace>, ns: &str) -> Result<(), LabError> {
    match namespaces.delete(ns, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        Err(e) => Err(LabError::kube(format!("deleting namespace {ns}"), e)),
    }
}
