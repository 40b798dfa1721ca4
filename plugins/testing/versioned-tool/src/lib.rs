//! Answers `<version>:<calls>`: `[config] version` of the manifest it was
//! loaded with, and a kv counter of every call so far (by any version).
//! `{"wait_ms": N}` keeps the call busy that long first, so a call can be
//! in flight while a new version takes over.

use std::hint::black_box;

use prx_pdk::prelude::*;

struct Versioned;

impl Tool for Versioned {
    fn spec() -> ToolSpec {
        ToolSpec::new(
            "versioned",
            "Says which version answers and how many calls there were",
            r#"{"type":"object","properties":{"wait_ms":{"type":"integer"}}}"#,
        )
    }

    fn execute(args: &str) -> PluginResult {
        let args: serde_json::Value = serde_json::from_str(args).unwrap_or_default();
        if let Some(ms) = args["wait_ms"].as_u64() {
            let start = std::time::Instant::now();
            while start.elapsed() < std::time::Duration::from_millis(ms) {
                black_box(0u64);
            }
        }
        let version = config::get_or("version", "?");
        match kv::increment("calls", 1) {
            Ok(calls) => PluginResult::ok(format!("{version}:{calls}")),
            Err(e) => PluginResult::err(format!("cannot count: {e}")),
        }
    }
}

export_tool!(Versioned);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_call_and_names_its_version() {
        assert_eq!(Versioned::execute("{}").output, "?:1");
        assert_eq!(Versioned::execute(r#"{"wait_ms":1}"#).output, "?:2");
    }
}
