//! Routing to every capability but tools: hook and module event delivery,
//! middleware chains, providers, bus-module RPCs, cron jobs, and memory
//! through the built-in store or a storage plugin.

use std::sync::Arc;

use prx_ipc::{Call, ChatMessage, ChatResponse, Output};
use serde::{Deserialize, Serialize};

use super::{HOST_MEMORY_OWNER, Supervisor};
use crate::broker::events::{Event, EventBus};
use crate::error::CallError;
use crate::manifest::CapabilityType;
use crate::metrics::CronStats;
use crate::plugin::{Plugin, PluginState, Runtime};
use crate::topics::{extend, no_chain};

/// The stages a middleware chain runs at, in a message's life.
pub const MIDDLEWARE_STAGES: [&str; 4] = ["inbound", "outbound", "llm_request", "llm_response"];

/// Priority of a middleware that does not set one.
const DEFAULT_PRIORITY: i64 = 50;

/// A memory found by a recall, whichever store served it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryFound {
    pub id: String,
    pub text: String,
    pub category: String,
    /// Relevance: 1.0 for the best match of the built-in store; the
    /// storage plugin's score otherwise.
    pub importance: f64,
    /// Who stored it (the built-in store knows).
    pub plugin: Option<String>,
    /// When it was stored, as the storage plugin writes time.
    pub timestamp: Option<String>,
}

/// A bus module as the console shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModuleDescription {
    pub plugin: String,
    pub state: String,
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
    pub state: String,
    pub stats: CronStats,
}

impl Supervisor {
    pub(super) fn plugin_named(&self, name: &str) -> Option<Arc<Plugin>> {
        self.inner
            .plugins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    fn plugins_with(&self, kind: CapabilityType) -> Vec<Arc<Plugin>> {
        self.inner
            .plugins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|p| p.manifest.capabilities_of(kind).next().is_some())
            .cloned()
            .collect()
    }

    pub(super) fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    /// Starts delivering a hook's or module's events: one task per plugin,
    /// one event at a time, in publish order.
    pub(super) fn spawn_delivery(&self, plugin: &Arc<Plugin>) {
        let module = plugin
            .manifest
            .capabilities_of(CapabilityType::Module)
            .next()
            .is_some();
        let hook = plugin
            .manifest
            .capabilities_of(CapabilityType::Hook)
            .next()
            .is_some();
        if !module && !hook {
            return;
        }
        // Taken once per name: a new version of the plugin is served by
        // the task its first version started.
        let Some(mut queue) = self.inner.services.bus.take_plugin_queue(&plugin.name) else {
            return;
        };
        let inner = Arc::downgrade(&self.inner);
        let name = plugin.name.clone();
        tokio::spawn(async move {
            while let Some(event) = queue.recv().await {
                // The version serving now, whichever that is.
                let Some(inner) = inner.upgrade() else { return };
                let supervisor = Supervisor { inner };
                let Some(plugin) = supervisor.plugin_named(&name) else {
                    return;
                };
                if plugin.is_stopping() {
                    return;
                }
                let (hook, module) =
                    event_targets(&plugin, &supervisor.inner.services.bus, &event.topic);
                if hook {
                    deliver(&plugin, supervisor.runtime(), event.clone(), true).await;
                }
                if module {
                    deliver(&plugin, supervisor.runtime(), event, false).await;
                }
            }
        });
    }

    /// Starts the schedule of each cron capability of the plugin.
    pub(super) fn spawn_schedules(&self, plugin: &Arc<Plugin>) {
        for cap in plugin.manifest.capabilities_of(CapabilityType::Cron) {
            let Some(expr) = &cap.schedule else { continue };
            // Validated with the manifest; a failure here is a bug.
            let schedule = match crate::cron::CronSchedule::parse(expr) {
                Ok(schedule) => schedule,
                Err(e) => {
                    tracing::error!(plugin = %plugin.name, "cron schedule not started: {e}");
                    continue;
                }
            };
            tokio::spawn(crate::scheduler::run_schedule(
                Arc::downgrade(plugin),
                self.runtime().clone(),
                schedule,
                self.inner.config.clock.clone(),
            ));
        }
    }

