//! Routing to every capability but tools: hook and module event delivery,
//! middleware chains, providers, bus-module RPCs, cron jobs, and memory
//! through the built-in store or a storage plugin.

use std::sync::Arc;

use prx_ipc::{Call, ChatMessage, ChatResponse, Output};

use crate::error::CallError;
use crate::manifest::CapabilityType;
use crate::plugin::{Plugin, Runtime};
use crate::topics::no_chain;

use super::Supervisor;
use crate::cluster::subjects::CallKind;
use crate::cluster::wire::{Answer, CallBody};

/// Why a middleware step did not pass its data on.
enum Step {
    /// The plugin refused it: the chain is blocked, fail-open or not.
    Refused(String),
    /// It crashed, timed out or could not be reached.
    Failed(CallError),
}

/// The stages a middleware chain runs at, in a message's life.
pub const MIDDLEWARE_STAGES: [&str; 4] = ["inbound", "outbound", "llm_request", "llm_response"];

/// Priority of a middleware that does not set one.
const DEFAULT_PRIORITY: i64 = 50;

impl Supervisor {
    pub(super) fn plugin_named(&self, name: &str) -> Option<Arc<Plugin>> {
        self.inner
            .plugins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Every plugin loaded now.
    pub(super) fn all_plugins(&self) -> Vec<Arc<Plugin>> {
        self.inner
            .plugins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub(super) fn plugins_with(&self, kind: CapabilityType) -> Vec<Arc<Plugin>> {
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

    /// The middleware plugins, in chain order: priority (lower first, 50
    /// when unset), then plugin name.
    pub fn middleware_chain(&self) -> Vec<(i64, String)> {
        self.middleware_steps()
            .into_iter()
            .map(|(priority, name, _)| (priority, name))
            .collect()
    }

    pub(super) fn ordered_middleware(&self) -> Vec<(i64, Arc<Plugin>)> {
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

    /// The chain's steps: this node's middleware and, in a cluster, the
    /// middleware only other nodes run, in priority then name order.
    fn middleware_steps(&self) -> Vec<(i64, String, Option<Arc<Plugin>>)> {
        let mut steps: Vec<(i64, String, Option<Arc<Plugin>>)> = self
            .ordered_middleware()
            .into_iter()
            .map(|(priority, p)| (priority, p.name.to_string(), Some(p)))
            .collect();
        if let Some(cluster) = self.cluster() {
            for node in cluster.members().alive() {
                for p in node.plugins {
                    let Some(priority) = p.middleware_priority else {
                        continue;
                    };
                    if !steps.iter().any(|(_, name, _)| *name == p.name) {
                        steps.push((priority, p.name, None));
                    }
                }
            }
        }
        steps.sort_by(|(a, p, _), (b, q, _)| a.cmp(b).then_with(|| p.cmp(q)));
        steps
    }

    /// Runs the middleware chain of `stage` over `data_json`: each step's
    /// output is the next one's input. An error from a step blocks the
    /// chain and comes back naming the plugin; so does a step that crashes
    /// or times out, unless the operator made that plugin fail-open. In a
    /// cluster the chain holds the middleware of every node; a step whose
    /// plugin runs elsewhere is a call to that node.
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
        for (_, name, local) in self.middleware_steps() {
            let step = match self.here(local.clone()) {
                Some(plugin) => self.middleware_step(&plugin, stage, &data).await,
                None => {
                    let body = CallBody::Middleware {
                        plugin: name.clone(),
                        stage: stage.into(),
                        data: data.clone(),
                    };
                    match self
                        .call_remote_text(CallKind::Middleware, "middleware", &name, body)
                        .await
                    {
                        Err(CallError::NotInCluster { .. }) if local.is_some() => {
                            // Nowhere else either: this node's copy says why.
                            let plugin = local.clone().expect("checked");
                            self.middleware_step(&plugin, stage, &data).await
                        }
                        Err(CallError::Remote {
                            kind: "refused",
                            message,
                            ..
                        }) => Err(Step::Refused(message)),
                        other => other.map_err(Step::Failed),
                    }
                }
            };
            let failure = match step {
                Ok(out) => match serde_json::from_str::<serde::de::IgnoredAny>(&out) {
                    Ok(_) => {
                        data = out;
                        continue;
                    }
                    Err(e) => CallError::BadOutput {
                        plugin: name.clone(),
                        what: format!("{stage} data that is not JSON ({e})"),
                    },
                },
                Err(Step::Refused(error)) => {
                    let error = CallError::Blocked {
                        plugin: name.clone(),
                        stage: stage.into(),
                        error,
                    };
                    if let Some(plugin) = &local {
                        plugin.report_error(&error.to_string(), "middleware", no_chain());
                    }
                    return Err(error);
                }
                Err(Step::Failed(e)) => e,
            };
            if self.inner.config.middleware_fail_open.contains(&name) {
                tracing::warn!(plugin = %name, stage, "middleware failed and is fail-open; skipping it: {failure}");
                continue;
            }
            let error = CallError::Blocked {
                plugin: name.clone(),
                stage: stage.into(),
                error: format!("{failure} (fail-closed)"),
            };
            if let Some(plugin) = &local {
                plugin.report_error(&error.to_string(), "middleware", no_chain());
            }
            return Err(error);
        }
        Ok(data)
    }

    /// One middleware step on this node: the plugin's output, or why not.
    async fn middleware_step(
        &self,
        plugin: &Plugin,
        stage: &str,
        data: &str,
    ) -> Result<String, Step> {
        let call = Call::MiddlewareProcess {
            stage: stage.into(),
            data: data.into(),
        };
        match plugin.call(self.runtime(), call, no_chain()).await {
            Ok(Output::Text(out)) => Ok(out),
            Ok(Output::Refused(error)) => Err(Step::Refused(crate::text::untrusted_text(error))),
            Ok(_) => Err(Step::Failed(plugin.bad_reply())),
            Err(e) => Err(Step::Failed(e)),
        }
    }

    /// A middleware step another node asked for: a refusal comes back as
    /// `refused`, which blocks the chain there.
    pub(super) async fn middleware_step_here(
        &self,
        name: &str,
        stage: &str,
        data: &str,
    ) -> Result<String, CallError> {
        let _guard = self.enter()?;
        // What run_middleware checks before a local step, checked again:
        // another node's call is no more trusted than an operator's.
        if !MIDDLEWARE_STAGES.contains(&stage) {
            return Err(CallError::BadRequest(format!(
                "unknown middleware stage `{stage}`"
            )));
        }
        serde_json::from_str::<serde::de::IgnoredAny>(data)
            .map_err(|e| CallError::BadRequest(format!("the {stage} data is not JSON: {e}")))?;
        let plugin = self
            .plugin_named(name)
            .filter(|p| {
                p.manifest
                    .capabilities_of(CapabilityType::Middleware)
                    .next()
                    .is_some()
            })
            .ok_or_else(|| CallError::NotFound {
                what: "middleware",
                name: name.into(),
                known: Vec::new(),
            })?;
        match self.middleware_step(&plugin, stage, data).await {
            Ok(out) => Ok(out),
            Err(Step::Refused(error)) => {
                plugin.report_error(&error, "middleware", no_chain());
                Err(CallError::Refused {
                    plugin: name.into(),
                    action: format!("the {stage} data"),
                    error,
                })
            }
            Err(Step::Failed(e)) => Err(e),
        }
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

    /// Sends a chat to the provider named `provider`: this node's, or in
    /// a cluster whichever node serves it.
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
        let local = self.lookup(&self.inner.providers, provider);
        let unknown = || CallError::NotFound {
            what: "provider",
            name: provider.into(),
            known: self.providers().into_iter().map(|(n, _)| n).collect(),
        };
        if let Some(plugin) = self.choose(&local, unknown)? {
            return self.chat_with(&plugin, messages, model, temperature).await;
        }
        let body = CallBody::Chat {
            provider: provider.into(),
            messages: messages.clone(),
            model: model.into(),
            temperature,
        };
        match self
            .call_remote(CallKind::Chat, "provider", provider, body)
            .await
        {
            Ok(Answer::Chat(response)) => Ok(response),
            Ok(_) => Err(CallError::Unavailable(format!(
                "the cluster answered the chat with provider `{provider}` with the wrong type"
            ))),
            Err(CallError::NotInCluster { .. }) if local.is_some() => {
                let plugin = local.expect("checked");
                self.chat_with(&plugin, messages, model, temperature).await
            }
            Err(e) => Err(e),
        }
    }

    /// A chat another node sent to this node's provider.
    pub(super) async fn chat_here(
        &self,
        provider: &str,
        messages: Vec<ChatMessage>,
        model: &str,
        temperature: f64,
    ) -> Result<ChatResponse, CallError> {
        let _guard = self.enter()?;
        let plugin = self
            .lookup(&self.inner.providers, provider)
            .ok_or_else(|| CallError::NotFound {
                what: "provider",
                name: provider.into(),
                known: Vec::new(),
            })?;
        if !temperature.is_finite() {
            return Err(CallError::BadRequest(format!(
                "temperature {temperature} is not a number"
            )));
        }
        self.chat_with(&plugin, messages, model, temperature).await
    }

    async fn chat_with(
        &self,
        plugin: &Plugin,
        messages: Vec<ChatMessage>,
        model: &str,
        temperature: f64,
    ) -> Result<ChatResponse, CallError> {
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

    pub(super) fn lookup(
        &self,
        map: &std::sync::RwLock<std::collections::BTreeMap<String, Arc<Plugin>>>,
        name: &str,
    ) -> Option<Arc<Plugin>> {
        map.read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
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
    /// module's JSON reply. In a cluster, a module on another node serves
    /// it when none here does.
    pub async fn rpc(&self, name: &str, payload_json: &str) -> Result<String, CallError> {
        let _guard = self.enter()?;
        serde_json::from_str::<serde::de::IgnoredAny>(payload_json).map_err(|e| {
            CallError::BadRequest(format!("the payload of `{name}` is not JSON: {e}"))
        })?;
        let local = self.lookup(&self.inner.rpcs, name);
        let unknown = || CallError::NotFound {
            what: "RPC",
            name: name.into(),
            known: self.rpc_names().into_iter().map(|(n, _)| n).collect(),
        };
        if let Some(plugin) = self.choose(&local, unknown)? {
            return self.rpc_with(&plugin, name, payload_json).await;
        }
        let body = CallBody::Rpc {
            name: name.into(),
            payload: payload_json.into(),
        };
        match self
            .call_remote_text(CallKind::Rpc, "RPC", name, body)
            .await
        {
            Err(CallError::NotInCluster { .. }) if local.is_some() => {
                self.rpc_with(&local.expect("checked"), name, payload_json)
                    .await
            }
            // The same promise as a local reply: JSON.
            Ok(reply) => match serde_json::from_str::<serde::de::IgnoredAny>(&reply) {
                Ok(_) => Ok(reply),
                Err(e) => Err(CallError::Unavailable(format!(
                    "the reply to `{name}` from another node is not JSON ({e})"
                ))),
            },
            other => other,
        }
    }

    /// An RPC another node sent to this node's module.
    pub(super) async fn rpc_here(
        &self,
        name: &str,
        payload_json: &str,
    ) -> Result<String, CallError> {
        let _guard = self.enter()?;
        serde_json::from_str::<serde::de::IgnoredAny>(payload_json).map_err(|e| {
            CallError::BadRequest(format!("the payload of `{name}` is not JSON: {e}"))
        })?;
        let plugin = self
            .lookup(&self.inner.rpcs, name)
            .ok_or_else(|| CallError::NotFound {
                what: "RPC",
                name: name.into(),
                known: Vec::new(),
            })?;
        self.rpc_with(&plugin, name, payload_json).await
    }

    async fn rpc_with(
        &self,
        plugin: &Plugin,
        name: &str,
        payload_json: &str,
    ) -> Result<String, CallError> {
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
}
