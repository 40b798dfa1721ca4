//! Answers to the host calls of one plugin.
//!
//! The supervisor alone decides what a plugin may do: this module checks
//! every call against the plugin's permissions, whatever the worker
//! claims, and the plugin is known by the link the call came on, never by
//! anything in the frame. Three sets matter:
//!
//! - *declared*: `[permissions] required` and `optional` in the manifest;
//! - *granted*: declared and allowed by the operator's policy (`log` and
//!   `config` always);
//! - *imported*: interfaces the component imports, as its worker reported.
//!
//! A call to an interface the component does not import cannot come from
//! the component: the worker is compromised (the caller of
//! [`PluginBroker::answer`] checks that first). A call needing a permission
//! that was not declared traps the guest, as in PRX 0.1.0; one that was
//! declared but not granted gets `permission denied: <name>` (or traps,
//! for the functions that have no error channel).

pub mod kv;

use std::collections::BTreeSet;
use std::sync::Arc;

use prx_ipc::{HostCall, HostReply, HostValue, LogLevel};

use crate::manifest::Permission;
use kv::KvStore;

/// Per-plugin broker state.
#[derive(Debug)]
pub struct PluginBroker {
    plugin: Arc<str>,
    config: Vec<(String, String)>,
    declared: BTreeSet<Permission>,
    granted: BTreeSet<Permission>,
    kv: Option<KvStore>,
    kv_quota: u64,
}

impl PluginBroker {
    /// A broker that serves `config` and nothing else (benchmarks, tests).
    pub fn new(plugin: Arc<str>, config: Vec<(String, String)>) -> Self {
        Self {
            plugin,
            config,
            declared: BTreeSet::new(),
            granted: [Permission::Log, Permission::Config].into(),
            kv: None,
            kv_quota: 0,
        }
    }

    /// Grants: what was declared and allowed (log and config always).
    pub fn with_permissions(
        mut self,
        declared: BTreeSet<Permission>,
        granted: BTreeSet<Permission>,
    ) -> Self {
        self.declared = declared;
        self.granted.extend(granted);
        self
    }

    /// Serves kv from `store` with a quota in bytes.
    pub fn with_kv(mut self, store: KvStore, quota: u64) -> Self {
        self.kv = Some(store);
        self.kv_quota = quota;
        self
    }

    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    pub fn granted(&self) -> &BTreeSet<Permission> {
        &self.granted
    }

    /// Answers one host call of this plugin.
    pub async fn answer(&self, call: HostCall) -> HostReply {
        let permission = permission_of(&call);
        if !self.granted.contains(&permission) {
            let why = if self.declared.contains(&permission) {
                "not granted by the operator's policy"
            } else {
                "not declared in [permissions]"
            };
            tracing::debug!(plugin = %self.plugin, function = call.function(), %permission, why, "host call refused");
            let message = format!("permission denied: {permission}");
            return if self.declared.contains(&permission) && has_error_channel(&call) {
                HostReply::Err(message)
            } else {
                HostReply::Trap(format!("{message} ({why})"))
            };
        }
        match call {
            HostCall::ConfigGet { key } => HostReply::Ok(HostValue::OptString(
                self.config
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| v.clone()),
            )),
            HostCall::ConfigGetAll => HostReply::Ok(HostValue::Pairs(self.config.clone())),
            HostCall::KvGet { .. }
            | HostCall::KvSet { .. }
            | HostCall::KvDelete { .. }
            | HostCall::KvListKeys { .. }
            | HostCall::KvIncrement { .. } => self.kv(call).await,
            other => self.unavailable(&other),
        }
    }

    async fn kv(&self, call: HostCall) -> HostReply {
        let Some(store) = &self.kv else {
            return self.unavailable(&call);
        };
        let ns = &*self.plugin;
        let function = call.function();
        let reply = match call {
            HostCall::KvGet { key } => store.get(ns, &key).map(HostValue::OptBytes),
            HostCall::KvListKeys { prefix } => store.list_keys(ns, &prefix).map(HostValue::Strings),
            HostCall::KvSet { key, value } => store
                .set(ns, &key, value, self.kv_quota)
                .await
                .map(|()| HostValue::Unit),
            HostCall::KvDelete { key } => store.delete(ns, &key).await.map(HostValue::Bool),
            HostCall::KvIncrement { key, delta } => store
                .increment(ns, &key, delta, self.kv_quota)
                .await
                .map(HostValue::S64),
            _ => return HostReply::Trap("not a kv call".into()),
        };
        match reply {
            Ok(value) => HostReply::Ok(value),
            Err(e) => {
                tracing::debug!(plugin = %self.plugin, function, "kv call failed: {e}");
                HostReply::Err(format!("{function}: {e}"))
            }
        }
    }

    /// A host interface this supervisor does not serve yet.
    fn unavailable(&self, call: &HostCall) -> HostReply {
        let permission = permission_of(call);
        let message = format!(
            "{} is not available in this version of prx-sandbox (permission `{permission}`)",
            call.function()
        );
        if has_error_channel(call) {
            HostReply::Err(message)
        } else {
            HostReply::Trap(message)
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
        | HostCall::KvListKeys { .. }
        | HostCall::KvIncrement { .. } => Permission::Kv,
        HostCall::EventsPublish { .. }
        | HostCall::EventsSubscribe { .. }
        | HostCall::EventsUnsubscribe { .. } => Permission::Events,
        HostCall::HttpRequest { .. } => Permission::HttpOutbound,
        HostCall::MemoryStore { .. } | HostCall::MemoryRecall { .. } => Permission::Memory,
    }
}

