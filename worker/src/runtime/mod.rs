//! The plugin runtime: one engine, one compiled component, one live instance.
//!
//! Invariants this module keeps for every invocation:
//! - fuel is refilled to `max_fuel` and the epoch deadline armed before any
//!   guest code runs, instantiation (start functions) included;
//! - store limits bound memories, tables and instances;
//! - after any failure the store and instance are dropped, and the next call
//!   gets a fresh instance.
//!
//! Host imports do not decide anything here: they are forwarded to a
//! [`HostBackend`] (the supervisor, over the link, in a worker).

mod engine;
mod host;
mod instance;
mod output;

pub use engine::{
    EPOCH_TICK, build_engine, check_artifact, compile, deserialize, load_artifact, precompile,
    start_epoch_ticker,
};
pub use engine::{Running, Ticker};
pub use instance::Plugin;

use prx_ipc::{HostCall, HostReply, LogLevel};

/// Where host calls go. The worker sends them to the supervisor; the
/// benchmark's in-process baseline answers them locally.
pub trait HostBackend: Send + Sync + 'static {
    /// Answers one host call; blocks until the answer is there.
    fn call(&self, call: HostCall) -> HostReply;
    /// Records one log line from the plugin (no answer).
    fn log(&self, level: LogLevel, message: String);
}
