//! Building the engine and turning bytes into a component.
//!
//! The engine settings come from the supervisor ([`EngineSettings`]) because
//! they shape the compiled code and so are part of the compile cache key.

use std::time::Duration;

use prx_ipc::EngineSettings;
use wasmtime::component::Component;
use wasmtime::{Config, Engine, OptLevel};

/// How often the epoch advances. A deadline of N ms is armed as
/// `ceil(N / tick) + 1` ticks, so it fires between N and N + one tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Builds the engine every plugin runs on: Cranelift, the component model,
/// fuel, epoch interruption, and a bounded memory reservation (so the address
/// space of a worker can be limited).
pub fn build_engine(settings: &EngineSettings) -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .consume_fuel(true)
        .epoch_interruption(true)
        .cranelift_opt_level(OptLevel::Speed)
        .memory_reservation(settings.memory_reservation)
        .memory_guard_size(settings.memory_guard)
        .memory_reservation_for_growth(0)
        .parallel_compilation(true);
    Engine::new(&config)
}

/// Starts the thread that advances the engine's epoch. It holds only a weak
/// reference, so it ends when the engine is dropped.
pub fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .map(drop)
        .unwrap_or_else(|e| panic!("cannot start the epoch thread: {e}"));
}

/// Compiles component bytes (validation included).
pub fn compile(engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Component> {
    Component::new(engine, wasm)
}

/// Loads an artifact that this system's own compiler produced.
///
/// # Safety
/// `artifact` must come from [`Component::serialize`] of a worker of the same
/// build with the same [`EngineSettings`]; the supervisor only sends
/// artifacts it stored itself, keyed by those. wasmtime still checks the
/// version and settings recorded in the artifact.
pub unsafe fn deserialize(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: forwarded to the caller: the bytes are a serialized component
    // made by this build with these settings.
    unsafe { Component::deserialize(engine, artifact) }
}
