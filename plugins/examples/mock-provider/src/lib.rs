//! A mock language model for tests and demos: answers with the last user
//! message, prefixed by `[config] prefix`; a message `call NAME ARGS`
//! becomes a tool call of `NAME` with the JSON `ARGS` instead.

use prx_pdk::prelude::*;

pub struct MockProvider;

impl Provider for MockProvider {
    fn name() -> String {
        "mock-llm".into()
    }

    fn chat(
        messages: &[ChatMessage],
        model: &str,
        temperature: f64,
    ) -> Result<ChatResponse, String> {
        let last = messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .ok_or("no user message to answer")?;
        if !(0.0..=2.0).contains(&temperature) {
            return Err(format!("temperature {temperature} is outside 0..=2"));
        }
        if let Some(rest) = last.content.strip_prefix("call ") {
            let (name, args) = rest.split_once(' ').unwrap_or((rest, "{}"));
            serde_json::from_str::<serde_json::Value>(args)
                .map_err(|e| format!("tool arguments are not JSON: {e}"))?;
            return Ok(ChatResponse {
                text: None,
                tool_calls: vec![ToolCall {
                    id: format!("call-{}", messages.len()),
                    name: name.into(),
                    arguments: args.into(),
                }],
            });
        }
        let prefix = config::get("prefix").unwrap_or_else(|| "mock".into());
        Ok(ChatResponse::text(format!(
            "[{prefix} {model}] {}",
            last.content
        )))
    }
}

export_provider!(MockProvider);

#[cfg(test)]
mod tests {
    use super::*;

    fn user(text: &str) -> ChatMessage {
        ChatMessage {
            role: "user".into(),
            content: text.into(),
        }
    }

    #[test]
    fn echoes_the_last_user_message() {
        let reply = __prx_provider_chat(&[user("hello")], "m1", 0.2).unwrap();
        assert_eq!(reply.text.as_deref(), Some("[mock m1] hello"));
        assert!(reply.tool_calls.is_empty());
    }

    #[test]
    fn call_messages_become_tool_calls() {
        let reply = __prx_provider_chat(&[user(r#"call echo {"text":"x"}"#)], "m", 0.0).unwrap();
        assert_eq!(reply.text, None);
        assert_eq!(reply.tool_calls[0].name, "echo");
        assert_eq!(reply.tool_calls[0].arguments, r#"{"text":"x"}"#);
    }

    #[test]
    fn refuses_without_a_user_message() {
        assert!(__prx_provider_chat(&[], "m", 0.0).is_err());
    }
}
