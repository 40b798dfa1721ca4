//! The `middleware` capability: transform data at a pipeline stage.

/// The stages a middleware chain runs at.
pub const STAGES: [&str; 4] = ["inbound", "outbound", "llm_request", "llm_response"];

/// A middleware plugin. Export it with [`crate::export_middleware!`].
pub trait Middleware {
    /// Receives the stage and the JSON data; returns the JSON data for the
    /// next step (unchanged for stages it does not handle). An error stops
    /// the chain and reaches the caller.
    fn process(stage: &str, data_json: &str) -> Result<String, String>;
}

/// Exports a [`Middleware`] as the plugin's `prx:plugin/middleware-exports`.
/// In a native build it defines a hidden `__prx_middleware_process`.
#[macro_export]
macro_rules! export_middleware {
    ($middleware:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __PrxMiddleware;

            impl $crate::bindings::middleware::exports::prx::plugin::middleware_exports::Guest
                for __PrxMiddleware
            {
                fn process(
                    stage: ::std::string::String,
                    data_json: ::std::string::String,
                ) -> ::std::result::Result<::std::string::String, ::std::string::String> {
                    <$middleware as $crate::middleware::Middleware>::process(&stage, &data_json)
                }
            }

            $crate::bindings::middleware::__export_middleware_world!(
                __PrxMiddleware with_types_in $crate::bindings::middleware
            );
        };

        #[cfg(not(target_arch = "wasm32"))]
        #[doc(hidden)]
        pub fn __prx_middleware_process(
            stage: &str,
            data_json: &str,
        ) -> ::std::result::Result<::std::string::String, ::std::string::String> {
            <$middleware as $crate::middleware::Middleware>::process(stage, data_json)
        }
    };
}
