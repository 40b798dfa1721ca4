//! The echo tool of the PRX guide: returns the `text` argument.

use prx_pdk::prelude::*;

pub struct Echo;

impl Tool for Echo {
    fn spec() -> ToolSpec {
        ToolSpec::new(
            "echo",
            "Echo the input text back to the caller.",
            r#"{"type":"object","properties":{"text":{"type":"string","description":"Text to echo"}},"required":["text"]}"#,
        )
    }

    fn execute(args: &str) -> PluginResult {
        let args: serde_json::Value = match serde_json::from_str(args) {
            Ok(v) => v,
            Err(e) => return PluginResult::err(format!("bad args: {e}")),
        };
        match args["text"].as_str() {
            Some(text) => {
                log::debug(&format!("echo called with {} bytes", text.len()));
                PluginResult::ok(text)
            }
            None => PluginResult::err("missing 'text' parameter"),
        }
    }
}

export_tool!(Echo);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_text() {
        let r = Echo::execute(r#"{"text":"hello"}"#);
        assert!(r.success);
        assert_eq!(r.output, "hello");
    }

    #[test]
    fn refuses_missing_text() {
        let r = Echo::execute("{}");
        assert!(!r.success);
        assert_eq!(r.error.as_deref(), Some("missing 'text' parameter"));
    }
}
