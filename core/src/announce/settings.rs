//! What an `LBNodeAgent` asks of the agents, read once for the agent and for `kubectl purelb`: the
//! fields trimmed, `localint: default` or a regular expression anchored as `^(?:<localint>)$` (so `eth`
//! matches `eth`, not `eth0` or `veth12`), the defaults of the CRD type when there is no `spec.local`.
//! A pattern that does not compile is a [`SettingsError`] (the agent keeps its previous settings and
//! reports it; `validate` names the field).

use std::fmt;

use regex::Regex;

use crate::api::{DEFAULT_LOCALINT, LBNodeAgent, LBNodeAgentLocal};

/// How the LAN interface is chosen.
#[derive(Clone, Debug)]
pub enum LocalInt {
    /// The default route's interface.
    DefaultRoute,
    /// The interfaces whose whole name matches.
    Pattern {
        /// The pattern as written in the LBNodeAgent.
        source: String,
        /// The anchored, compiled pattern.
        regex: Regex,
    },
}

impl PartialEq for LocalInt {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::DefaultRoute, Self::DefaultRoute) => true,
            (Self::Pattern { source: a, .. }, Self::Pattern { source: b, .. }) => a == b,
            _ => false,
        }
    }
}

impl fmt::Display for LocalInt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DefaultRoute => f.write_str("default (the default route's interface)"),
            Self::Pattern { source, .. } => write!(f, "^(?:{source})$"),
        }
    }
}

/// The agent's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentConfig {
    /// How the LAN interface is chosen.
    pub localint: LocalInt,
    /// The interface non-local addresses go to.
    pub extlbint: String,
    /// Send GARP / unsolicited NA when this node takes up a local address.
    pub sendgarp: bool,
}

impl Default for AgentConfig {
    fn default() -> Self {
        // Unwrap-free: the defaults of the CRD type are the defaults of the agent.
        Self::from_local(&LBNodeAgentLocal::default()).unwrap_or(AgentConfig {
            localint: LocalInt::DefaultRoute,
            extlbint: crate::api::DEFAULT_EXTLBINT.into(),
            sendgarp: true,
        })
    }
}

/// A `localint` that is not a usable regular expression (the API server's CEL rule checks with Go's
/// RE2, which accepts a few things Rust's `regex` does not, such as `\Q...\E`).
#[derive(Debug, thiserror::Error)]
#[error("localint {pattern:?} is not a regular expression: {reason}")]
pub struct SettingsError {
    /// The pattern as written.
    pub pattern: String,
    /// The parser's complaint, on one line.
    pub reason: String,
}

impl AgentConfig {
    /// The configuration an LBNodeAgent's `spec.local` asks for.
    pub fn from_local(local: &LBNodeAgentLocal) -> Result<AgentConfig, SettingsError> {
        let localint = match local.localint.trim() {
            DEFAULT_LOCALINT => LocalInt::DefaultRoute,
            pattern => LocalInt::Pattern {
                source: pattern.to_string(),
                regex: Regex::new(&format!("^(?:{pattern})$")).map_err(|e| SettingsError {
                    pattern: pattern.to_string(),
                    reason: e.to_string().split_whitespace().collect::<Vec<_>>().join(" "),
                })?,
            },
        };
        Ok(AgentConfig { localint, extlbint: local.extlbint.trim().to_string(), sendgarp: local.sendgarp })
    }

    /// The configuration of `agent` (defaults when it has no `spec.local`).
    pub fn from_agent(agent: &LBNodeAgent) -> Result<AgentConfig, SettingsError> {
        match &agent.spec.local {
            Some(local) => Self::from_local(local),
            None => Ok(AgentConfig::default()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn local(localint: &str, extlbint: &str) -> LBNodeAgentLocal {
        LBNodeAgentLocal { localint: localint.into(), extlbint: extlbint.into(), ..Default::default() }
    }

    #[test]
    fn fields_are_trimmed_and_patterns_anchored() {
        let c = AgentConfig::from_local(&local(" eth1|lo ", " kube-lb0 ")).unwrap();
        assert_eq!(c.extlbint, "kube-lb0");
        let LocalInt::Pattern { regex, source } = &c.localint else { panic!("{:?}", c.localint) };
        assert_eq!(source, "eth1|lo");
        assert!(regex.is_match("eth1") && regex.is_match("lo") && !regex.is_match("eth10"));
        assert_eq!(
            AgentConfig::from_local(&local(" default ", "kube-lb0")).unwrap().localint,
            LocalInt::DefaultRoute
        );
        let e = AgentConfig::from_local(&local("eth(", "kube-lb0")).unwrap_err();
        assert_eq!(e.pattern, "eth(");
        assert!(!e.reason.contains('\n'), "{e}");
    }
}
