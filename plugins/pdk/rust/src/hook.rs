//! The `hook` capability: observe events, asynchronously, in publish order.

/// A hook plugin. Export it with [`crate::export_hook!`]; the manifest's
/// `[[capabilities.events]]` patterns say which events arrive.
pub trait Hook {
    /// One event. An error is logged by the host and published as an
    /// `error` event; it does not stop later events.
    fn on_event(event: &str, payload_json: &str) -> Result<(), String>;
}

/// Exports a [`Hook`] as the plugin's `prx:plugin/hook-exports`. In a
/// native build it defines a hidden `__prx_hook_on_event` for tests.
#[macro_export]
macro_rules! export_hook {
    ($hook:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __PrxHook;

            impl $crate::bindings::hook::exports::prx::plugin::hook_exports::Guest for __PrxHook {
                fn on_event(
                    event: ::std::string::String,
                    payload_json: ::std::string::String,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    <$hook as $crate::hook::Hook>::on_event(&event, &payload_json)
                }
            }

            $crate::bindings::hook::__export_hook_world!(
                __PrxHook with_types_in $crate::bindings::hook
            );
        };

        #[cfg(not(target_arch = "wasm32"))]
        #[doc(hidden)]
        pub fn __prx_hook_on_event(
            event: &str,
            payload_json: &str,
        ) -> ::std::result::Result<(), ::std::string::String> {
            <$hook as $crate::hook::Hook>::on_event(event, payload_json)
        }
    };
}
