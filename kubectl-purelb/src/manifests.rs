//! The manifests `install` applies: every `deploy/*.yaml` embedded at build time (see `build.rs`), read
//! into objects, put in apply order (Namespace, CRDs, RBAC, then workloads), with image references
//! rewritten for `--version` / `--image-registry`. Pure.

use serde_json::Value;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/manifests.rs"));
}

pub use embedded::EMBEDDED;

/// Why the embedded manifests cannot be read (a build from a broken deploy/).
#[derive(Debug, thiserror::Error)]
#[error("embedded manifest deploy/{file}: {message}")]
pub struct ManifestError {
    pub file: String,
    pub message: String,
}

/// One object to apply.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    /// The deploy/ file it came from.
    pub file: String,
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
    pub body: Value,
}

impl Object {
    /// `Kind namespace/name` or `Kind name`.
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }

    /// `group`, `version` of its apiVersion.
    pub fn group_version(&self) -> (&str, &str) {
        self.api_version.rsplit_once('/').unwrap_or(("", self.api_version.as_str()))
    }
}

/// Apply order: what others depend on first.
fn rank(kind: &str) -> u8 {
    match kind {
        "Namespace" => 0,
        "CustomResourceDefinition" => 1,
        "ServiceAccount" => 2,
        "ClusterRole" | "Role" => 3,
        "ClusterRoleBinding" | "RoleBinding" => 4,
        "ConfigMap" | "Secret" => 5,
        "Service" => 6,
        "Deployment" | "DaemonSet" | "StatefulSet" => 8,
        _ => 7,
    }
}

/// Every embedded object, in apply order (stable within a rank: file, then document order).
pub fn objects() -> Result<Vec<Object>, ManifestError> {
    let mut out = Vec::new();
    for (file, text) in EMBEDDED {
        let err = |message: String| ManifestError { file: file.to_string(), message };
        let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| err(e.to_string()))?;
        for doc in docs.into_iter().filter(|d| !d.is_null()) {
            let s = |p: &str| doc.pointer(p).and_then(Value::as_str).map(str::to_string);
            let (Some(api_version), Some(kind), Some(name)) =
                (s("/apiVersion"), s("/kind"), s("/metadata/name"))
            else {
                return Err(err("a document without apiVersion, kind or metadata.name".into()));
            };
            out.push(Object {
                file: file.to_string(),
                api_version,
                kind,
                name,
                namespace: s("/metadata/namespace"),
                body: doc,
            });
        }
    }
    out.sort_by_key(|o| rank(&o.kind));
    Ok(out)
}

/// Rewrites every container image `registry/…/name:tag` of the objects: `version` replaces the tag,
/// `registry` replaces everything before the last `/`. Returns the images after the rewrite.
pub fn rewrite_images(objects: &mut [Object], version: Option<&str>, registry: Option<&str>) -> Vec<String> {
    let mut images = Vec::new();
    for o in objects.iter_mut() {
        for list in ["containers", "initContainers"] {
            let Some(containers) =
                o.body.pointer_mut(&format!("/spec/template/spec/{list}")).and_then(Value::as_array_mut)
            else {
                continue;
            };
            for c in containers {
                let Some(image) = c.get("image").and_then(Value::as_str) else { continue };
                let rewritten = rewrite_image(image, version, registry);
                images.push(rewritten.clone());
                c["image"] = Value::String(rewritten);
            }
        }
    }
    images
}

/// One image reference rewritten (see [`rewrite_images`]); digests (`@sha256:…`) are replaced by the tag
/// when a version is given.
pub fn rewrite_image(image: &str, version: Option<&str>, registry: Option<&str>) -> String {
    let (path, digest) = match image.split_once('@') {
        Some((p, d)) => (p, Some(d)),
        None => (image, None),
    };
    // A ':' after the last '/' is a tag; one before it belongs to a registry's port.
    let slash = path.rfind('/').map_or(0, |i| i + 1);
    let (repo, tag) = match path[slash..].rfind(':') {
        Some(i) => (&path[..slash + i], Some(&path[slash + i + 1..])),
        None => (path, None),
    };
    let name = &repo[repo.rfind('/').map_or(0, |i| i + 1)..];
    let repo = match registry {
        Some(r) => format!("{}/{name}", r.trim_end_matches('/')),
        None => repo.to_string(),
    };
    match (version, tag, digest) {
        (Some(v), _, _) => format!("{repo}:{v}"),
        (None, Some(t), Some(d)) => format!("{repo}:{t}@{d}"),
        (None, Some(t), None) => format!("{repo}:{t}"),
        (None, None, Some(d)) => format!("{repo}@{d}"),
        (None, None, None) => repo,
    }
}

/// The objects as one multi-document YAML stream.
pub fn to_yaml(objects: &[Object]) -> Result<String, serde_saphyr::ser::Error> {
    let mut out = String::new();
    for o in objects {
        out.push_str(&format!("---\n# from deploy/{}\n", o.file));
        out.push_str(&serde_saphyr::to_string(&o.body)?);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Fails when deploy/ holds a manifest the plugin does not embed (the build script reruns when
    /// deploy/ changes; this catches a stale build) or when an embedded one differs from the file.
    #[test]
    fn every_deploy_manifest_is_embedded_and_current() {
        let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
        let mut on_disk: Vec<String> = std::fs::read_dir(&deploy)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
            .collect();
        on_disk.sort();
        let embedded: Vec<String> = EMBEDDED.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(embedded, on_disk, "deploy/ and the embedded manifests differ: rebuild kubectl-purelb");
        for (name, text) in EMBEDDED {
            assert_eq!(
                std::fs::read_to_string(deploy.join(name)).unwrap(),
                *text,
                "deploy/{name} changed since the build"
            );
        }
    }

    #[test]
    fn objects_come_in_dependency_order() {
        let objs = objects().unwrap();
        let kinds: Vec<&str> = objs.iter().map(|o| o.kind.as_str()).collect();
        assert_eq!(kinds.first(), Some(&"Namespace"));
        let first_crd = kinds.iter().position(|k| *k == "CustomResourceDefinition").unwrap();
        let first_sa = kinds.iter().position(|k| *k == "ServiceAccount").unwrap();
        let first_workload = kinds.iter().position(|k| *k == "Deployment" || *k == "DaemonSet").unwrap();
        assert!(first_crd < first_sa && first_sa < first_workload, "{kinds:?}");
        assert!(objs.iter().any(|o| o.kind == "Deployment" && o.name == "purelb-allocator"));
    }

    #[test]
    fn images_are_rewritten() {
        let r = |i, v, reg| rewrite_image(i, v, reg);
        assert_eq!(
            r("ghcr.io/purelb-rs/purelb-agent:v0.1.0", Some("v0.2.0"), None),
            "ghcr.io/purelb-rs/purelb-agent:v0.2.0"
        );
        assert_eq!(
            r("ghcr.io/purelb-rs/purelb-agent:v0.1.0", None, Some("reg:5000/m/")),
            "reg:5000/m/purelb-agent:v0.1.0"
        );
        assert_eq!(r("reg:5000/purelb-agent", Some("v1"), None), "reg:5000/purelb-agent:v1");
        assert_eq!(r("a/b@sha256:00", None, Some("c")), "c/b@sha256:00");
        let mut objs = objects().unwrap();
        let images = rewrite_images(&mut objs, Some("v9.9.9"), Some("mirror.example/purelb"));
        assert!(
            !images.is_empty()
                && images
                    .iter()
                    .all(|i| i.starts_with("mirror.example/purelb/purelb-") && i.ends_with(":v9.9.9")),
            "{images:?}"
        );
    }
}
