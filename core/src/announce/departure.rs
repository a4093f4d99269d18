//! Why a stopping agent stops, as far as its routed addresses are concerned: an uninstall (its
//! DaemonSet gone or being deleted, or its ServiceAccount/RBAC gone: a 401/403) withdraws them;
//! anything else, including an API server that does not answer or answers 5xx, is a restart and leaves
//! them for the next agent (silence is never evidence).

use k8s_openapi::api::apps::v1::DaemonSet;

/// Why the agent stops, as far as its addresses are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Departure {
    /// PureLB is being removed: withdraw every address the agent added.
    Uninstall(String),
    /// Only this agent stops (a rolling update, a deleted pod, a node shutting down): routed addresses
    /// stay for the next agent.
    Restart(String),
}

/// Why the DaemonSet could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadFailure {
    /// The API server answered with an error status (`code`, its message).
    Refused { code: u16, message: String },
    /// No answer (timeout, connection refused, ...): silence.
    NoAnswer(String),
}

/// Judges a read of the agent's DaemonSet.
///
/// A 401 or 403 is the API server's answer, not silence: the agent's ServiceAccount or its RBAC is
/// gone, which is what an uninstall does (`helm uninstall` and `kubectl delete -f` remove the RBAC
/// while the agents still run). Any other failure is no evidence of an uninstall.
pub fn departure(name: &str, read: Result<Option<DaemonSet>, ReadFailure>) -> Departure {
    match read {
        Ok(None) => Departure::Uninstall(format!("DaemonSet {name} is gone")),
        Ok(Some(ds)) if ds.metadata.deletion_timestamp.is_some() => {
            Departure::Uninstall(format!("DaemonSet {name} is being deleted"))
        }
        Ok(Some(_)) => Departure::Restart(format!("DaemonSet {name} is still there")),
        Err(ReadFailure::Refused { code: code @ (401 | 403), message }) => Departure::Uninstall(format!(
            "the API server refuses to show DaemonSet {name} ({code}: {message}): the agent's ServiceAccount or RBAC is gone"
        )),
        Err(ReadFailure::Refused { code, message }) => Departure::Restart(format!(
            "could not read DaemonSet {name} ({code}: {message}); not evidence of an uninstall"
        )),
        Err(ReadFailure::NoAnswer(e)) => {
            Departure::Restart(format!("could not read DaemonSet {name} ({e}); not evidence of an uninstall"))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    #[test]
    fn only_a_missing_or_deleted_daemonset_is_an_uninstall() {
        let ds = DaemonSet::default();
        assert!(matches!(departure("purelb-agent", Ok(Some(ds.clone()))), Departure::Restart(_)));
        let gone = departure("purelb-agent", Ok(None));
        assert_eq!(gone, Departure::Uninstall("DaemonSet purelb-agent is gone".into()));
        let mut deleting = ds;
        deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        assert!(matches!(departure("purelb-agent", Ok(Some(deleting))), Departure::Uninstall(_)));
        // Silence is never evidence.
        let silent = departure("purelb-agent", Err(ReadFailure::NoAnswer("connection refused".into())));
        assert!(
            matches!(silent, Departure::Restart(ref why) if why.contains("connection refused")),
            "{silent:?}"
        );
        // Neither is an API server in trouble.
        let busy = departure("purelb-agent", Err(ReadFailure::Refused { code: 503, message: "etcd".into() }));
        assert!(matches!(busy, Departure::Restart(_)), "{busy:?}");
        let throttled =
            departure("purelb-agent", Err(ReadFailure::Refused { code: 429, message: "slow".into() }));
        assert!(matches!(throttled, Departure::Restart(_)), "{throttled:?}");
        // Its RBAC or ServiceAccount deleted under it is an uninstall.
        for code in [401, 403] {
            let refused = departure("purelb-agent", Err(ReadFailure::Refused { code, message: "no".into() }));
            assert!(
                matches!(refused, Departure::Uninstall(ref why) if why.contains("RBAC")),
                "{code}: {refused:?}"
            );
        }
    }
}