    /// The middleware plugins, in chain order: priority (lower first, 50
    /// when unset), then plugin name.
    pub fn middleware_chain(&self) -> Vec<(i64, String)> {
        self.ordered_middleware()
            .into_iter()
            .map(|(priority, plugin)| (priority, plugin.name.to_string()))
            .collect()
    }

    fn ordered_middleware(&self) -> Vec<(i64, Arc<Plugin>)> {
        let mut chain: Vec<(i64, Arc<Plugin>)> = self
            .plugins_with(CapabilityType::Middleware)
            .into_iter()
            .map(|p| {
                let priority = p
                    .manifest
                    .capabilities_of(CapabilityType::Middleware)
                    .filter_map(|c| c.priority)
                    .min()
                    .unwrap_or(DEFAULT_PRIORITY);
                (priority, p)
            })
            .collect();
        chain.sort_by(|(a, p), (b, q)| a.cmp(b).then_with(|| p.name.cmp(&q.name)));
        chain
    }

    /// Runs the middleware chain of `stage` over `data_json`: each step's
    /// output is the next one's input. An error from a step blocks the
    /// chain and comes back naming the plugin; so does a step that crashes
    /// or times out, unless the operator made that plugin fail-open.
    pub async fn run_middleware(&self, stage: &str, data_json: &str) -> Result<String, CallError> {
        let _guard = self.enter()?;
        if !MIDDLEWARE_STAGES.contains(&stage) {
            return Err(CallError::BadRequest(format!(
                "unknown middleware stage `{stage}`; the stages are {}",
                MIDDLEWARE_STAGES.join(", ")
            )));
        }
        serde_json::from_str::<serde::de::IgnoredAny>(data_json)
            .map_err(|e| CallError::BadRequest(format!("the {stage} data is not JSON: {e}")))?;
        let mut data = data_json.to_owned();
        for (_, plugin) in self.ordered_middleware() {
            let call = Call::MiddlewareProcess {
                stage: stage.into(),
                data: data.clone(),
            };
            let failure = match plugin.call(self.runtime(), call, no_chain()).await {
                Ok(Output::Text(out)) => {
                    match serde_json::from_str::<serde::de::IgnoredAny>(&out) {
                        Ok(_) => {
                            data = out;
                            continue;
                        }
                        Err(e) => CallError::BadOutput {
                            plugin: plugin.name.to_string(),
                            what: format!("{stage} data that is not JSON ({e})"),
                        },
                    }
                }
                Ok(Output::Refused(error)) => {
                    let error = CallError::Blocked {
                        plugin: plugin.name.to_string(),
                        stage: stage.into(),
                        error: crate::text::untrusted_text(error),
                    };
                    plugin.report_error(&error.to_string(), "middleware", no_chain());
                    return Err(error);
                }
                Ok(_) => plugin.bad_reply(),
                Err(e) => e,
            };
            if self
                .inner
                .config
                .middleware_fail_open
                .contains(&*plugin.name)
            {
                tracing::warn!(plugin = %plugin.name, stage, "middleware failed and is fail-open; skipping it: {failure}");
                continue;
            }
            let error = CallError::Blocked {
                plugin: plugin.name.to_string(),
                stage: stage.into(),
                error: format!("{failure} (fail-closed)"),
            };
            plugin.report_error(&error.to_string(), "middleware", no_chain());
            return Err(error);
        }
        Ok(data)
    }

