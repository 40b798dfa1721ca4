//! A tool whose start-up code never returns: a static constructor (run by
//! the component's initialisation, before any export) that loops.

use prx_pdk::prelude::*;

#[cfg(target_arch = "wasm32")]
extern "C" fn spin_forever() {
    loop {
        std::hint::black_box(0u64);
    }
}

// Only in the wasm build: a native `cargo test` of the guest workspace
// would run it too, and never finish.
#[cfg(target_arch = "wasm32")]
#[used]
#[unsafe(link_section = ".init_array")]
static SPIN_AT_START: extern "C" fn() = spin_forever;

struct Never;

impl Tool for Never {
    fn spec() -> ToolSpec {
        ToolSpec::new("never", "Never gets this far", "{}")
    }

    fn execute(_args: &str) -> PluginResult {
        PluginResult::ok("unreachable")
    }
}

export_tool!(Never);
