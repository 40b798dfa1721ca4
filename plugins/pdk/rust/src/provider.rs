//! The `provider` capability: a language-model backend selected by name.

use serde::{Deserialize, Serialize};

use crate::bindings::provider::exports::prx::plugin::provider_exports as wit;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as JSON text.
    pub arguments: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatResponse {
    pub text: Option<String>,
    pub tool_calls: Vec<ToolCall>,
}

impl ChatResponse {
    /// A plain text answer.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: Some(text.into()),
            tool_calls: Vec::new(),
        }
    }
}

/// A provider plugin. Export it with [`crate::export_provider!`].
pub trait Provider {
    /// The provider's name, read once at load (the manifest's capability
    /// name routes calls; the two should agree).
    fn name() -> String;
    fn chat(
        messages: &[ChatMessage],
        model: &str,
        temperature: f64,
    ) -> Result<ChatResponse, String>;
}

impl From<wit::ChatMessage> for ChatMessage {
    fn from(m: wit::ChatMessage) -> Self {
        Self {
            role: m.role,
            content: m.content,
        }
    }
}

impl From<ChatResponse> for wit::ChatResponse {
    fn from(r: ChatResponse) -> Self {
        Self {
            text: r.text,
            tool_calls: r
                .tool_calls
                .into_iter()
                .map(|t| wit::ToolCall {
                    id: t.id,
                    name: t.name,
                    arguments: t.arguments,
                })
                .collect(),
        }
    }
}

/// Exports a [`Provider`] as the plugin's `prx:plugin/provider-exports`.
/// In a native build it defines a hidden `__prx_provider_chat`.
#[macro_export]
macro_rules! export_provider {
    ($provider:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::bindings::provider::exports::prx::plugin::provider_exports as __wit;

            struct __PrxProvider;

            impl __wit::Guest for __PrxProvider {
                fn name() -> ::std::string::String {
                    <$provider as $crate::provider::Provider>::name()
                }

                fn chat(
                    messages: ::std::vec::Vec<__wit::ChatMessage>,
                    model: ::std::string::String,
                    temperature: f64,
                ) -> ::std::result::Result<__wit::ChatResponse, ::std::string::String> {
                    let messages: ::std::vec::Vec<$crate::provider::ChatMessage> =
                        messages.into_iter().map(Into::into).collect();
                    <$provider as $crate::provider::Provider>::chat(&messages, &model, temperature)
                        .map(Into::into)
                }
            }

            $crate::bindings::provider::__export_provider_world!(
                __PrxProvider with_types_in $crate::bindings::provider
            );
        };

        #[cfg(not(target_arch = "wasm32"))]
        #[doc(hidden)]
        pub fn __prx_provider_chat(
            messages: &[$crate::provider::ChatMessage],
            model: &str,
            temperature: f64,
        ) -> ::std::result::Result<$crate::provider::ChatResponse, ::std::string::String> {
            <$provider as $crate::provider::Provider>::chat(messages, model, temperature)
        }
    };
}
