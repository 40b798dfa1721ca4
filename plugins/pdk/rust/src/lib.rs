//! prx-pdk: write PRX plugins in Rust.
//!
//! Host functions are plain Rust functions in [`log`], [`config`], [`kv`],
//! [`events`], [`http`], [`memory`] and [`cache`]. Each capability is a
//! trait and an export macro: [`Tool`] and [`export_tool!`],
//! [`hook::Hook`] and [`export_hook!`], [`middleware::Middleware`] and
//! [`export_middleware!`], [`cron::Cron`] and [`export_cron!`],
//! [`provider::Provider`] and [`export_provider!`], [`storage::Storage`]
//! and [`export_storage!`], [`module::Module`] and [`export_module!`]. A
//! plugin built with the PDK exports one capability. Build with
//! `cargo build --target wasm32-wasip2 --release`: the result is a
//! component, ready to load; no other tool is needed.
//!
//! ```no_run
//! use prx_pdk::prelude::*;
//!
//! struct Echo;
//!
//! impl Tool for Echo {
//!     fn spec() -> ToolSpec {
//!         ToolSpec::new("echo", "Echo the input text", r#"{"type":"object"}"#)
//!     }
//!     fn execute(args: &str) -> PluginResult {
//!         PluginResult::ok(args)
//!     }
//! }
//!
//! export_tool!(Echo);
//! ```
//!
//! Only the host interfaces a plugin actually calls end up among its
//! imports, so a plugin that never calls `http` does not need the
//! `http-outbound` permission.

extern crate self as prx_pdk;

/// Calls the real host in a wasm build and the in-memory stand-in of
/// [`testing`] in a native (`cargo test`) build.
macro_rules! host_call {
    (wasm: $wasm:expr, native: $native:expr $(,)?) => {{
        #[cfg(target_arch = "wasm32")]
        {
            $wasm
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            $native
        }
    }};
}

pub mod bindings;
pub mod cache;
pub mod config;
pub mod cron;
pub mod events;
pub mod hook;
pub mod http;
pub mod kv;
pub mod log;
pub mod memory;
pub mod middleware;
pub mod module;
pub mod provider;
pub mod storage;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
mod tool;

pub use tool::{PluginResult, Tool, ToolSpec};

/// Everything a plugin usually needs, in one import.
pub mod prelude {
    pub use crate::cron::Cron;
    pub use crate::hook::Hook;
    pub use crate::middleware::Middleware;
    pub use crate::module::{Module, ModuleHost, ModuleInfo};
    pub use crate::provider::{ChatMessage, ChatResponse, Provider, ToolCall};
    pub use crate::storage::{Storage, StoredMemory};
    pub use crate::tool::{PluginResult, Tool, ToolSpec};
    pub use crate::{
        cache, config, events, export_cron, export_hook, export_middleware, export_module,
        export_provider, export_storage, export_tool, http, kv, log, memory,
    };
}

#[doc(hidden)]
pub mod __rt {
    pub use wit_bindgen;
}
