//! Errors the user sees: what failed, and a hint saying what to do. `main` prints the message on stderr,
//! then the hint, and exits non-zero.

/// A failure with the hint to print under it.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Hinted {
    pub message: String,
    pub hint: String,
}

/// A command finished and reported its problems itself (validate, uninstall refusing): exit with `code`
/// without printing anything more.
#[derive(Debug, thiserror::Error)]
#[error("exit {0}")]
pub struct Exit(pub i32);

/// `message`, with `hint`.
pub fn hinted(message: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
    Hinted { message: message.into(), hint: hint.into() }.into()
}

/// A kube error while doing `what`, with a hint for the usual causes.
pub fn kube(what: impl Into<String>, e: kube::Error) -> anyhow::Error {
    let what = what.into();
    let hint = match &e {
        kube::Error::Api(s) if s.code == 403 => {
            "your user lacks the RBAC permission for this; ask a cluster admin, or check with `kubectl auth can-i`".to_string()
        }
        kube::Error::Api(s) if s.code == 401 => "the credentials were refused: log in again or check --kubeconfig/--context".to_string(),
        kube::Error::Api(s) if s.code == 404 && what.contains("purelb.io") => {
            "PureLB's CRDs are not installed here: kubectl purelb install".to_string()
        }
        kube::Error::Api(s) if s.code == 404 => "it does not exist (check the name and -n)".to_string(),
        kube::Error::HyperError(_) | kube::Error::Service(_) => {
            "the API server could not be reached: check --kubeconfig, --context and that the cluster is up".to_string()
        }
        _ => "run again; if it persists, check the cluster with kubectl".to_string(),
    };
    Hinted { message: format!("{what}: {e}"), hint }.into()
}
