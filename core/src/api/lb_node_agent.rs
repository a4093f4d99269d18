//! The `LBNodeAgent` CRD (`purelb.io/v1`, short name `lbna`): how the node agents pick interfaces and
//! whether they send gratuitous ARP / unsolicited neighbour advertisements.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Node agent configuration.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(group = "purelb.io", version = "v1", kind = "LBNodeAgent", namespaced, shortname = "lbna")]
pub struct LBNodeAgentSpec {
    /// Settings for local (same-subnet) and non-local (routed) addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LBNodeAgentLocal>,
}

/// The `local` settings of an LBNodeAgent.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LBNodeAgentLocal {
    /// The LAN interface: `default` (the default route's interface) or a regular expression.
    #[serde(default = "default_localint")]
    pub localint: String,
    /// The interface non-local addresses are added to.
    #[serde(default = "default_extlbint")]
    pub extlbint: String,
    /// Send gratuitous ARP / unsolicited NA when a node takes over a local address.
    #[serde(default = "default_sendgarp")]
    pub sendgarp: bool,
}

impl Default for LBNodeAgentLocal {
    fn default() -> Self {
        Self { localint: default_localint(), extlbint: default_extlbint(), sendgarp: default_sendgarp() }
    }
}

fn default_localint() -> String {
    "default".to_string()
}
fn default_extlbint() -> String {
    "kube-lb0".to_string()
}
fn default_sendgarp() -> bool {
    true
}
