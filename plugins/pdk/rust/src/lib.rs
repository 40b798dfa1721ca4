//! prx-pdk: write PRX plugins in Rust.
//!
//! Host functions are plain Rust functions in [`log`], [`config`], [`kv`],
//! [`events`], [`http`] and [`memory`]; a tool is a type implementing
//! [`Tool`], exported with [`export_tool!`]. Build with
//! `cargo build --target wasm32-wasip2 --release`: the result is a
//! component, ready to load; no other tool is needed.
//!
//! ```ignore
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
pub mod config;
pub mod events;
pub mod http;
pub mod kv;
pub mod log;
pub mod memory;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
mod tool;

pub use tool::{PluginResult, Tool, ToolSpec};

/// Everything a plugin usually needs, in one import.
pub mod prelude {
    pub use crate::tool::{PluginResult, Tool, ToolSpec};
    pub use crate::{config, events, export_tool, http, kv, log, memory};
}

#[doc(hidden)]
pub mod __rt {
    pub use wit_bindgen;
}
