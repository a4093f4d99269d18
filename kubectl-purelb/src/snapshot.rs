//! [`Snapshot`]: every object a report is computed from, read once from the cluster (`cluster.rs`) or from
//! files ([`Snapshot::add_yaml`]). The reports (`explain`, `pools`, `validate`) are pure functions of it,
//! so the same objects give the same answer online and offline.
//!
//! Files hold any number of YAML documents (`---`), each a Kubernetes object (`Service`, `ServiceGroup`,
//! `LBNodeAgent`, `Node`, `Lease`, `EndpointSlice`), a `List` of them (what `kubectl get -o yaml` prints),
//! or the simple node list:
//!
//! ```yaml
//! nodes:
//! - name: node1
//!   interface: eth0                 # the LAN interface the agent would report
//!   subnets: [192.0.2.0/24]         # its LAN subnets
//!   live: true                      # default true
//!   excluded: false                 # node.kubernetes.io/exclude-from-external-load-balancers; default false
//!   shuttingDown: false             # its kubelet began a graceful node shutdown; default false
//! ```

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::jiff::Timestamp;
use purelb_core::api::{LBNodeAgent, ServiceGroup};
use serde::Deserialize;
use serde_json::Value;

use crate::facts::DeclaredNode;

/// The namespace PureLB is installed in unless told otherwise.
pub const DEFAULT_INSTALL_NAMESPACE: &str = purelb_core::api::install::DEFAULT_NAMESPACE;

/// Why one object of a file cannot be read.
#[derive(Debug, thiserror::Error)]
enum ObjectError {
    #[error("no kind (expected a Kubernetes object, a List, or `nodes:`)")]
    NoKind,
    #[error("{what}: {source}")]
    Unreadable { what: String, source: serde_json::Error },
}

/// Where a snapshot came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Read from the API server.
    Cluster,
    /// Read from files.
    Files(Vec<String>),
}

/// The objects a report is computed from.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub services: Vec<Service>,
    pub groups: Vec<ServiceGroup>,
    pub agents: Vec<LBNodeAgent>,
    pub nodes: Vec<Node>,
    /// Node Leases (`purelb-node-*`) of the install namespace.
    pub leases: Vec<Lease>,
    pub slices: Vec<EndpointSlice>,
    pub declared_nodes: Vec<DeclaredNode>,
    /// Whether Services without a class are PureLB's (the allocator's default).
    pub classless_ours: bool,
    /// PureLB's namespace (node Leases, LBNodeAgent).
    pub install_namespace: String,
    /// The time Lease expiry is judged against.
    pub now: Timestamp,
    pub source: Source,
}

