//! `status` and `version`: what is installed and whether it runs (the Deployment's and DaemonSet's own
//! status, the allocator's leader Lease), the versions, a pools summary, the node Leases, and the Services
//! PureLB could not serve. Workload counts are the objects' status as the cluster's controllers wrote it:
//! where no controller runs (no kube-controller-manager), they say so rather than guess.

use std::fmt::Write as _;

use anyhow::Result;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;
use purelb_core::allocate::{Ownership, ServiceKey, ownership};
use purelb_core::api::{conditions, install};
use serde::Serialize;

use crate::cluster::Cluster;
use crate::error::kube as kube_err;
use crate::facts::{self, NodeReport};
use crate::pools;
use crate::style::{self, Format, bad, bold, dim, good, table, warn};

/// The plugin's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Component {
    pub name: String,
    pub present: bool,
    /// One line: ready counts, or why it is not running.
    pub state: String,
    pub healthy: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceProblem {
    pub service: String,
    pub reason: String,
    pub message: String,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupSummary {
    pub name: String,
    pub state: String,
    pub size: String,
    pub used: u64,
    pub free: String,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub plugin_version: String,
    pub install_namespace: String,
    pub components: Vec<Component>,
    pub groups: Vec<GroupSummary>,
    pub nodes: Vec<NodeReport>,
    pub services_with_problems: Vec<ServiceProblem>,
}

async fn get_opt<K>(api: &Api<K>, name: &str, what: &str) -> Result<Option<K>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.get_opt(name).await {
        Ok(o) => Ok(o),
        Err(kube::Error::Api(s)) if s.code == 403 => Ok(None),
        Err(e) => Err(kube_err(format!("reading {what}"), e)),
    }
}

fn images(spec: Option<&k8s_openapi::api::core::v1::PodSpec>) -> Vec<String> {
    spec.map(|s| s.containers.iter().filter_map(|c| c.image.clone()).collect()).unwrap_or_default()
}

