//! The `tool` capability: a spec read once at load, and `execute` per call.

use crate::bindings::tool::exports::prx::plugin::tool_exports as wit;

/// What the host (and the LLM behind it) sees of a tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments.
    pub parameters_schema: String,
}

impl ToolSpec {
    pub fn new(
        name: impl Into<String>,
        description: impl Into<String>,
        parameters_schema: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
            parameters_schema: parameters_schema.into(),
        }
    }
}

/// The outcome of one tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginResult {
    pub success: bool,
    pub output: String,
    pub error: Option<String>,
}

impl PluginResult {
    pub fn ok(output: impl Into<String>) -> Self {
        Self {
            success: true,
            output: output.into(),
            error: None,
        }
    }

    pub fn err(error: impl Into<String>) -> Self {
        Self {
            success: false,
            output: String::new(),
            error: Some(error.into()),
        }
    }
}

/// A tool plugin. Export it with [`crate::export_tool!`].
pub trait Tool {
    /// Called once when the plugin is loaded.
    fn spec() -> ToolSpec;
    /// Called for each invocation with the JSON arguments.
    fn execute(args: &str) -> PluginResult;
}

impl From<ToolSpec> for wit::ToolSpec {
    fn from(s: ToolSpec) -> Self {
        Self {
            name: s.name,
            description: s.description,
            parameters_schema: s.parameters_schema,
        }
    }
}

impl From<PluginResult> for wit::PluginResult {
    fn from(r: PluginResult) -> Self {
        Self {
            success: r.success,
            output: r.output,
            error: r.error,
        }
    }
}

/// Exports a [`Tool`] as the plugin's `prx:plugin/tool-exports`.
///
/// The export exists only when building for wasm, so `cargo test` on the
/// host can build the same crate (as a `cdylib` too) and test the logic;
/// there the macro defines a hidden `__prx_tool_execute` instead.
#[macro_export]
macro_rules! export_tool {
    ($tool:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __PrxTool;

            impl $crate::bindings::tool::exports::prx::plugin::tool_exports::Guest for __PrxTool {
                fn get_spec() -> $crate::bindings::tool::exports::prx::plugin::tool_exports::ToolSpec {
                    <$tool as $crate::Tool>::spec().into()
                }

                fn execute(
                    args: ::std::string::String,
                ) -> $crate::bindings::tool::exports::prx::plugin::tool_exports::PluginResult {
                    <$tool as $crate::Tool>::execute(&args).into()
                }
            }

            $crate::bindings::tool::__export_tool_world!(
                __PrxTool with_types_in $crate::bindings::tool
            );
        };

        /// The exported tool, for native tests (the wasm export is the
        /// real entry point).
        #[cfg(not(target_arch = "wasm32"))]
        #[doc(hidden)]
        pub fn __prx_tool_execute(args: &str) -> $crate::PluginResult {
            <$tool as $crate::Tool>::execute(args)
        }
    };
}
