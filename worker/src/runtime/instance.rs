//! One plugin: its linked component and, between failures, a live instance.

use std::sync::Arc;

use prx_ipc::{
    Call, ChatResponse, GuestError, GuestErrorKind, Limits, ModuleInfo, Output, PluginResult,
    StoredMemory, ToolCall, ToolSpec,
};
use wasmtime::component::{Component, HasSelf, InstancePre, Linker};
use wasmtime::{Engine, Store, Trap};

use super::HostBackend;
use super::engine::{EPOCH_TICK, Ticker};
use super::host::{
    HostTrap, Limiter, PluginHost, StoreState, cron_exports, hook_exports, middleware_exports,
    module_exports, provider_exports, storage_exports, tool_exports,
};

/// A linked plugin, ready to instantiate.
pub struct Plugin {
    pre: InstancePre<StoreState>,
    backend: Arc<dyn HostBackend>,
    limits: Limits,
    exports: Vec<String>,
    imports: Vec<String>,
    indices: Indices,
    live: Option<Live>,
    fuel_used: u64,
    ticker: Option<Ticker>,
}

/// Where each capability's functions are in the component, for the
/// capabilities it exports.
struct Indices {
    tool: Option<tool_exports::GuestIndices>,
    hook: Option<hook_exports::GuestIndices>,
    middleware: Option<middleware_exports::GuestIndices>,
    cron: Option<cron_exports::GuestIndices>,
    provider: Option<provider_exports::GuestIndices>,
    storage: Option<storage_exports::GuestIndices>,
    module: Option<module_exports::GuestIndices>,
}

/// The exported functions of one instance.
#[derive(Default)]
struct Guests {
    tool: Option<tool_exports::Guest>,
    hook: Option<hook_exports::Guest>,
    middleware: Option<middleware_exports::Guest>,
    cron: Option<cron_exports::Guest>,
    provider: Option<provider_exports::Guest>,
    storage: Option<storage_exports::Guest>,
    module: Option<module_exports::Guest>,
}

impl Indices {
    fn new(pre: &InstancePre<StoreState>) -> Self {
        Self {
            tool: tool_exports::GuestIndices::new(pre).ok(),
            hook: hook_exports::GuestIndices::new(pre).ok(),
            middleware: middleware_exports::GuestIndices::new(pre).ok(),
            cron: cron_exports::GuestIndices::new(pre).ok(),
            provider: provider_exports::GuestIndices::new(pre).ok(),
            storage: storage_exports::GuestIndices::new(pre).ok(),
            module: module_exports::GuestIndices::new(pre).ok(),
        }
    }

    fn load(
        &self,
        store: &mut Store<StoreState>,
        instance: &wasmtime::component::Instance,
    ) -> wasmtime::Result<Guests> {
        macro_rules! load {
            ($field:ident) => {
                match &self.$field {
                    Some(indices) => Some(indices.load(&mut *store, instance)?),
                    None => None,
                }
            };
        }
        Ok(Guests {
            tool: load!(tool),
            hook: load!(hook),
            middleware: load!(middleware),
            cron: load!(cron),
            provider: load!(provider),
            storage: load!(storage),
            module: load!(module),
        })
    }
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("exports", &self.exports)
            .field("live", &self.live.is_some())
            .finish_non_exhaustive()
    }
}

/// A store with an instance in it, valid until a call fails.
struct Live {
    store: Store<StoreState>,
    guests: Guests,
}

