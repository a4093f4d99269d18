//! `LabError`: everything that can go wrong while building, starting or using the lab.
//!
//! Each message says what failed, on which process or object, and where to look (a log file and its
//! last lines when a process died or never became ready).

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Why the lab could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// Something the lab needs on this machine is missing (upstream binaries, Go, a workspace binary).
    #[error("lab prerequisite missing: {what}: {hint}")]
    Prerequisite { what: String, hint: String },

    /// A file-system or process operation failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },

    /// A certificate or key could not be generated.
    #[error("generating {what}: {source}")]
    Pki {
        what: String,
        #[source]
        source: rcgen::Error,
    },

    /// A supervised process exited while the lab still needed it.
    #[error("{process} exited ({status}) {during}; log {log}, last lines:\n{tail}", log = log.display())]
    ProcessExited { process: String, status: ExitStatus, during: String, log: PathBuf, tail: String },

    /// A supervised process stayed up but never became ready.
    #[error(
        "{process} not ready after {waited:?} (last check: {last}); log {log}, last lines:\n{tail}",
        log = log.display()
    )]
    NotReady { process: String, waited: Duration, last: String, log: PathBuf, tail: String },

    /// A Kubernetes API call failed.
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },

    /// A kubeconfig could not be written, read or turned into a client.
    #[error("kubeconfig {path}: {message}", path = path.display())]
    Kubeconfig { path: PathBuf, message: String },

    /// A manifest given to `apply_file` is not something the lab can apply.
    #[error("{path} document {document}: {message}", path = path.display())]
    Manifest { path: PathBuf, document: usize, message: String },

    /// `wait_for` gave up.
    #[error("timed out after {timeout:?} waiting for {what}; last observation: {last}")]
    Timeout { what: String, timeout: Duration, last: String },

    /// A request through the lab's data path (from the client, or a node to a pod) got no proper answer.
    #[error("{what}: {failure}")]
    Request { what: String, failure: crate::Failure },

    /// The process-wide shared control plane failed to start earlier in this process.
    #[error("the shared lab control plane failed to start: {0}")]
    Shared(String),
}

impl LabError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> LabError {
        LabError::Io { what: what.into(), source }
    }

    pub(crate) fn kube(what: impl Into<String>, source: kube::Error) -> LabError {
        LabError::Kube { what: what.into(), source }
    }
}
