//! `prx:host/cache`: a namespaced cache kept by the host (permission `kv`).
//!
//! Values survive restarts and reloads. Each namespace can be cleared at
//! once; all of a plugin's namespaces share one quota, `max_kv_storage_kb`.
//! Not part of PRX 0.1.0: a plugin that uses it needs this host.

use serde::Serialize;
use serde::de::DeserializeOwned;

pub fn get(namespace: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
    host_call!(
        wasm: crate::bindings::host::prx::host::cache::get(namespace, key),
        native: crate::testing::cache_get(namespace, key),
    )
}

/// Stores a value; returns once the host made it durable.
pub fn put(namespace: &str, key: &str, value: &[u8]) -> Result<(), String> {
    host_call!(
        wasm: crate::bindings::host::prx::host::cache::put(namespace, key, value),
        native: crate::testing::cache_put(namespace, key, value),
    )
}

/// Removes every key of `namespace`; returns how many there were.
pub fn clear(namespace: &str) -> Result<u32, String> {
    host_call!(
        wasm: crate::bindings::host::prx::host::cache::clear(namespace),
        native: crate::testing::cache_clear(namespace),
    )
}

/// A value decoded from JSON (`Ok(None)` when absent; an error when it is
/// not JSON of that type).
pub fn get_json<T: DeserializeOwned>(namespace: &str, key: &str) -> Result<Option<T>, String> {
    match get(namespace, key)? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("cache {namespace}/{key}: {e}")),
        None => Ok(None),
    }
}

pub fn put_json<T: Serialize>(namespace: &str, key: &str, value: &T) -> Result<(), String> {
    let bytes = serde_json::to_vec(value).map_err(|e| e.to_string())?;
    put(namespace, key, &bytes)
}
