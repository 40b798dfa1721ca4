//! An audit hook: counts every event it sees in kv (`count:<topic>`) and
//! keeps the last error's message (`last-error`). Subscribed in its
//! manifest to the host's lifecycle events, tool calls and errors.

use prx_pdk::prelude::*;

pub struct Audit;

impl Hook for Audit {
    fn on_event(event: &str, payload_json: &str) -> Result<(), String> {
        let count = kv::increment(&format!("count:{event}"), 1)?;
        log::debug(&format!("{event} seen {count} times"));
        if event == "error" {
            let payload: serde_json::Value = serde_json::from_str(payload_json).unwrap_or_default();
            let message = payload["message"].as_str().unwrap_or("(no message)");
            kv::set_str("last-error", message)?;
            log::warn(&format!("error event: {message}"));
        }
        Ok(())
    }
}

export_hook!(Audit);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_events_by_topic_and_keeps_the_last_error() {
        __prx_hook_on_event("tool.call", r#"{"tool_name":"echo"}"#).unwrap();
        __prx_hook_on_event("tool.call", r#"{"tool_name":"echo"}"#).unwrap();
        __prx_hook_on_event("error", r#"{"message":"boom"}"#).unwrap();
        assert_eq!(kv::get_str("count:tool.call").as_deref(), Some("2"));
        assert_eq!(kv::get_str("count:error").as_deref(), Some("1"));
        assert_eq!(kv::get_str("last-error").as_deref(), Some("boom"));
    }
}