    /// Providers by name, with the plugin serving each.
    pub fn providers(&self) -> Vec<(String, String)> {
        self.inner
            .providers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(name, p)| (name.clone(), p.name.to_string()))
            .collect()
    }

    /// Sends a chat to the provider named `provider`.
    pub async fn chat(
        &self,
        provider: &str,
        messages: Vec<ChatMessage>,
        model: &str,
        temperature: f64,
    ) -> Result<ChatResponse, CallError> {
        let _guard = self.enter()?;
        if !temperature.is_finite() {
            return Err(CallError::BadRequest(format!(
                "temperature {temperature} is not a number"
            )));
        }
        let plugin = self
            .inner
            .providers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(provider)
            .cloned()
            .ok_or_else(|| CallError::NotFound {
                what: "provider",
                name: provider.into(),
                known: self.providers().into_iter().map(|(n, _)| n).collect(),
            })?;
        let call = Call::ProviderChat {
            messages,
            model: model.into(),
            temperature,
        };
        match plugin.call(self.runtime(), call, no_chain()).await? {
            Output::Chat(response) => Ok(response),
            Output::Refused(error) => Err(CallError::Refused {
                plugin: plugin.name.to_string(),
                action: "the chat".into(),
                error: crate::text::untrusted_text(error),
            }),
            _ => Err(plugin.bad_reply()),
        }
    }

    /// RPC names and the module serving each.
    pub fn rpc_names(&self) -> Vec<(String, String)> {
        self.inner
            .rpcs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(name, p)| (name.clone(), p.name.to_string()))
            .collect()
    }

    /// Calls the bus-module RPC `name` with a JSON payload; returns the
    /// module's JSON reply.
    pub async fn rpc(&self, name: &str, payload_json: &str) -> Result<String, CallError> {
        let _guard = self.enter()?;
        serde_json::from_str::<serde::de::IgnoredAny>(payload_json).map_err(|e| {
            CallError::BadRequest(format!("the payload of `{name}` is not JSON: {e}"))
        })?;
        let plugin = self
            .inner
            .rpcs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| CallError::NotFound {
                what: "RPC",
                name: name.into(),
                known: self.rpc_names().into_iter().map(|(n, _)| n).collect(),
            })?;
        if !plugin.rpcs().iter().any(|r| r == name) {
            return Err(CallError::Unavailable(format!(
                "plugin `{}` no longer registers the RPC `{name}` (its on-load changed since it was first loaded)",
                plugin.name
            )));
        }
        let call = Call::ModuleRpc {
            name: name.into(),
            payload: payload_json.into(),
        };
        match plugin.call(self.runtime(), call, no_chain()).await? {
            Output::Text(reply) => match serde_json::from_str::<serde::de::IgnoredAny>(&reply) {
                Ok(_) => {
                    // Kept for the console (a chart of the last answer).
                    plugin.stats().rpc_answer(name, &reply);
                    Ok(reply)
                }
                Err(e) => Err(CallError::BadOutput {
                    plugin: plugin.name.to_string(),
                    what: format!("a reply to `{name}` that is not JSON ({e})"),
                }),
            },
            Output::Refused(error) => Err(CallError::Refused {
                plugin: plugin.name.to_string(),
                action: format!("the RPC `{name}`"),
                error: crate::text::untrusted_text(error),
            }),
            _ => Err(plugin.bad_reply()),
        }
    }

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
    async fn describe(&self, plugin: &Plugin) -> ModuleDescription {
        let state = plugin.state();
        let mut description = ModuleDescription {
            plugin: plugin.name.to_string(),
            state: state.label().into(),
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
                        state: p.state().label().into(),
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

    /// Stores a memory on behalf of the host application; returns its id.
    pub async fn store_memory(&self, text: &str, category: &str) -> Result<String, String> {
        match &self.inner.storage {
            Some(route) => route.store(text, category, None, no_chain()).await,
            None => self
                .inner
                .services
                .memory
                .store(HOST_MEMORY_OWNER, text, category)
                .await
                .map_err(|e| e.to_string()),
        }
    }

    /// The memories most relevant to `query`, best first.
    pub async fn recall_memory(&self, query: &str, limit: u32) -> Result<Vec<MemoryFound>, String> {
        match &self.inner.storage {
            Some(route) => route
                .recall(query, limit, None, no_chain())
                .await
                .map(|found| {
                    found
                        .into_iter()
                        .map(|m| MemoryFound {
                            id: m.key,
                            text: m.content,
                            category: m.category,
                            importance: m.score.unwrap_or(0.0),
                            plugin: None,
                            timestamp: Some(m.timestamp),
                        })
                        .collect()
                }),
            None => self
                .inner
                .services
                .memory
                .recall_for(HOST_MEMORY_OWNER, query, limit)
                .await
                .map(|found| {
                    found
                        .into_iter()
                        .map(|r| MemoryFound {
                            id: r.id,
                            text: r.text,
                            category: r.category,
                            importance: r.importance,
                            plugin: Some(r.plugin),
                            timestamp: None,
                        })
                        .collect()
                })
                .map_err(|e| e.to_string()),
        }
    }

    /// Forgets the memory `id`; true when it existed.
    pub async fn forget_memory(&self, id: &str) -> Result<bool, String> {
        match &self.inner.storage {
            Some(route) => route.forget(id, no_chain()).await,
            None => self
                .inner
                .services
                .memory
                .forget(id)
                .await
                .map_err(|e| e.to_string()),
        }
    }

    /// How many memories are stored.
    pub async fn count_memories(&self) -> Result<u64, String> {
        match &self.inner.storage {
            Some(route) => route.count(no_chain()).await,
            None => self
                .inner
                .services
                .memory
                .count()
                .map_err(|e| e.to_string()),
        }
    }

    /// Where memory is served: `built-in`, or the storage capability's
    /// name with its plugin and health.
    pub fn memory_backend(&self) -> serde_json::Value {
        match &self.inner.storage {
            None => serde_json::json!({ "backend": "built-in" }),
            Some(route) => serde_json::json!({
                "backend": route.name(),
                "plugin": route.plugin().map(|p| p.name.to_string()),
                "healthy": route.is_healthy(),
            }),
        }
    }
}

/// Which of a plugin's handlers an event goes to: (hook, module). A
/// plugin that is only one of them gets every event its subscriptions
/// let through; one that is both gets at its hook what its manifest
/// patterns match and at its module what it subscribed to when it loaded.
fn event_targets(plugin: &Plugin, bus: &EventBus, topic: &str) -> (bool, bool) {
    let is_hook = plugin
        .manifest
        .capabilities_of(CapabilityType::Hook)
        .next()
        .is_some();
    let is_module = plugin
        .manifest
        .capabilities_of(CapabilityType::Module)
        .next()
        .is_some();
    if is_hook && is_module {
        bus.matching(&plugin.name, topic)
    } else {
        (is_hook, is_module)
    }
}

/// Hands one event to a hook's `on-event` or a module's `on-event`. A
/// failure is logged, counted and published as an `error` event that the
/// plugin itself does not receive.
async fn deliver(plugin: &Plugin, rt: &Runtime, event: Event, hook: bool) {
    let chain = extend(&event.chain, &plugin.name);
    let call = if hook {
        Call::HookOnEvent {
            event: event.topic.to_string(),
            payload: event.payload.to_string(),
        }
    } else {
        Call::ModuleOnEvent {
            topic: event.topic.to_string(),
            payload: event.payload.to_string(),
        }
    };
    plugin
        .events_handled
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let failure = match plugin.call(rt, call, chain.clone()).await {
        Ok(Output::Unit) => return,
        // Quarantined, failed or stopping: its state says why already; an
        // `error` event per undelivered event would only add noise.
        Err(e @ CallError::NotRunning { .. }) => {
            plugin
                .handler_failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(plugin = %plugin.name, topic = %event.topic, "event not delivered: {e}");
            return;
        }
        Ok(Output::Refused(error)) => format!(
            "handler refused {}: {}",
            event.topic,
            crate::text::untrusted_text(error)
        ),
        Ok(_) => "handler answered with the wrong type".into(),
        Err(e) => format!("handler failed on {}: {e}", event.topic),
    };
    plugin
        .handler_failures
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::warn!(plugin = %plugin.name, topic = %event.topic, "{failure}");
    plugin.report_error(&failure, if hook { "hook" } else { "module" }, chain);
}
