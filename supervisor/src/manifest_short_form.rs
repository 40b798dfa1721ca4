//! The manifest forms of PRX's own Python SDK, read as the forms of the
//! guide: `[plugin] capability = "..."` instead of `[[capabilities]]`,
//! and `[http_allowlist] urls = [...]` instead of
//! `[permissions].http_allowlist`. Folded at load, before validation, so
//! the rest of the host sees one form and every rule applies to both.

use serde::{Deserialize, Serialize};

use super::{Capability, CapabilityType, EventPattern, Manifest};

/// `[http_allowlist]` as a table (PRX's Python SDK template).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpAllowlistTable {
    #[serde(default)]
    pub urls: Vec<String>,
}

impl Manifest {
    /// PRX's Python SDK's manifest forms, as the forms of the guide:
    /// `[plugin] capability = "..."` becomes the one capability (a hook
    /// so declared gets every event: that SDK filters them in the plugin;
    /// a tool, provider or storage is named by the plugin), and
    /// `[http_allowlist] urls` the permissions' allowlist.
    pub(super) fn fold_short_forms(&mut self) -> Result<(), String> {
        if let Some(kind) = self.plugin.capability.take() {
            self.short_form = true;
            if !self.capabilities.is_empty() {
                return Err("[plugin].capability and [[capabilities]] are both set; keep [[capabilities]] (the short form declares one capability)".into());
            }
            if kind == CapabilityType::Cron {
                return Err("[plugin].capability = \"cron\" has no schedule; declare it as [[capabilities]] type = \"cron\" schedule = \"0 * * * *\"".into());
            }
            let named = matches!(kind, CapabilityType::Provider | CapabilityType::Storage);
            self.capabilities.push(Capability {
                kind,
                name: named.then(|| self.plugin.name.clone()),
                description: Some(self.plugin.description.clone()).filter(|d| !d.is_empty()),
                events: if kind == CapabilityType::Hook {
                    vec![EventPattern::Bare("*".into())]
                } else {
                    Vec::new()
                },
                priority: None,
                schedule: None,
            });
        }
        if let Some(table) = self.http_allowlist.take()
            && !table.urls.is_empty()
        {
            if !self.permissions.http_allowlist.is_empty() {
                return Err("[http_allowlist].urls and [permissions].http_allowlist are both set; keep [permissions].http_allowlist".into());
            }
            self.permissions.http_allowlist = table.urls;
        }
        Ok(())
    }
}