/// Reads the status.
pub async fn read(cluster: &Cluster, classless_ours: bool) -> Result<Status> {
    let ns = &cluster.install_namespace;
    let c = &cluster.client;
    let mut components = Vec::new();

    let namespace = get_opt(&Api::<Namespace>::all(c.clone()), ns, "the namespace").await?;
    components.push(Component {
        name: format!("Namespace {ns}"),
        present: namespace.is_some(),
        healthy: namespace.as_ref().is_some_and(|n| n.metadata.deletion_timestamp.is_none()),
        state: match &namespace {
            None => "missing: kubectl purelb install".into(),
            Some(n) if n.metadata.deletion_timestamp.is_some() => "terminating".into(),
            Some(_) => "present".into(),
        },
        images: vec![],
    });
    let crds = Api::<CustomResourceDefinition>::all(c.clone());
    for name in ["servicegroups.purelb.io", "lbnodeagents.purelb.io"] {
        let crd = get_opt(&crds, name, &format!("CRD {name}")).await?;
        let established = crd
            .as_ref()
            .and_then(|c| c.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Established" && c.status == "True"));
        components.push(Component {
            name: format!("CRD {name}"),
            present: crd.is_some(),
            healthy: established,
            state: match (&crd, established) {
                (None, _) => "missing: kubectl purelb install".into(),
                (Some(_), true) => "established".into(),
                (Some(_), false) => "not established yet".into(),
            },
            images: vec![],
        });
    }

    let deploy = get_opt(
        &Api::<Deployment>::namespaced(c.clone(), ns),
        install::ALLOCATOR,
        "the allocator Deployment",
    )
    .await?;
    components.push(match deploy {
        None => Component { name: "Deployment purelb-allocator".into(), present: false, healthy: false, state: "missing".into(), images: vec![] },
        Some(d) => {
            let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let st = d.status.clone().unwrap_or_default();
            let ready = st.ready_replicas.unwrap_or(0);
            let state = if st.observed_generation.is_none() {
                format!("{ready}/{want} ready: no controller has acted on it yet (no pods exist; is kube-controller-manager running?)")
            } else {
                format!("{ready}/{want} ready, {} available", st.available_replicas.unwrap_or(0))
            };
            Component {
                name: "Deployment purelb-allocator".into(),
                present: true,
                healthy: ready > 0,
                state,
                images: images(d.spec.as_ref().and_then(|s| s.template.spec.as_ref())),
            }
        }
    });
    let ds =
        get_opt(&Api::<DaemonSet>::namespaced(c.clone(), ns), install::AGENT, "the agent DaemonSet").await?;
    components.push(match ds {
        None => Component {
            name: "DaemonSet purelb-agent".into(),
            present: false,
            healthy: false,
            state: "missing".into(),
            images: vec![],
        },
        Some(d) => {
            let st = d.status.clone().unwrap_or_default();
            let state = if st.observed_generation.is_none() {
                "no controller has acted on it yet (no pods exist; is kube-controller-manager running?)"
                    .to_string()
            } else {
                format!("{}/{} nodes ready", st.number_ready, st.desired_number_scheduled)
            };
            Component {
                name: "DaemonSet purelb-agent".into(),
                present: true,
                healthy: st.number_ready > 0,
                state,
                images: images(d.spec.as_ref().and_then(|s| s.template.spec.as_ref())),
            }
        }
    });
    let leader =
        get_opt(&Api::<Lease>::namespaced(c.clone(), ns), install::ALLOCATOR, "the allocator's leader Lease")
            .await?;
    let now = k8s_openapi::jiff::Timestamp::now();
    components.push(match leader.filter(|l| l.spec.is_some()) {
        None => Component {
            name: "allocator leader Lease".into(),
            present: false,
            healthy: false,
            state: "no allocator has ever led (no Lease purelb-allocator)".into(),
            images: vec![],
        },
        Some(lease) => {
            let term = facts::LeaseTerm::of(&lease);
            let (healthy, state) = match (term.holder, term.expires) {
                (None, _) => (false, "released: no allocator leads".to_string()),
                (Some(h), Some(e)) if e >= now => (true, format!("held by {h}, current until {e}")),
                (Some(h), Some(e)) => {
                    (false, format!("held by {h} but expired at {e}: the allocator is not renewing it"))
                }
                (Some(h), None) => (false, format!("held by {h} without renewTime")),
            };
            Component { name: "allocator leader Lease".into(), present: true, healthy, state, images: vec![] }
        }
    });

    let snap = cluster.snapshot(classless_ours, None).await?;
    let report = pools::report(&snap, false);
    let groups = report
        .groups
        .iter()
        .map(|g| GroupSummary {
            name: g.name.clone(),
            state: g.state.clone(),
            size: g.size.clone(),
            used: g.used,
            free: g.free.clone(),
        })
        .collect();
    let (_, nodes) = facts::node_facts(&[], &snap.leases, &[], snap.now);
    let mut services_with_problems = Vec::new();
    for svc in snap.services.iter().filter(|s| ownership(s, classless_ours) == Ownership::Ours) {
        let key = ServiceKey::of(svc);
        let cond = svc
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == conditions::ALLOCATED));
        match cond {
            Some(c) if c.status == "True" => {}
            Some(c) => services_with_problems.push(ServiceProblem {
                service: key.to_string(),
                reason: c.reason.clone(),
                message: c.message.clone(),
            }),
            None => services_with_problems.push(ServiceProblem {
                service: key.to_string(),
                reason: crate::facts::NOT_SEEN.into(),
                message: format!("no {} condition: the allocator has not written it", conditions::ALLOCATED),
            }),
        }
    }
    Ok(Status {
        plugin_version: VERSION.into(),
        install_namespace: ns.clone(),
        components,
        groups,
        nodes,
        services_with_problems,
    })
}

