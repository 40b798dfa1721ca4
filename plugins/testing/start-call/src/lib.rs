//! A tool whose start-up code makes a host call: a static constructor (run
//! by the component's initialisation, before any export) that GETs
//! `[config] start_url` when it is set. The test behind that URL looks at
//! the worker's process while the call is under way: no code of the plugin
//! may run before its sandbox, seccomp included, is in place.

use prx_pdk::prelude::*;

#[cfg(target_arch = "wasm32")]
extern "C" fn call_at_start() {
    if let Some(url) = prx_pdk::config::get("start_url") {
        let _ = prx_pdk::http::get(&url, &[]);
    }
}

// Only in the wasm build, as in `start-loop`.
#[cfg(target_arch = "wasm32")]
#[used]
#[unsafe(link_section = ".init_array")]
static CALL_AT_START: extern "C" fn() = call_at_start;

struct Started;

impl Tool for Started {
    fn spec() -> ToolSpec {
        ToolSpec::new("started", "Answers once its start-up code ran", "{}")
    }

    fn execute(_args: &str) -> PluginResult {
        PluginResult::ok("started")
    }
}

export_tool!(Started);
