//! Runs one host call per request and reports the outcome as JSON
//! (`{"ok": ...}` or `{"err": ...}`), so tests can see exactly what the host
//! answered:
//!
//! - `{"op": "publish", "topic": .., "payload": ..}` (`size`: a JSON string
//!   payload of exactly that many bytes);
//! - `{"op": "subscribe", "pattern": ..}`, `{"op": "unsubscribe", "id": ..}`;
//! - `{"op": "remember", "text": .., "category": ..}`,
//!   `{"op": "recall", "query": .., "limit": ..}`;
//! - `{"op": "config", "key": ..}` (all pairs without a key);
//! - `{"op": "flood", "lines": N, "level": ..}`: N log lines (at `info`
//!   unless `level` says otherwise) as fast as it can.

use prx_pdk::prelude::*;
use serde_json::{Value, json};

struct BusTool;

fn outcome<T: Into<Value>>(r: Result<T, String>) -> PluginResult {
    match r {
        Ok(v) => PluginResult::ok(json!({ "ok": v.into() }).to_string()),
        Err(e) => PluginResult::ok(json!({ "err": e }).to_string()),
    }
}

fn text<'a>(args: &'a Value, name: &str) -> &'a str {
    args[name].as_str().unwrap_or("")
}

impl Tool for BusTool {
    fn spec() -> ToolSpec {
        ToolSpec::new("bus", "Runs one events, memory, config or log call", "{}")
    }

    fn execute(args: &str) -> PluginResult {
        let args: Value = serde_json::from_str(args).unwrap_or_default();
        match text(&args, "op") {
            "publish" => {
                let payload = match args["size"].as_u64() {
                    // A JSON string: two quotes around size - 2 letters.
                    Some(n) => format!("\"{}\"", "x".repeat((n as usize).saturating_sub(2))),
                    None => text(&args, "payload").to_owned(),
                };
                outcome(events::publish(text(&args, "topic"), &payload).map(|()| Value::Null))
            }
            "subscribe" => outcome(events::subscribe(text(&args, "pattern"))),
            "unsubscribe" => {
                let id = args["id"].as_u64().unwrap_or(0);
                outcome(events::unsubscribe(id).map(|()| Value::Null))
            }
            "remember" => outcome(memory::store(text(&args, "text"), text(&args, "category"))),
            "recall" => {
                let limit = args["limit"].as_u64().unwrap_or(5) as u32;
                outcome(memory::recall(text(&args, "query"), limit).map(|found| {
                    found
                        .into_iter()
                        .map(|m| {
                            json!({
                                "id": m.id,
                                "text": m.text,
                                "category": m.category,
                                "importance": m.importance,
                            })
                        })
                        .collect::<Vec<_>>()
                }))
            }
            "config" => match args["key"].as_str() {
                Some(key) => outcome(Ok(config::get(key))),
                None => outcome(Ok(config::get_all()
                    .into_iter()
                    .map(|(k, v)| json!([k, v]))
                    .collect::<Vec<_>>())),
            },
            "flood" => {
                let lines = args["lines"].as_u64().unwrap_or(1000);
                let write: fn(&str) = match text(&args, "level") {
                    "error" => log::error,
                    "warn" => log::warn,
                    _ => log::info,
                };
                for i in 0..lines {
                    write(&format!("flood line {i}"));
                }
                outcome(Ok(lines))
            }
            other => PluginResult::err(format!("unknown op {other:?}")),
        }
    }
}

export_tool!(BusTool);
