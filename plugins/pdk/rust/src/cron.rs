//! The `cron` capability: a job run on the manifest's schedule (UTC).

/// A cron plugin. Export it with [`crate::export_cron!`].
pub trait Cron {
    /// One run; the text (or error) is logged and published by the host.
    /// A run never overlaps the previous one of the same plugin.
    fn run() -> Result<String, String>;
}

/// Exports a [`Cron`] as the plugin's `prx:plugin/cron-exports`. In a
/// native build it defines a hidden `__prx_cron_run`.
#[macro_export]
macro_rules! export_cron {
    ($cron:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __PrxCron;

            impl $crate::bindings::cron::exports::prx::plugin::cron_exports::Guest for __PrxCron {
                fn run() -> ::std::result::Result<::std::string::String, ::std::string::String> {
                    <$cron as $crate::cron::Cron>::run()
                }
            }

            $crate::bindings::cron::__export_cron_world!(
                __PrxCron with_types_in $crate::bindings::cron
            );
        };

        #[cfg(not(target_arch = "wasm32"))]
        #[doc(hidden)]
        pub fn __prx_cron_run()
        -> ::std::result::Result<::std::string::String, ::std::string::String> {
            <$cron as $crate::cron::Cron>::run()
        }
    };
}