/// Why a file could not be read into a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{origin}: not YAML: {message}")]
    NotYaml { origin: String, message: String },
    #[error("{origin}, document {document}: {message}")]
    BadDocument { origin: String, document: usize, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeList {
    nodes: Vec<DeclaredNode>,
}

// === impl Snapshot ===

impl Snapshot {
    /// An empty snapshot judged at `now`.
    pub fn empty(source: Source, now: Timestamp) -> Snapshot {
        Snapshot {
            services: Vec::new(),
            groups: Vec::new(),
            agents: Vec::new(),
            nodes: Vec::new(),
            leases: Vec::new(),
            slices: Vec::new(),
            declared_nodes: Vec::new(),
            classless_ours: true,
            install_namespace: DEFAULT_INSTALL_NAMESPACE.to_string(),
            now,
            source,
        }
    }

    /// Adds every object of the YAML `text`; `origin` names it in errors. Namespaced objects without a
    /// namespace get `default_namespace` (as `kubectl apply` would put them). Kinds PureLB does not read
    /// are skipped and returned, as `Kind name`.
    pub fn add_yaml(
        &mut self,
        text: &str,
        origin: &str,
        default_namespace: &str,
    ) -> Result<Vec<String>, SnapshotError> {
        let documents: Vec<Value> = serde_saphyr::from_multiple(text)
            .map_err(|e| SnapshotError::NotYaml { origin: origin.to_string(), message: e.to_string() })?;
        let mut skipped = Vec::new();
        for (i, doc) in documents.into_iter().enumerate() {
            let bad = |message: String| SnapshotError::BadDocument {
                origin: origin.to_string(),
                document: i + 1,
                message,
            };
            match doc {
                Value::Null => {}
                Value::Object(ref map) if map.get("kind").and_then(Value::as_str) == Some("List") => {
                    for item in map.get("items").and_then(Value::as_array).cloned().unwrap_or_default() {
                        if let Some(s) =
                            self.add_object(item, default_namespace).map_err(|e| bad(e.to_string()))?
                        {
                            skipped.push(s);
                        }
                    }
                }
                Value::Object(ref map) if map.contains_key("nodes") && !map.contains_key("kind") => {
                    let list: NodeList = serde_json::from_value(doc.clone()).map_err(|e| {
                        bad(format!(
                            "not a node list (nodes: [{{name, interface, subnets, live, excluded}}]): {e}"
                        ))
                    })?;
                    for n in &list.nodes {
                        for s in &n.subnets {
                            purelb_core::pool::Subnet::parse(s)
                                .map_err(|e| bad(format!("node {}: {e}", n.name)))?;
                        }
                    }
                    self.declared_nodes.extend(list.nodes);
                }
                other => {
                    if let Some(s) =
                        self.add_object(other, default_namespace).map_err(|e| bad(e.to_string()))?
                    {
                        skipped.push(s);
                    }
                }
            }
        }
        Ok(skipped)
    }

    /// Adds one object of a kind the reports read; `Some(what)` names one of another kind, skipped.
    fn add_object(&mut self, mut obj: Value, default_namespace: &str) -> Result<Option<String>, ObjectError> {
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
        let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
        if kind.is_empty() {
            return Err(ObjectError::NoKind);
        }
        let namespaced =
            matches!(kind.as_str(), "Service" | "ServiceGroup" | "LBNodeAgent" | "Lease" | "EndpointSlice");
        if namespaced
            && obj.pointer("/metadata/namespace").and_then(Value::as_str).is_none()
            && let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut)
        {
            meta.insert("namespace".into(), Value::String(default_namespace.into()));
        }
        let what = || format!("{kind} {name}");
        fn parse<T: serde::de::DeserializeOwned>(obj: Value, what: String) -> Result<T, ObjectError> {
            serde_json::from_value(obj).map_err(|source| ObjectError::Unreadable { what, source })
        }
        match kind.as_str() {
            "Service" => self.services.push(parse(obj, what())?),
            "ServiceGroup" => self.groups.push(parse(obj, what())?),
            "LBNodeAgent" => self.agents.push(parse(obj, what())?),
            "Node" => self.nodes.push(parse(obj, what())?),
            "Lease" => self.leases.push(parse(obj, what())?),
            "EndpointSlice" => self.slices.push(parse(obj, what())?),
            _ => return Ok(Some(what())),
        }
        Ok(None)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn snap() -> Snapshot {
        Snapshot::empty(Source::Files(vec![]), Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn reads_objects_lists_and_the_simple_node_list() {
        let mut s = snap();
        let skipped = s
            .add_yaml(
                "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: a}\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: c}\n---\napiVersion: purelb.io/v1\nkind: ServiceGroup\nmetadata: {name: g}\nspec: {}\n---\nnodes:\n- name: n1\n  interface: eth0\n  subnets: [192.0.2.0/24]\n",
                "f.yaml",
                "ns",
            )
            .unwrap();
        assert_eq!(skipped, ["ConfigMap c"]);
        assert_eq!(s.services[0].metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(s.groups[0].metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(s.declared_nodes[0].name, "n1");
        assert!(s.declared_nodes[0].live && !s.declared_nodes[0].excluded);
    }

    #[test]
    fn errors_name_the_file_document_and_problem() {
        let e = snap().add_yaml("nodes:\n- name: n1\n  subnets: [nope]\n", "nodes.yaml", "ns").unwrap_err();
        assert!(
            e.to_string().starts_with("nodes.yaml, document 1: node n1: subnet nope is not a CIDR"),
            "{e}"
        );
        let e = snap().add_yaml("a: [", "x.yaml", "ns").unwrap_err();
        assert!(e.to_string().starts_with("x.yaml: not YAML"), "{e}");
        let e = snap().add_yaml("---\nfoo: 1\n", "y.yaml", "ns").unwrap_err();
        assert!(e.to_string().contains("no kind"), "{e}");
    }
}
