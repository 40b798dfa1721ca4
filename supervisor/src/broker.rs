//! Answers to the host calls of one plugin.
//!
//! The supervisor alone decides what a plugin may do: this module checks
//! every call against the plugin's granted permissions, whatever the worker
//! claims, and the plugin is known by the link the call came on, never by
//! anything in the frame. In this version `log` and `config` are served;
//! the other host interfaces answer with a clear "not available" error.

use std::sync::Arc;

use prx_ipc::{HostCall, HostReply, HostValue, LogLevel};

use crate::manifest::Permission;

/// Per-plugin broker state.
#[derive(Debug)]
pub struct PluginBroker {
    plugin: Arc<str>,
    config: Vec<(String, String)>,
}

impl PluginBroker {
    pub fn new(plugin: Arc<str>, config: Vec<(String, String)>) -> Self {
        Self { plugin, config }
    }

    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// Answers one host call of this plugin.
    pub async fn answer(&self, call: HostCall) -> HostReply {
        match call {
            HostCall::ConfigGet { key } => HostReply::Ok(HostValue::OptString(
                self.config
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| v.clone()),
            )),
            HostCall::ConfigGetAll => HostReply::Ok(HostValue::Pairs(self.config.clone())),
            other => self.unavailable(&other),
        }
    }

    /// A host interface this supervisor does not serve yet. Functions with
    /// a `result` get the error; the others trap, as WIT leaves no channel.
    fn unavailable(&self, call: &HostCall) -> HostReply {
        let permission = permission_of(call);
        let message = format!(
            "{} is not available in this version of prx-sandbox (permission `{permission}`)",
            call.function()
        );
        match call {
            HostCall::KvGet { .. } | HostCall::KvListKeys { .. } => HostReply::Trap(message),
            _ => HostReply::Err(message),
        }
    }

    /// Writes a plugin's log line into the supervisor's log.
    pub fn log(&self, level: LogLevel, message: &str) {
        let message = sanitize(message);
        let plugin = &*self.plugin;
        match level {
            LogLevel::Trace => tracing::trace!(target: "plugin", plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(target: "plugin", plugin, "{message}"),
            LogLevel::Info => tracing::info!(target: "plugin", plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(target: "plugin", plugin, "{message}"),
            LogLevel::Error => tracing::error!(target: "plugin", plugin, "{message}"),
        }
    }
}

/// The permission a host call needs.
pub fn permission_of(call: &HostCall) -> Permission {
    match call {
        HostCall::ConfigGet { .. } | HostCall::ConfigGetAll => Permission::Config,
        HostCall::KvGet { .. }
        | HostCall::KvSet { .. }
        | HostCall::KvDelete { .. }
        | HostCall::KvListKeys { .. } => Permission::Kv,
        HostCall::EventsPublish { .. }
        | HostCall::EventsSubscribe { .. }
        | HostCall::EventsUnsubscribe { .. } => Permission::Events,
        HostCall::HttpRequest { .. } => Permission::HttpOutbound,
        HostCall::MemoryStore { .. } | HostCall::MemoryRecall { .. } => Permission::Memory,
    }
}

/// Plugin text is untrusted: control characters (newlines that would forge
/// log lines, terminal escapes) are shown escaped.
fn sanitize(message: &str) -> std::borrow::Cow<'_, str> {
    if message.chars().any(char::is_control) {
        message
            .chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect::<String>()
            .into()
    } else {
        message.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_forge_log_lines() {
        assert_eq!(sanitize("a\nb\x1b[31m"), "a\\nb\\u{1b}[31m");
        assert_eq!(sanitize("plain"), "plain");
    }

    #[tokio::test]
    async fn config_is_served_from_the_manifest() {
        let broker = PluginBroker::new("p".into(), vec![("k".into(), "v".into())]);
        assert_eq!(
            broker.answer(HostCall::ConfigGet { key: "k".into() }).await,
            HostReply::Ok(HostValue::OptString(Some("v".into())))
        );
        assert_eq!(
            broker.answer(HostCall::ConfigGet { key: "x".into() }).await,
            HostReply::Ok(HostValue::OptString(None))
        );
        assert_eq!(
            broker.answer(HostCall::ConfigGetAll).await,
            HostReply::Ok(HostValue::Pairs(vec![("k".into(), "v".into())]))
        );
    }

    #[tokio::test]
    async fn unserved_interfaces_answer_clearly() {
        let broker = PluginBroker::new("p".into(), vec![]);
        match broker
            .answer(HostCall::KvSet {
                key: "k".into(),
                value: vec![],
            })
            .await
        {
            HostReply::Err(m) => assert!(m.contains("kv.set") && m.contains("`kv`"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            broker.answer(HostCall::KvGet { key: "k".into() }).await,
            HostReply::Trap(_)
        ));
    }
}
