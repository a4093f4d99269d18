//! Talking to the cluster: the client built the way kubectl builds it (`--kubeconfig`, else `$KUBECONFIG`
//! (a list, merged), else `~/.kube/config`, else in-cluster; `--context`; the namespace from `-n`, else the
//! context's), and a [`Snapshot`] read in one go.

use std::collections::BTreeMap;

use anyhow::Result;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt};
use purelb_core::allocate::ServiceKey;
use purelb_core::api::{LBNodeAgent, ServiceGroup};

use crate::cli::Global;
use crate::error::{hinted, kube as kube_err};
use crate::facts::LEASE_PREFIX;
use crate::snapshot::{Snapshot, Source};
use purelb_core::announce::facts::SERVICE_NAME_LABEL;

/// A connected client and the namespaces the command works in.
#[derive(Clone)]
pub struct Cluster {
    pub client: Client,
    /// `-n`, else the context's namespace, else `default`.
    pub namespace: String,
    /// Whether `-n` was given.
    pub namespace_given: bool,
    /// Where PureLB lives.
    pub install_namespace: String,
}

/// Builds the client as kubectl would.
pub async fn connect(g: &Global) -> Result<Cluster> {
    let options = KubeConfigOptions { context: g.context.clone(), cluster: None, user: None };
    let kubeconfig = match &g.kubeconfig {
        Some(path) => Some(Kubeconfig::read_from(path).map_err(|e| {
            hinted(
                format!("reading kubeconfig {}: {e}", path.display()),
                "check the path given to --kubeconfig",
            )
        })?),
        None => match Kubeconfig::from_env() {
            Ok(Some(k)) => Some(k),
            Ok(None) => Kubeconfig::read().ok(),
            Err(e) => {
                return Err(hinted(format!("reading $KUBECONFIG: {e}"), "check the files $KUBECONFIG lists"));
            }
        },
    };
    let config = match kubeconfig {
        Some(k) => Config::from_custom_kubeconfig(k, &options).await.map_err(|e| {
            hinted(
                format!("using the kubeconfig: {e}"),
                if g.context.is_some() {
                    "check the name given to --context (kubectl config get-contexts)"
                } else {
                    "check the kubeconfig's current-context (kubectl config current-context)"
                },
            )
        })?,
        None => Config::incluster().map_err(|_| {
            hinted(
                "no kubeconfig: $KUBECONFIG is unset, ~/.kube/config does not exist, and this is not a pod",
                "point --kubeconfig or $KUBECONFIG at your cluster's kubeconfig",
            )
        })?,
    };
    let namespace = g.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).map_err(|e| {
        hinted(format!("building the client: {e}"), "check the kubeconfig's cluster and user entries")
    })?;
    Ok(Cluster {
        client,
        namespace,
        namespace_given: g.namespace.is_some(),
        install_namespace: g.purelb_namespace.clone(),
    })
}

// === impl Cluster ===

impl Cluster {
    /// Lists every object of a kind in all namespaces.
    pub async fn list_all<K>(&self, what: &str) -> Result<Vec<K>>
    where
        K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let api: Api<K> = Api::all(self.client.clone());
        Ok(api.list(&ListParams::default()).await.map_err(|e| kube_err(format!("listing {what}"), e))?.items)
    }

    /// Like [`Cluster::list_all`], but an empty list (and a warning on stderr) when forbidden.
    async fn list_or_empty<K>(&self, api: Api<K>, what: &str, lp: &ListParams) -> Result<Vec<K>>
    where
        K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        match api.list(lp).await {
            Ok(l) => Ok(l.items),
            Err(kube::Error::Api(s)) if s.code == 403 || s.code == 404 => {
                crate::style::eprint(&format!(
                    "warning: cannot list {what} ({}); answering without them\n",
                    s.message
                ));
                Ok(Vec::new())
            }
            Err(e) => Err(kube_err(format!("listing {what}"), e)),
        }
    }

    /// Every ServiceGroup, in every namespace.
    pub async fn groups(&self) -> Result<Vec<ServiceGroup>> {
        self.list_all("ServiceGroups (servicegroups.purelb.io)").await
    }

    /// The objects every report needs; EndpointSlices only for `slices_of` (explain).
    pub async fn snapshot(&self, classless_ours: bool, slices_of: Option<&ServiceKey>) -> Result<Snapshot> {
        let now = Timestamp::now();
        let mut snap = Snapshot::empty(Source::Cluster, now);
        snap.classless_ours = classless_ours;
        snap.install_namespace = self.install_namespace.clone();
        let (services, groups) = tokio::try_join!(self.list_all::<Service>("Services"), self.groups())?;
        snap.services = services;
        snap.groups = groups;
        let none = ListParams::default();
        snap.agents = self
            .list_or_empty(
                Api::<LBNodeAgent>::all(self.client.clone()),
                "LBNodeAgents (lbnodeagents.purelb.io)",
                &none,
            )
            .await?;
        snap.nodes = self.list_or_empty(Api::<Node>::all(self.client.clone()), "Nodes", &none).await?;
        snap.leases = self
            .list_or_empty(
                Api::<Lease>::namespaced(self.client.clone(), &self.install_namespace),
                &format!("Leases in {}", self.install_namespace),
                &none,
            )
            .await?
            .into_iter()
            .filter(|l| l.name_any().starts_with(LEASE_PREFIX))
            .collect();
        if let Some(key) = slices_of {
            let lp = ListParams::default().labels(&format!("{SERVICE_NAME_LABEL}={}", key.name));
            snap.slices = self
                .list_or_empty(
                    Api::<EndpointSlice>::namespaced(self.client.clone(), &key.namespace),
                    &format!("EndpointSlices in {}", key.namespace),
                    &lp,
                )
                .await?;
        }
        Ok(snap)
    }

    /// Services holding PureLB addresses (annotation `purelb.io/allocated-by`), by key.
    pub async fn allocated_services(&self) -> Result<BTreeMap<ServiceKey, Service>> {
        let all: Vec<Service> = self.list_all("Services").await?;
        Ok(all
            .into_iter()
            .filter(|s| crate::facts::annotation(s, purelb_core::api::annotations::ALLOCATED_BY).is_some())
            .map(|s| (ServiceKey::of(&s), s))
            .collect())
    }
}

/// Reads files into a snapshot judged now (offline commands).
pub fn snapshot_from_files(
    files: &[std::path::PathBuf],
    default_namespace: &str,
    install_namespace: &str,
    classless_ours: bool,
) -> Result<Snapshot> {
    let names = files.iter().map(|f| f.display().to_string()).collect();
    let mut snap = Snapshot::empty(Source::Files(names), Timestamp::now());
    snap.classless_ours = classless_ours;
    snap.install_namespace = install_namespace.to_string();
    for f in files {
        let text = if f.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin())
                .map_err(|e| hinted(format!("reading stdin: {e}"), "pipe YAML into -f -"))?
        } else {
            std::fs::read_to_string(f)
                .map_err(|e| hinted(format!("reading {}: {e}", f.display()), "check the path"))?
        };
        let skipped = snap.add_yaml(&text, &f.display().to_string(), default_namespace).map_err(|e| {
            hinted(e.to_string(), "the file must hold YAML documents of Kubernetes objects (or `nodes:`)")
        })?;
        if !skipped.is_empty() {
            crate::style::eprint(&format!(
                "note: {}: ignoring {} (not read by PureLB)\n",
                f.display(),
                skipped.join(", ")
            ));
        }
    }
    Ok(snap)
}
