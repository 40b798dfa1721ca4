//! A tool written the way a PRX 0.1.0 author without our PDK would: plain
//! wit-bindgen against the PRX WIT, and the Rust standard library over
//! WASI 0.2 (stdout, clocks, random).

wit_bindgen::generate!({
    path: "../../../wit",
    world: "prx:plugin/tool",
    generate_all,
});

use exports::prx::plugin::tool_exports::{Guest, PluginResult, ToolSpec};

struct Plain;

impl Guest for Plain {
    fn get_spec() -> ToolSpec {
        ToolSpec {
            name: "plain".into(),
            description: "Reports what it sees of its host".into(),
            parameters_schema: "{}".into(),
        }
    }

    fn execute(args: String) -> PluginResult {
        // WASI: stdout becomes a log line; clocks and randomness work.
        println!("plain tool called with {args}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        // HashMap's RandomState seeds itself from WASI random.
        let mut seen = std::collections::HashMap::new();
        seen.insert("args", args.len());
        prx::host::log::log(
            prx::host::log::Level::Info,
            "plain tool logged through prx:host/log",
        );
        let greeting = prx::host::config::get("greeting").unwrap_or_else(|| "none".into());
        let env_vars = std::env::vars().count();
        let root_listing = std::fs::read_dir("/").is_ok();
        PluginResult {
            success: true,
            output: format!(
                r#"{{"greeting":"{greeting}","clock_ok":{},"env_vars":{env_vars},"can_list_root":{root_listing}}}"#,
                now > 1_600_000_000
            ),
            error: None,
        }
    }
}

export!(Plain);
