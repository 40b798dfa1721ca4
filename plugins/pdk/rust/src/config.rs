//! `prx:host/config`: the `[config]` table of the manifest. Always granted.

/// A value from `[config]`.
pub fn get(key: &str) -> Option<String> {
    host_call!(
        wasm: crate::bindings::host::prx::host::config::get(key),
        native: crate::testing::config_get(key),
    )
}

/// A value from `[config]`, or `default` when it is not set.
pub fn get_or(key: &str, default: &str) -> String {
    get(key).unwrap_or_else(|| default.to_owned())
}

/// Every `[config]` pair.
pub fn get_all() -> Vec<(String, String)> {
    host_call!(
        wasm: crate::bindings::host::prx::host::config::get_all(),
        native: crate::testing::config_all(),
    )
}