/// Functions whose WIT result has an `err` case; the others can only
/// trap to refuse.
fn has_error_channel(call: &HostCall) -> bool {
    !matches!(
        call,
        HostCall::KvGet { .. }
            | HostCall::KvListKeys { .. }
            | HostCall::ConfigGet { .. }
            | HostCall::ConfigGetAll
    )
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

    fn kv_broker(declared: &[Permission], granted: &[Permission]) -> PluginBroker {
        PluginBroker::new("p".into(), vec![])
            .with_permissions(
                declared.iter().copied().collect(),
                granted.iter().copied().collect(),
            )
            .with_kv(KvStore::in_memory().unwrap(), 1 << 20)
    }

    #[tokio::test]
    async fn declared_but_not_granted_is_permission_denied() {
        let broker = kv_broker(&[Permission::Kv], &[]);
        let set = HostCall::KvSet {
            key: "k".into(),
            value: vec![1],
        };
        assert_eq!(
            broker.answer(set).await,
            HostReply::Err("permission denied: kv".into())
        );
        // No error channel: the guest traps with the same words.
        match broker.answer(HostCall::KvGet { key: "k".into() }).await {
            HostReply::Trap(m) => assert!(m.starts_with("permission denied: kv"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn undeclared_permissions_trap_as_in_prx() {
        let broker = kv_broker(&[], &[]);
        let set = HostCall::KvSet {
            key: "k".into(),
            value: vec![1],
        };
        match broker.answer(set).await {
            HostReply::Trap(m) => {
                assert_eq!(m, "permission denied: kv (not declared in [permissions])")
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn granted_kv_is_served_and_quota_errors_reach_the_guest() {
        let broker = kv_broker(&[Permission::Kv], &[Permission::Kv]);
        let set = HostCall::KvSet {
            key: "k".into(),
            value: b"v".to_vec(),
        };
        assert_eq!(broker.answer(set).await, HostReply::Ok(HostValue::Unit));
        assert_eq!(
            broker.answer(HostCall::KvGet { key: "k".into() }).await,
            HostReply::Ok(HostValue::OptBytes(Some(b"v".to_vec())))
        );
        let big = HostCall::KvSet {
            key: "big".into(),
            value: vec![0; 2 << 20],
        };
        match broker.answer(big).await {
            HostReply::Err(m) => assert!(m.starts_with("kv.set: over quota"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn unserved_interfaces_answer_clearly() {
        let broker = PluginBroker::new("p".into(), vec![])
            .with_permissions([Permission::Memory].into(), [Permission::Memory].into());
        let store = HostCall::MemoryStore {
            text: "t".into(),
            category: "c".into(),
        };
        match broker.answer(store).await {
            HostReply::Err(m) => {
                assert!(m.contains("memory.store") && m.contains("`memory`"), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }
}
