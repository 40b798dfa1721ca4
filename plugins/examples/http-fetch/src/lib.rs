//! Talks to one HTTP service, named by `[config] base_url` and allowed by
//! `http_allowlist`:
//!
//! - `{"path": "/status.json"}` GETs it and returns the body;
//! - `{"path": "/notes", "post": {...}}` POSTs the JSON and returns the
//!   answer's body.
//!
//! Any other status than 2xx is a tool error with the status.

use prx_pdk::prelude::*;

pub struct Fetch;

impl Tool for Fetch {
    fn spec() -> ToolSpec {
        ToolSpec::new(
            "fetch",
            "GET a path of the configured service, or POST JSON to it",
            r#"{"type":"object","properties":{"path":{"type":"string"},"post":{}},"required":["path"]}"#,
        )
    }

    fn execute(args: &str) -> PluginResult {
        let args: serde_json::Value = serde_json::from_str(args).unwrap_or_default();
        let Some(path) = args["path"].as_str().filter(|p| p.starts_with('/')) else {
            return PluginResult::err("'path' must start with /");
        };
        let base = config::get_or("base_url", "http://127.0.0.1:18080");
        let url = format!("{}{path}", base.trim_end_matches('/'));
        let response = match args.get("post") {
            Some(body) => http::post_json(&url, &[], body),
            None => http::get(&url, &[("accept", "application/json")]),
        };
        match response {
            Ok(r) if (200..300).contains(&r.status) => PluginResult::ok(r.text()),
            Ok(r) => PluginResult::err(format!("{url} answered {}", r.status)),
            Err(e) => PluginResult::err(e),
        }
    }
}

export_tool!(Fetch);

#[cfg(test)]
mod tests {
    use super::*;
    use prx_pdk::http::Response;

    #[test]
    fn gets_and_posts_under_the_configured_base() {
        prx_pdk::testing::set_config("base_url", "http://svc.test/");
        prx_pdk::testing::mock_http(|method, url, headers, body| {
            let echoed = body.map(|b| String::from_utf8_lossy(b).into_owned());
            let json = headers
                .iter()
                .any(|(k, v)| k == "content-type" && v == "application/json");
            Ok(Response {
                status: if url.ends_with("/missing") { 404 } else { 200 },
                headers: vec![],
                body: format!("{method} {url} {json} {echoed:?}").into_bytes(),
            })
        });
        let r = Fetch::execute(r#"{"path":"/status.json"}"#);
        assert_eq!(r.output, "GET http://svc.test/status.json false None");
        let r = Fetch::execute(r#"{"path":"/notes","post":{"a":1}}"#);
        assert_eq!(
            r.output,
            r#"POST http://svc.test/notes true Some("{\"a\":1}")"#
        );
        let r = Fetch::execute(r#"{"path":"/missing"}"#);
        assert_eq!(
            r.error.as_deref(),
            Some("http://svc.test/missing answered 404")
        );
        assert!(!Fetch::execute(r#"{"path":"no-slash"}"#).success);
    }
}
