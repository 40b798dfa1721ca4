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
            // Times `count` gets of `key` from inside the guest (for the
            // benchmark): the host-call round trip as a plugin sees it.
            "time-get" => {
                let count = args["count"].as_u64().unwrap_or(1000).max(1) as usize;
                let mut samples: Vec<u128> = Vec::with_capacity(count);
                for _ in 0..count {
                    let t = std::time::Instant::now();
                    std::hint::black_box(kv::get(key));
                    samples.push(t.elapsed().as_nanos());
                }
                samples.sort_unstable();
                let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize] as u64;
                PluginResult::ok(json!({ "p50_ns": at(0.5), "p99_ns": at(0.99) }).to_string())
            }
            other => PluginResult::err(format!("unknown op {other:?}")),
        }
    }
}

export_tool!(KvTool);
