//! One plugin: its linked component and, between failures, a live instance.

use std::sync::Arc;

use prx_ipc::{Call, GuestError, GuestErrorKind, Limits, Output, PluginResult, ToolSpec};
use wasmtime::component::{Component, HasSelf, InstancePre, Linker};
use wasmtime::{Engine, Store, Trap};

use super::HostBackend;
use super::engine::EPOCH_TICK;
use super::host::{HostTrap, Limiter, PluginHost, StoreState, tool_exports};

/// The export a tool plugin must have.
pub const TOOL_EXPORT: &str = "prx:plugin/tool-exports@0.1.0";

/// A linked plugin, ready to instantiate.
pub struct Plugin {
    pre: InstancePre<StoreState>,
    backend: Arc<dyn HostBackend>,
    limits: Limits,
    exports: Vec<String>,
    imports: Vec<String>,
    tool: Option<tool_exports::GuestIndices>,
    live: Option<Live>,
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
    tool: Option<tool_exports::Guest>,
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
        let tool = tool_exports::GuestIndices::new(&pre).ok();
        Ok(Self {
            pre,
            backend,
            limits,
            exports,
            imports,
            tool,
            live: None,
        })
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
        arm(&mut store, &self.limits);
        let result = self
            .pre
            .instantiate(&mut store)
            .and_then(|instance| match &self.tool {
                Some(indices) => indices.load(&mut store, &instance).map(Some),
                None => Ok(None),
            });
        flush_output(&store);
        match result {
            Ok(tool) => {
                self.live = Some(Live { store, tool });
                Ok(())
            }
            Err(err) => Err(classify(&err, &store, &self.limits)),
        }
    }

    /// Runs one call. On failure the instance is discarded; the next call
    /// starts from a fresh one.
    pub fn invoke(&mut self, call: &Call) -> Result<Output, GuestError> {
        self.instantiate()?;
        let Some(live) = self.live.as_mut() else {
            return Err(GuestError {
                kind: GuestErrorKind::Trap,
                message: "no live instance".into(),
            });
        };
        let Some(tool) = live.tool.as_ref() else {
            return Err(GuestError {
                kind: GuestErrorKind::MissingExport,
                message: format!("the component does not export {TOOL_EXPORT}"),
            });
        };
        let store = &mut live.store;
        arm(store, &self.limits);
        let result = match call {
            Call::ToolGetSpec => tool.call_get_spec(&mut *store).map(|s| {
                Output::ToolSpec(ToolSpec {
                    name: s.name,
                    description: s.description,
                    parameters_schema: s.parameters_schema,
                })
            }),
            Call::ToolExecute { args } => tool.call_execute(&mut *store, args).map(|r| {
                Output::ToolResult(PluginResult {
                    success: r.success,
                    output: r.output,
                    error: r.error,
                })
            }),
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
    GuestError { kind, message }
}

/// The most specific cause, first line only (wasmtime attaches the whole
/// wasm backtrace to its outer error; a caller does not need it).
fn root_message(err: &wasmtime::Error) -> String {
    let text = err.root_cause().to_string();
    text.lines().next().unwrap_or_default().to_owned()
}
