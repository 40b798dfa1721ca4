//! Makes http-outbound requests on request and reports what the host
//! answered, as JSON:
//!
//! - `{"url": .., "method": .., "body": ..}`: one request;
//!   `{"ok": {"status": .., "body": .., "location": ..}}` or `{"err": ..}`;
//! - `{"url": .., "times": N}`: N GETs in this one invocation; the outcome
//!   of each, `"ok"` or the error.

use prx_pdk::prelude::*;
use serde_json::{Value, json};

struct HttpTool;

impl Tool for HttpTool {
    fn spec() -> ToolSpec {
        ToolSpec::new("http", "Makes http-outbound requests", "{}")
    }

    fn execute(args: &str) -> PluginResult {
        let args: Value = serde_json::from_str(args).unwrap_or_default();
        let url = args["url"].as_str().unwrap_or("");
        if let Some(times) = args["times"].as_u64() {
            let outcomes: Vec<String> = (0..times)
                .map(|_| match http::get(url, &[]) {
                    Ok(_) => "ok".to_owned(),
                    Err(e) => e,
                })
                .collect();
            return PluginResult::ok(json!(outcomes).to_string());
        }
        let method = args["method"].as_str().unwrap_or("GET");
        let body = args["body"].as_str().map(|b| b.as_bytes().to_vec());
        let result = http::request(method, url, &[("x-probe", "1")], body.as_deref());
        let outcome = match result {
            Ok(r) => json!({"ok": {
                "status": r.status,
                "body": r.body_text(),
                "length": r.body.len(),
                "location": r.header("location"),
            }}),
            Err(e) => json!({ "err": e }),
        };
        PluginResult::ok(outcome.to_string())
    }
}

export_tool!(HttpTool);
