//! The `LBNodeAgent` CRD (`purelb.io/v1`, short name `lbna`): how the node agents pick interfaces and
//! whether they send gratuitous ARP / unsolicited neighbour advertisements.
//!
//! The schema carries CEL rules so the API server refuses an unusable interface name or regular
//! expression; the agent still checks what it reads (its regex engine is Rust's, the API server's is Go's
//! RE2: they agree on the common syntax, not on every corner).

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Node agent configuration.
// Clippy reads the repeated `type_` of the `printcolumn(...)` lists as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "purelb.io",
    version = "v1",
    kind = "LBNodeAgent",
    namespaced,
    shortname = "lbna",
    doc = "How PureLB's node agents announce addresses: the LAN interface, the interface for routed addresses, GARP/NA.",
    printcolumn(
        name = "Localint",
        type_ = "string",
        description = "The LAN interface: default (the default route's) or a regular expression",
        json_path = ".spec.local.localint"
    ),
    printcolumn(
        name = "Extlbint",
        type_ = "string",
        description = "The interface non-local addresses are added to",
        json_path = ".spec.local.extlbint"
    ),
    printcolumn(
        name = "Sendgarp",
        type_ = "boolean",
        description = "Whether takeovers send gratuitous ARP / unsolicited NA",
        json_path = ".spec.local.sendgarp"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
pub struct LBNodeAgentSpec {
    /// Settings for local (same-subnet) and non-local (routed) addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LBNodeAgentLocal>,
}

/// The `local` settings of an LBNodeAgent.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LBNodeAgentLocal {
    /// The LAN interface: `default` (the default route's interface) or a regular expression.
    #[serde(default = "default_localint")]
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = rules::localint())]
    pub localint: String,
    /// The interface non-local addresses are added to.
    #[serde(default = "default_extlbint")]
    #[schemars(length(min = 1, max = 15))]
    #[x_kube(validation = rules::extlbint())]
    pub extlbint: String,
    /// Send gratuitous ARP / unsolicited NA when a node takes over a local address.
    #[serde(default = "default_sendgarp")]
    pub sendgarp: bool,
}

impl LBNodeAgent {
    /// The LBNodeAgent that configures the agents, among those of the install namespace: the one named
    /// `default`, else the first by name.
    pub fn select<'a>(agents: impl IntoIterator<Item = &'a LBNodeAgent>) -> Option<&'a LBNodeAgent> {
        let mut all: Vec<&LBNodeAgent> = agents.into_iter().collect();
        all.sort_by_key(|a| (a.metadata.name.as_deref() != Some("default"), a.metadata.name.clone()));
        all.first().copied()
    }
}

impl Default for LBNodeAgentLocal {
    fn default() -> Self {
        Self { localint: default_localint(), extlbint: default_extlbint(), sendgarp: default_sendgarp() }
    }
}

/// `localint` when an LBNodeAgent does not say: the interface of the node's default route.
pub const DEFAULT_LOCALINT: &str = "default";
/// `extlbint` when an LBNodeAgent does not say: where routed addresses go.
pub const DEFAULT_EXTLBINT: &str = "kube-lb0";

fn default_localint() -> String {
    DEFAULT_LOCALINT.to_string()
}
fn default_extlbint() -> String {
    DEFAULT_EXTLBINT.to_string()
}
fn default_sendgarp() -> bool {
    true
}

/// The CEL rules of the LBNodeAgent schema.
mod rules {
    use kube::core::{Message, Rule};

    /// `localint` is `default` or a regular expression that compiles. CEL has no "is this a regex"
    /// function, but `matches` with an invalid pattern is an evaluation error, and an evaluation error
    /// rejects the object with the parser's complaint (`error parsing regexp: missing closing )`) followed
    /// by this message. `m || !m` is true for every pattern that compiles.
    pub(super) fn localint() -> Rule {
        Rule::new("self == 'default' || ''.matches(self) || !''.matches(self)").message(Message::Message(
            "localint must be 'default' or a regular expression matching the LAN interface's name".into(),
        ))
    }

