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
}
