//! `prx:host/kv`: the plugin's private key-value store (permission `kv`).

use serde::Serialize;
use serde::de::DeserializeOwned;

pub fn get(key: &str) -> Option<Vec<u8>> {
    host_call!(
        wasm: crate::bindings::host::prx::host::kv::get(key),
        native: crate::testing::kv_get(key),
    )
}

pub fn set(key: &str, value: &[u8]) -> Result<(), String> {
    host_call!(
        wasm: crate::bindings::host::prx::host::kv::set(key, value),
        native: crate::testing::kv_set(key, value),
    )
}

/// Removes a key; true when it existed.
pub fn delete(key: &str) -> Result<bool, String> {
    host_call!(
        wasm: crate::bindings::host::prx::host::kv::delete(key),
        native: crate::testing::kv_delete(key),
    )
}

/// Keys starting with `prefix` (all keys for `""`).
pub fn list_keys(prefix: &str) -> Vec<String> {
    host_call!(
        wasm: crate::bindings::host::prx::host::kv::list_keys(prefix),
        native: crate::testing::kv_list(prefix),
    )
}

/// Adds `delta` to the counter at `key` atomically (a missing key counts
/// as 0) and returns the new value. Stored as decimal text.
pub fn increment(key: &str, delta: i64) -> Result<i64, String> {
    host_call!(
        wasm: crate::bindings::host::prx::host::kv_atomic::increment(key, delta),
        native: crate::testing::kv_increment(key, delta),
    )
}

/// A value as UTF-8 text (`None` when absent or not text).
pub fn get_str(key: &str) -> Option<String> {
    get(key).and_then(|bytes| String::from_utf8(bytes).ok())
}

pub fn set_str(key: &str, value: &str) -> Result<(), String> {
    set(key, value.as_bytes())
}

/// A value decoded from JSON (`None` when absent or not decodable).
pub fn get_json<T: DeserializeOwned>(key: &str) -> Option<T> {
    get(key).and_then(|bytes| serde_json::from_slice(&bytes).ok())
}

pub fn set_json<T: Serialize>(key: &str, value: &T) -> Result<(), String> {
    let bytes = serde_json::to_vec(value).map_err(|e| e.to_string())?;
    set(key, &bytes)
}