    /// `extlbint` is a Linux interface name: 1 to 15 bytes (IFNAMSIZ less the NUL), no `/`, `:` or
    /// whitespace, not `.` or `..` (the kernel's `dev_valid_name`).
    pub(super) fn extlbint() -> Rule {
        Rule::new("self.matches('^[^/:[:space:]]{1,15}$') && self != '.' && self != '..'").message(
            Message::Message(
                "extlbint must be an interface name: 1 to 15 characters, no '/', ':' or whitespace".into(),
            ),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;
    use kube::core::cel::{ErrorKind, Validator};
    use serde_json::{Value, json};

    #[test]
    fn missing_settings_take_their_defaults() {
        let agent: LBNodeAgent = serde_saphyr::from_str(
            "apiVersion: purelb.io/v1\nkind: LBNodeAgent\nmetadata: {name: default}\nspec:\n  local: {}\n",
        )
        .unwrap();
        assert_eq!(agent.spec.local, Some(LBNodeAgentLocal::default()));
        assert_eq!(LBNodeAgentLocal::default().extlbint, "kube-lb0");
    }

    #[test]
    fn crd_has_short_name_and_printer_columns() {
        let crd = LBNodeAgent::crd();
        assert_eq!(crd.spec.names.short_names, Some(vec!["lbna".to_string()]));
        let columns = crd.spec.versions[0].additional_printer_columns.as_ref().unwrap();
        assert_eq!(
            columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["Localint", "Extlbint", "Sendgarp", "Age"]
        );
    }

    /// Every failed rule of `spec.local`, as (kind, path, message).
    fn violations(local: Value) -> Vec<(ErrorKind, String, String)> {
        let crd = LBNodeAgent::crd();
        let schema = crd.spec.versions[0].schema.as_ref().unwrap().open_api_v3_schema.as_ref().unwrap();
        let object = json!({
            "apiVersion": "purelb.io/v1",
            "kind": "LBNodeAgent",
            "metadata": {"name": "default", "namespace": "purelb-system"},
            "spec": {"local": local},
        });
        match Validator::new().validate(&serde_json::to_value(schema).unwrap(), &object, None) {
            Ok(()) => vec![],
            Err(errors) => errors.into_vec().into_iter().map(|e| (e.kind, e.field_path, e.message)).collect(),
        }
    }

    #[test]
    fn cel_accepts_good_settings() {
        for local in [
            json!({}),
            json!({"localint": "default", "extlbint": "kube-lb0", "sendgarp": false}),
            json!({"localint": "^(eth|enp)[0-9]+s?[0-9]*$"}),
            json!({"extlbint": "abcdefghijklmno"}),
        ] {
            assert_eq!(violations(local.clone()), vec![], "{local}");
        }
    }

    #[test]
    fn cel_rejects_an_interface_name_the_kernel_refuses() {
        for name in ["a/b", "a b", "eth0:1", ".", ".."] {
            let found = violations(json!({"extlbint": name}));
            assert!(
                found.len() == 1
                    && found[0].0 == ErrorKind::ValidationFailure
                    && found[0].1 == "spec.local.extlbint"
                    && found[0].2.starts_with("extlbint must be an interface name"),
                "{name:?}: {found:?}"
            );
        }
    }

    /// An invalid pattern makes `matches` fail to evaluate, which rejects the object (the API server
    /// reports the parser's complaint followed by the rule's message).
    #[test]
    fn cel_rejects_a_localint_that_is_not_a_regex() {
        let found = violations(json!({"localint": "eth("}));
        assert!(
            found.len() == 1
                && found[0].0 == ErrorKind::EvaluationError
                && found[0].1 == "spec.local.localint",
            "{found:?}"
        );
    }
}
