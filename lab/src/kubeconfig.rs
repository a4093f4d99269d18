//! Kubeconfig files for the lab's users (the admin's client certificate, ServiceAccount tokens) and
//! clients built from them.
//!
//! Exposes [`client_from_kubeconfig`]; the writers are used by the control plane.

use std::path::Path;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

use crate::LabError;

/// How a kubeconfig's user proves who it is.
pub(crate) enum Credentials<'a> {
    ClientCertificate { cert: &'a Path, key: &'a Path },
    BearerToken(&'a str),
}

/// Writes a kubeconfig with one cluster, one user and one context, all named `context`.
/// File paths are written absolute, so the kubeconfig works from any directory.
pub(crate) fn write_kubeconfig(
    path: &Path,
    context: &str,
    server: &str,
    ca_cert: &Path,
    credentials: Credentials<'_>,
) -> Result<(), LabError> {
    let user = match credentials {
        Credentials::ClientCertificate { cert, key } => {
            json!({ "client-certificate": cert, "client-key": key })
        }
        Credentials::BearerToken(token) => json!({ "token": token }),
    };
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": context, "cluster": { "server": server, "certificate-authority": ca_cert } }],
        "users": [{ "name": context, "user": user }],
        "contexts": [{ "name": context, "context": { "cluster": context, "user": context, "namespace": "default" } }],
        "current-context": context,
    });
    let text = serde_saphyr::to_string(&config)
        .map_err(|e| LabError::Kubeconfig { path: path.to_owned(), message: format!("rendering: {e}") })?;
    std::fs::write(path, text).map_err(|e| LabError::io(format!("writing kubeconfig {}", path.display()), e))
}

/// A new client for the kubeconfig at `path`. It is tied to the tokio runtime that calls this.
pub async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client, LabError> {
    client_with_timeout(path, None).await
}

/// Like [`client_from_kubeconfig`], with a read timeout (for probes that must not hang).
pub(crate) async fn client_with_timeout(
    path: &Path,
    read_timeout: Option<Duration>,
) -> Result<kube::Client, LabError> {
    let kubeconfig_error = |message: String| LabError::Kubeconfig { path: path.to_owned(), message };
    let kubeconfig = Kubeconfig::read_from(path).map_err(|e| kubeconfig_error(format!("reading: {e}")))?;
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| kubeconfig_error(format!("loading: {e}")))?;
    config.connect_timeout = Some(Duration::from_secs(5));
    if read_timeout.is_some() {
        config.read_timeout = read_timeout;
    }
    kube::Client::try_from(config).map_err(|e| kubeconfig_error(format!("building a client: {e}")))
}