impl Plugin {
    /// Links the component against WASI and the PRX host interfaces.
    /// Fails when it imports something the host does not provide.
    pub fn new(
        engine: &Engine,
        component: &Component,
        limits: Limits,
        backend: Arc<dyn HostBackend>,
    ) -> wasmtime::Result<Self> {
        let mut linker = Linker::<StoreState>::new(engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        PluginHost::add_to_linker::<_, HasSelf<StoreState>>(&mut linker, |s| s)?;
        let pre = linker.instantiate_pre(component)?;
        let ty = component.component_type();
        let exports = ty
            .exports(engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        let imports = ty
            .imports(engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        let indices = Indices::new(&pre);
        Ok(Self {
            pre,
            backend,
            limits,
            exports,
            imports,
            indices,
            live: None,
            fuel_used: 0,
            ticker: None,
        })
    }

    /// Deadlines are enforced by `ticker`'s epoch, which advances only
    /// while this plugin's guest code may run. Without one, nothing
    /// advances the epoch and the wall-clock deadline never fires.
    pub fn ticking(mut self, ticker: Ticker) -> Self {
        self.ticker = Some(ticker);
        self
    }

    /// Names of the component's exports.
    pub fn exports(&self) -> &[String] {
        &self.exports
    }

    /// Names of the component's imports.
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// Makes sure an instance is live, instantiating under the invocation
    /// limits (a start function that loops hits the deadline).
    pub fn instantiate(&mut self) -> Result<(), GuestError> {
        if self.live.is_some() {
            return Ok(());
        }
        let limiter = Limiter {
            max_memory_bytes: usize::try_from(self.limits.max_memory_bytes).unwrap_or(usize::MAX),
            max_table_elements: usize::try_from(self.limits.max_table_elements)
                .unwrap_or(usize::MAX),
            max_instances: self.limits.max_instances as usize,
            max_tables: self.limits.max_tables as usize,
            refused_memory: None,
        };
        let mut store = Store::new(
            self.pre.engine(),
            StoreState::new(self.backend.clone(), limiter),
        );
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_trap();
        let _running = self.ticker.as_ref().map(Ticker::running);
        arm(&mut store, &self.limits);
        let result = self
            .pre
            .instantiate(&mut store)
            .and_then(|instance| self.indices.load(&mut store, &instance));
        flush_output(&store);
        match result {
            Ok(guests) => {
                self.live = Some(Live { store, guests });
                Ok(())
            }
            Err(err) => Err(classify(&err, &store, &self.limits)),
        }
    }

    /// Fuel the last call consumed (0 before any call, or when it never
    /// reached the guest).
    pub fn fuel_used(&self) -> u64 {
        self.fuel_used
    }

    /// Runs one call. On failure the instance is discarded; the next call
    /// starts from a fresh one.
    pub fn invoke(&mut self, call: &Call) -> Result<Output, GuestError> {
        self.fuel_used = 0;
        let _running = self.ticker.as_ref().map(Ticker::running);
        self.instantiate()?;
        let Some(live) = self.live.as_mut() else {
            return Err(GuestError {
                kind: GuestErrorKind::Trap,
                message: "no live instance".into(),
            });
        };
        let store = &mut live.store;
        arm(store, &self.limits);
        let result = dispatch(&live.guests, store, call);
        self.fuel_used = self
            .limits
            .max_fuel
            .saturating_sub(store.get_fuel().unwrap_or(0));
        let result = match result {
            Some(result) => result,
            None => {
                return Err(GuestError {
                    kind: GuestErrorKind::MissingExport,
                    message: format!("the component does not export {}", call.export()).into(),
                });
            }
        };
        flush_output(store);
        match result {
            Ok(output) => Ok(output),
            Err(err) => {
                let error = classify(&err, store, &self.limits);
                self.live = None;
                Err(error)
            }
        }
    }
}

/// Runs `call` on the export it belongs to; `None` when the component does
/// not export it.
fn dispatch(
    guests: &Guests,
    store: &mut Store<StoreState>,
    call: &Call,
) -> Option<wasmtime::Result<Output>> {
    let refused = |r: Result<Output, String>| r.unwrap_or_else(Output::Refused);
    let result = match call {
        Call::ToolGetSpec => guests.tool.as_ref()?.call_get_spec(store).map(|s| {
            Output::ToolSpec(ToolSpec {
                name: s.name.into(),
                description: s.description.into(),
                parameters_schema: s.parameters_schema,
            })
        }),
        Call::ToolExecute { args } => guests.tool.as_ref()?.call_execute(store, args).map(|r| {
            Output::ToolResult(PluginResult {
                success: r.success,
                output: r.output,
                error: r.error,
            })
        }),
        Call::HookOnEvent { event, payload } => guests
            .hook
            .as_ref()?
            .call_on_event(store, event, payload)
            .map(|r| refused(r.map(|()| Output::Unit))),
        Call::MiddlewareProcess { stage, data } => guests
            .middleware
            .as_ref()?
            .call_process(store, stage, data)
            .map(|r| refused(r.map(Output::Text))),
        Call::CronRun => guests
            .cron
            .as_ref()?
            .call_run(store)
            .map(|r| refused(r.map(Output::Text))),
        Call::ProviderName => guests.provider.as_ref()?.call_name(store).map(Output::Text),
        Call::ProviderChat {
            messages,
            model,
            temperature,
        } => {
            let messages: Vec<_> = messages
                .iter()
                .map(|m| provider_exports::ChatMessage {
                    role: m.role.clone(),
                    content: m.content.clone(),
                })
                .collect();
            guests
                .provider
                .as_ref()?
                .call_chat(store, &messages, model, *temperature)
                .map(|r| {
                    refused(r.map(|c| {
                        Output::Chat(ChatResponse {
                            text: c.text,
                            tool_calls: c
                                .tool_calls
                                .into_iter()
                                .map(|t| ToolCall {
                                    id: t.id,
                                    name: t.name,
                                    arguments: t.arguments,
                                })
                                .collect(),
                        })
                    }))
                })
        }
        Call::StorageName => guests.storage.as_ref()?.call_name(store).map(Output::Text),
        Call::StorageStore {
            key,
            content,
            category,
            session_id,
        } => guests
            .storage
            .as_ref()?
            .call_store_memory(store, key, content, category, session_id.as_deref())
            .map(|r| refused(r.map(|()| Output::Unit))),
        Call::StorageRecall {
            query,
            limit,
            session_id,
        } => guests
            .storage
            .as_ref()?
            .call_recall_memory(store, query, *limit, session_id.as_deref())
            .map(|r| {
                refused(r.map(|entries| {
                    Output::Stored(
                        entries
                            .into_iter()
                            .map(|e| StoredMemory {
                                id: e.id,
                                key: e.key,
                                content: e.content,
                                category: e.category,
                                timestamp: e.timestamp,
                                score: e.score,
                            })
                            .collect(),
                    )
                }))
            }),
        Call::StorageForget { key } => guests
            .storage
            .as_ref()?
            .call_forget_memory(store, key)
            .map(|r| refused(r.map(Output::Bool))),
        Call::StorageCount => guests
            .storage
            .as_ref()?
            .call_count_memories(store)
            .map(|r| refused(r.map(Output::Count))),
        Call::StorageHealth => guests
            .storage
            .as_ref()?
            .call_health_check(store)
            .map(Output::Bool),
        Call::ModuleOnLoad => guests
            .module
            .as_ref()?
            .call_on_load(store)
            .map(|r| refused(r.map(|()| Output::Unit))),
        Call::ModuleRpc { name, payload } => guests
            .module
            .as_ref()?
            .call_on_rpc(store, name, payload)
            .map(|r| refused(r.map(Output::Text))),
        Call::ModuleOnEvent { topic, payload } => guests
            .module
            .as_ref()?
            .call_on_event(store, topic, payload)
            .map(|r| refused(r.map(|()| Output::Unit))),
        Call::ModuleDescribe => guests.module.as_ref()?.call_describe(store).map(|info| {
            Output::ModuleInfo(ModuleInfo {
                status: info.status,
                stats: info.stats.into_iter().map(|s| (s.name, s.value)).collect(),
            })
        }),
    };
    Some(result)
}

/// Refills fuel and arms the wall-clock deadline. Runs before any guest code.
fn arm(store: &mut Store<StoreState>, limits: &Limits) {
    store.data_mut().limiter.refused_memory = None;
    // Fuel is enabled on every engine we build, so this cannot fail.
    let _ = store.set_fuel(limits.max_fuel);
    let tick = EPOCH_TICK.as_millis() as u64;
    store.set_epoch_deadline(limits.max_execution_time_ms.div_ceil(tick) + 1);
}

fn flush_output(store: &Store<StoreState>) {
    store.data().stdout.flush_pending();
    store.data().stderr.flush_pending();
}

/// Turns a wasmtime error into the kind the supervisor reports.
fn classify(err: &wasmtime::Error, store: &Store<StoreState>, limits: &Limits) -> GuestError {
    let refused = store.data().limiter.refused_memory;
    let trap = err.downcast_ref::<Trap>();
    let (kind, message) = match (trap, refused) {
        (Some(Trap::OutOfFuel), _) => (
            GuestErrorKind::OutOfFuel,
            format!("ran out of fuel (max_fuel = {})", limits.max_fuel),
        ),
        (Some(Trap::Interrupt), _) => (
            GuestErrorKind::Deadline,
            format!(
                "exceeded its time limit (max_execution_time_ms = {})",
                limits.max_execution_time_ms
            ),
        ),
        _ if err.downcast_ref::<HostTrap>().is_some() => {
            (GuestErrorKind::HostCall, root_message(err))
        }
        (_, Some(desired)) => (
            GuestErrorKind::MemoryLimit,
            format!(
                "tried to grow its memory to {desired} bytes, past max_memory_mb = {}",
                limits.max_memory_bytes >> 20
            ),
        ),
        (Some(trap), None) => {
            let text = trap.to_string();
            let text = text.strip_prefix("wasm trap: ").unwrap_or(&text).to_owned();
            (GuestErrorKind::Trap, format!("trapped: {text}"))
        }
        (None, None) => (
            GuestErrorKind::Trap,
            format!("failed: {}", root_message(err)),
        ),
    };
    GuestError {
        kind,
        message: message.into(),
    }
}

/// The most specific cause, first line only (wasmtime attaches the whole
/// wasm backtrace to its outer error; a caller does not need it).
fn root_message(err: &wasmtime::Error) -> String {
    let text = err.root_cause().to_string();
    text.lines().next().unwrap_or_default().to_owned()
}
