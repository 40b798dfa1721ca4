//! What operators and host applications see of the running supervisor:
//! plugins and their status, modules' descriptions, a plugin's detail, cron
//! jobs (and running one now), kv, failures, and the event bus (its
//! counters, publishing and subscribing from the host).

use std::path::PathBuf;

use prx_ipc::Output;
use serde::{Deserialize, Serialize};

use crate::error::CallError;
use crate::manifest::CapabilityType;
use crate::metrics::CronStats;
use crate::plugin::{Plugin, PluginState};
use crate::plugin::{PluginStatus, StateKind};
use crate::services::events::{SubscriberStats, Subscription};
use crate::topics::EventError;

use super::loading::dir_name;
use super::{LoadFailure, Supervisor, ToolInfo};

/// A bus module as the console shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModuleDescription {
    pub plugin: String,
    pub state: StateKind,
    pub rpcs: Vec<String>,
    /// What `describe` answered; `None` when it could not be asked.
    pub status: Option<String>,
    pub stats: Vec<(String, String)>,
    pub error: Option<String>,
}

/// One plugin as its console page shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PluginDetail {
    pub status: crate::PluginStatus,
    /// `None` for a directory whose manifest could not be read.
    pub manifest: Option<crate::manifest::Manifest>,
    /// Permissions it declared and the operator's policy allows.
    pub granted: Vec<String>,
    /// Its newest log lines and the supervisor's notes about it.
    pub log: Vec<crate::metrics::LogLine>,
    /// The last answer of each of its RPCs.
    pub rpc_answers: std::collections::BTreeMap<String, crate::metrics::RpcSample>,
    pub module: Option<ModuleDescription>,
}

/// A cron plugin, its schedule and what it has done.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CronJob {
    pub plugin: String,
    pub schedule: String,
    pub state: StateKind,
    pub stats: CronStats,
}

impl Supervisor {
    /// Every bus module with its RPCs and what its `describe` says now.
    pub async fn describe_modules(&self) -> Vec<ModuleDescription> {
        let mut out = Vec::new();
        for plugin in self.plugins_with(CapabilityType::Module) {
            out.push(self.describe(&plugin).await);
        }
        out
    }

    /// A module's RPCs and what its `describe` says now (asked only while
    /// it runs).
    pub(super) async fn describe(&self, plugin: &Plugin) -> ModuleDescription {
        let state = plugin.state();
        let mut description = ModuleDescription {
            plugin: plugin.name.to_string(),
            state: state.kind(),
            rpcs: plugin.rpcs(),
            status: None,
            stats: Vec::new(),
            error: None,
        };
        if state == PluginState::Running {
            match plugin.describe(self.runtime()).await {
                Ok(Output::ModuleInfo(info)) => {
                    description.status = Some(crate::text::untrusted_text(info.status));
                    description.stats = info
                        .stats
                        .into_iter()
                        .take(64)
                        .map(|(k, v)| {
                            (
                                crate::text::untrusted_text(k),
                                crate::text::untrusted_text(v),
                            )
                        })
                        .collect();
                }
                Ok(_) => description.error = Some("describe answered with the wrong type".into()),
                Err(e) => description.error = Some(e),
            }
        }
        description
    }

    /// Everything the console's plugin page shows: its status, manifest,
    /// grants, recent log, the last answer of each RPC, and for a bus
    /// module what `describe` says now.
    pub async fn plugin_detail(&self, name: &str) -> Option<PluginDetail> {
        let plugin = self
            .inner
            .plugins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned();
        let Some(plugin) = plugin else {
            // A directory that never loaded: its status says why.
            let status = self.plugins().into_iter().find(|s| s.name == name)?;
            return Some(PluginDetail {
                status,
                manifest: None,
                granted: Vec::new(),
                log: Vec::new(),
                rpc_answers: Default::default(),
                module: None,
            });
        };
        let module = match plugin
            .manifest
            .capabilities_of(CapabilityType::Module)
            .next()
        {
            Some(_) => Some(self.describe(&plugin).await),
            None => None,
        };
        let stats = plugin.stats();
        Some(PluginDetail {
            status: plugin.status(),
            manifest: Some(plugin.manifest.clone()),
            granted: plugin
                .broker()
                .granted()
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect(),
            log: stats.recent_log(),
            rpc_answers: stats.rpc_samples(),
            module,
        })
    }

