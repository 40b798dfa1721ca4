//! Runs one kv operation per call and reports the outcome as JSON:
//! `{"op": "set" | "get" | "delete" | "list" | "increment", "key": ..,
//! "value": .., "size": .., "delta": ..}`. `size` writes that many bytes.

use prx_pdk::prelude::*;
use serde_json::{Value, json};

struct KvTool;

fn outcome<T: Into<Value>>(r: Result<T, String>) -> PluginResult {
    match r {
        Ok(v) => PluginResult::ok(json!({ "ok": v.into() }).to_string()),
        Err(e) => PluginResult::ok(json!({ "err": e }).to_string()),
    }
}

impl Tool for KvTool {
    fn spec() -> ToolSpec {
        ToolSpec::new("kv", "Runs one kv operation", "{}")
    }

    fn execute(args: &str) -> PluginResult {
        let args: Value = serde_json::from_str(args).unwrap_or_default();
        let key = args["key"].as_str().unwrap_or("");
        match args["op"].as_str().unwrap_or("") {
            "set" => {
                let value = match args["size"].as_u64() {
                    Some(n) => vec![b'x'; n as usize],
                    None => args["value"].as_str().unwrap_or("").as_bytes().to_vec(),
                };
                outcome(kv::set(key, &value))
            }
            "get" => outcome(Ok(kv::get_str(key))),
            "delete" => outcome(kv::delete(key)),
            "list" => outcome(Ok(kv::list_keys(key))),
            "increment" => outcome(kv::increment(key, args["delta"].as_i64().unwrap_or(1))),
            other => PluginResult::err(format!("unknown op {other:?}")),
        }
    }
}

export_tool!(KvTool);
