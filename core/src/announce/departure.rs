//! Why a stopping agent stops, as far as its routed addresses are concerned: an uninstall (its
//! DaemonSet gone or being deleted) withdraws them; anything else, including an API server that does
//! not answer, is a restart and leaves them for the next agent (silence is never evidence).

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

/// Judges a read of the agent's DaemonSet (`Err`: no answer).
pub fn departure(name: &str, read: Result<Option<DaemonSet>, String>) -> Departure {
    match read {
        Ok(None) => Departure::Uninstall(format!("DaemonSet {name} is gone")),
        Ok(Some(ds)) if ds.metadata.deletion_timestamp.is_some() => {
            Departure::Uninstall(format!("DaemonSet {name} is being deleted"))
        }
        Ok(Some(_)) => Departure::Restart(format!("DaemonSet {name} is still there")),
        Err(e) => {
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
        let silent = departure("purelb-agent", Err("connection refused".into()));
        assert!(
            matches!(silent, Departure::Restart(ref why) if why.contains("connection refused")),
            "{silent:?}"
        );
    }
}