/// The status in plain words.
pub fn render(s: &Status) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{} (kubectl-purelb {})",
        bold(&format!("PureLB in {}", s.install_namespace)),
        s.plugin_version
    );
    for c in &s.components {
        let mark = if c.healthy {
            good("ok")
        } else if c.present {
            warn("!!")
        } else {
            bad("--")
        };
        let images =
            if c.images.is_empty() { String::new() } else { dim(&format!("  {}", c.images.join(", "))) };
        let _ = writeln!(o, "  {mark} {}: {}{images}", c.name, c.state);
    }
    let _ = writeln!(o, "\n{}", bold("Pools"));
    if s.groups.is_empty() {
        let _ = writeln!(o, "  no ServiceGroups (kubectl purelb sg create default)");
    } else {
        let rows: Vec<Vec<String>> = s
            .groups
            .iter()
            .map(|g| {
                vec![g.name.clone(), g.state.clone(), g.size.clone(), g.used.to_string(), g.free.clone()]
            })
            .collect();
        for line in table(&["GROUP", "STATE", "SIZE", "USED", "FREE"], &rows).lines() {
            let _ = writeln!(o, "  {line}");
        }
    }
    let _ = writeln!(
        o,
        "\n{} {}",
        bold("Node Leases"),
        dim("(read once: renewTime + leaseDurationSeconds against this clock)")
    );
    if s.nodes.is_empty() {
        let _ = writeln!(o, "  none: no agent has written a purelb-node-* Lease");
    }
    for n in &s.nodes {
        let live = if n.live { good("live") } else { warn("not live") };
        let _ = writeln!(o, "  {}  {live}  {} {}  {}", n.name, n.interface, n.subnets.join(","), dim(&n.why));
    }
    let _ = writeln!(o, "\n{}", bold("Services with problems"));
    if s.services_with_problems.is_empty() {
        let _ = writeln!(o, "  none");
    }
    for p in &s.services_with_problems {
        let _ = writeln!(o, "  {} {}: {}", p.service, bad(&p.reason), p.message);
    }
    o
}

/// `kubectl purelb status`.
pub async fn status(cluster: &Cluster, classless_ours: bool, format: Format) -> Result<()> {
    let s = read(cluster, classless_ours).await?;
    match style::structured(&s, format)? {
        Some(text) => style::print(&text),
        None => style::print(&render(&s)),
    }
    Ok(())
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Versions {
    pub plugin: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub installed_images: Vec<String>,
}

/// `kubectl purelb version`.
pub async fn version(cluster: Option<&Cluster>, format: Format) -> Result<()> {
    let mut v = Versions { plugin: VERSION.into(), server: None, installed_images: vec![] };
    if let Some(c) = cluster {
        let info = c
            .client
            .apiserver_version()
            .await
            .map_err(|e| kube_err("reading the API server's version", e))?;
        v.server = Some(info.git_version);
        let ns = &c.install_namespace;
        if let Some(d) =
            get_opt(&Api::<Deployment>::namespaced(c.client.clone(), ns), install::ALLOCATOR, "the allocator")
                .await?
        {
            v.installed_images.extend(images(d.spec.as_ref().and_then(|s| s.template.spec.as_ref())));
        }
        if let Some(d) =
            get_opt(&Api::<DaemonSet>::namespaced(c.client.clone(), ns), install::AGENT, "the agent").await?
        {
            v.installed_images.extend(images(d.spec.as_ref().and_then(|s| s.template.spec.as_ref())));
        }
    }
    match style::structured(&v, format)? {
        Some(text) => style::print(&text),
        None => {
            let mut o = format!("kubectl-purelb {}\n", v.plugin);
            if let Some(s) = &v.server {
                let _ = writeln!(o, "server {s}");
                if v.installed_images.is_empty() {
                    let _ = writeln!(
                        o,
                        "PureLB not installed in {}",
                        cluster.map(|c| c.install_namespace.as_str()).unwrap_or("")
                    );
                }
                for i in &v.installed_images {
                    let _ = writeln!(o, "installed {i}");
                }
            }
            style::print(&o);
        }
    }
    Ok(())
}