    /// Cron plugins, their schedules and their history.
    pub fn cron_jobs(&self) -> Vec<CronJob> {
        self.plugins_with(CapabilityType::Cron)
            .into_iter()
            .flat_map(|p| {
                p.manifest
                    .capabilities_of(CapabilityType::Cron)
                    .filter_map(|c| c.schedule.clone())
                    .map(|schedule| CronJob {
                        plugin: p.name.to_string(),
                        schedule,
                        state: p.state().kind(),
                        stats: p.cron.lock().unwrap_or_else(|e| e.into_inner()).clone(),
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Runs a cron plugin's job now (off schedule); refused while a run of
    /// it is going.
    pub async fn run_cron(&self, plugin: &str) -> Result<String, CallError> {
        let _guard = self.enter()?;
        let found = self
            .plugin_named(plugin)
            .filter(|p| {
                p.manifest
                    .capabilities_of(CapabilityType::Cron)
                    .next()
                    .is_some()
            })
            .ok_or_else(|| CallError::NotFound {
                what: "cron plugin",
                name: plugin.into(),
                known: self
                    .plugins_with(CapabilityType::Cron)
                    .iter()
                    .map(|p| p.name.to_string())
                    .collect(),
            })?;
        crate::scheduler::run_now(&found, self.runtime()).await
    }
}

impl Supervisor {
    /// Every plugin found, loaded or not, by name; then the directories
    /// whose manifest could not be read.
    pub fn plugins(&self) -> Vec<PluginStatus> {
        let plugins = self.inner.plugins.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<PluginStatus> = plugins.values().map(|p| p.status()).collect();
        let known: Vec<PathBuf> = out.iter().map(|s| s.dir.clone()).collect();
        for failure in self.failures() {
            if !known.contains(&failure.dir) {
                out.push(PluginStatus {
                    name: dir_name(&failure.dir),
                    version: String::new(),
                    dir: failure.dir.clone(),
                    capabilities: Vec::new(),
                    state: StateKind::Failed,
                    error: Some(failure.error.clone()),
                    pid: None,
                    restarts: 0,
                    last_exit: None,
                    uptime_ms: None,
                    in_flight: 0,
                    restart_at_ms: None,
                    log_dropped: 0,
                    sandbox: Vec::new(),
                    rpcs: Vec::new(),
                    events_handled: 0,
                    handler_failures: 0,
                    digest: String::new(),
                    code: None,
                    reloads: 0,
                    reload_error: None,
                    calls: Default::default(),
                    idle_stops: 0,
                    last_wake_ms: None,
                    spare_pids: Vec::new(),
                });
            }
        }
        out
    }

    /// The cluster as this node sees it; `None` when it runs alone.
    pub fn cluster_view(&self) -> Option<crate::cluster::ClusterView> {
        let cluster = self.inner.cluster.as_ref()?;
        let backend = match self.inner.config.kv_backend {
            crate::config::KvBackend::Embedded => "redb",
            crate::config::KvBackend::JetStream => "jetstream",
        };
        Some(cluster.view(backend, self.inner.services.bus.outbox_dropped()))
    }

    /// A plugin's kv value wherever its kv lives: the embedded store, or
    /// the cluster's JetStream (operators: `prx kv get`).
    pub async fn kv_read(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        match &self.inner.services.shared_kv {
            Some(cluster) => match cluster.existing_plugin_kv(plugin).await {
                Ok(Some(store)) => store.get(key).await.map_err(|e| e.to_string()),
                Ok(None) => Ok(None),
                Err(e) => Err(e.to_string()),
            },
            None => self.kv_get(plugin, key),
        }
    }

    /// A plugin's kv keys with a prefix, wherever its kv lives (operators:
    /// `prx kv list`).
    pub async fn kv_keys(&self, plugin: &str, prefix: &str) -> Result<Vec<String>, String> {
        match &self.inner.services.shared_kv {
            Some(cluster) => match cluster.existing_plugin_kv(plugin).await {
                Ok(Some(store)) => store.list_keys(prefix).await.map_err(|e| e.to_string()),
                Ok(None) => Ok(Vec::new()),
                Err(e) => Err(e.to_string()),
            },
            None => self.kv_list(plugin, prefix),
        }
    }

    /// A plugin's value in the embedded kv store.
    pub fn kv_get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.inner
            .services
            .kv
            .get(plugin, key)
            .map_err(|e| e.to_string())
    }

    /// Bytes a plugin keeps in KV (keys and values), as its quota counts.
    pub fn kv_usage(&self, plugin: &str) -> Result<u64, String> {
        self.inner
            .services
            .kv
            .usage(plugin)
            .map_err(|e| e.to_string())
    }

    /// Every plugin's counters (`/metrics`, the console).
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.inner.services.metrics
    }

    /// A plugin's keys with a prefix in the embedded kv store.
    pub fn kv_list(&self, plugin: &str, prefix: &str) -> Result<Vec<String>, String> {
        self.inner
            .services
            .kv
            .list_keys(plugin, prefix)
            .map_err(|e| e.to_string())
    }

    /// Publishes an event as the host (`prx.*` topics included).
    /// Returns the event's sequence number.
    pub fn publish(&self, topic: &str, payload_json: &str) -> Result<u64, EventError> {
        self.inner.services.bus.publish(topic, payload_json)
    }

    /// Subscribes the caller to events matching `pattern` (`*`, `a.*` or
    /// an exact topic). Dropping the handle unsubscribes.
    pub fn subscribe(&self, pattern: &str) -> Result<Subscription, EventError> {
        self.inner.services.bus.subscribe(pattern)
    }

    /// Events published on the bus since the supervisor started.
    pub fn events_published(&self) -> u64 {
        self.inner.services.bus.published()
    }

    /// Events that reached no plugin because their causal chain was
    /// `[events] max_depth` long (a loop between plugins stopped).
    pub fn events_too_deep(&self) -> u64 {
        self.inner.services.bus.too_deep()
    }

    /// Every subscriber of the bus with its queue and drop counts.
    pub fn event_stats(&self) -> Vec<SubscriberStats> {
        self.inner.services.bus.stats()
    }

    /// Plugins that could not be loaded, with the reason.
    pub fn failures(&self) -> Vec<LoadFailure> {
        self.inner
            .failures
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Tools being served.
    pub fn tools(&self) -> Vec<ToolInfo> {
        let tools = self.inner.tools.read().unwrap_or_else(|p| p.into_inner());
        tools
            .iter()
            .map(|(name, plugin)| {
                let spec = plugin.tool_spec();
                ToolInfo {
                    name: name.clone(),
                    plugin: plugin.name.to_string(),
                    description: spec
                        .as_ref()
                        .map(|s| s.description.escaped())
                        .unwrap_or_default(),
                    parameters_schema: spec.map(|s| s.parameters_schema).unwrap_or_default(),
                }
            })
            .collect()
    }

    /// Number of plugins running now.
    pub fn running(&self) -> usize {
        self.plugins()
            .iter()
            .filter(|p| p.state == StateKind::Running)
            .count()
    }
}
