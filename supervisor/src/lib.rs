//! prx-supervisor: the trusted side of prx-sandbox.
//!
//! It reads plugin manifests, starts one sandboxed `prx-worker` process per
//! plugin, answers every host call itself, and routes calls to plugins.
//! It never compiles or parses plugin wasm (workers do, inside their
//! sandbox), and it treats everything a worker sends as hostile input.
//!
//! The entry point is [`Supervisor`].

pub mod api;
pub mod broker;
pub mod cache;
pub mod clock;
pub mod cluster;
pub mod component;
pub mod config;
pub mod config_file;
pub mod cron_expr;
pub mod error;
pub mod manifest;
pub mod metrics;
pub mod plugin;
pub mod scheduler;
pub mod services;
pub mod storage_route;
mod supervisor;
pub mod text;
pub mod topics;
pub mod worker_handle;

pub use config::SupervisorConfig;
pub use error::CallError;
pub use plugin::{PluginState, PluginStatus};
pub use prx_ipc::{ChatMessage, ChatResponse, ToolCall};
pub use supervisor::{
    CronJob, LoadFailure, MIDDLEWARE_STAGES, MemoryFound, ModuleDescription, PluginDetail,
    ReloadOutcome, StartupError, Supervisor, ToolInfo,
};

#[cfg(test)]
mod layering;
