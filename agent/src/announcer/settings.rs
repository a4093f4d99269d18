//! The LBNodeAgent settings: the chosen LBNodeAgent is applied; an unusable one is reported (a Warning
//! event on it) and the previous settings are kept.

use kube::ResourceExt;
use purelb_core::api::LBNodeAgent;

use super::Announcer;
use crate::config::AgentConfig;
use crate::dataplane::DataPlane;

impl<D: DataPlane> Announcer<D> {
    /// Applies the chosen LBNodeAgent; an unusable one is reported and the previous settings kept.
    pub(super) fn configure(&mut self) {
        if !self.agents.synced() {
            return;
        }
        let chosen = LBNodeAgent::select(self.agents.values());
        let result = chosen.map_or(Ok(AgentConfig::default()), AgentConfig::from_agent);
        match result {
            Ok(c) => {
                self.bad_config = None;
                if c != self.config || self.parts.config.borrow().is_none() {
                    tracing::info!(
                        from = chosen.map(|a| a.name_any()).unwrap_or_else(|| "defaults".into()),
                        localint = %c.localint, extlbint = %c.extlbint, sendgarp = c.sendgarp,
                        "configuration"
                    );
                    self.config = c.clone();
                    self.parts.config.send_replace(Some(c));
                    self.pending.connected = true;
                    self.replan_all();
                }
            }
            Err(e) => {
                let message = format!(
                    "node {}: {e}; keeping the previous settings (localint {})",
                    self.settings.node, self.config.localint
                );
                if self.bad_config.as_ref() != Some(&message) {
                    tracing::warn!(%message, "unusable LBNodeAgent");
                    if let Some(agent) = chosen {
                        self.parts.writer.config_warning(agent, message.clone());
                    }
                    self.bad_config = Some(message);
                }
                if self.parts.config.borrow().is_none() {
                    self.parts.config.send_replace(Some(self.config.clone()));
                }
            }
        }
    }
}
