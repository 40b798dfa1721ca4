//! `prx:host/events`: the host's event bus (permission `events`).

use serde::Serialize;

/// Publishes a JSON payload (at most 64 KiB) to a dot-separated topic.
pub fn publish(topic: &str, payload_json: &str) -> Result<(), String> {
    host_call!(
        wasm: crate::bindings::host::prx::host::events::publish(topic, payload_json),
        native: crate::testing::publish(topic, payload_json),
    )
}

/// Serializes `value` to JSON and publishes it.
pub fn publish_json<T: Serialize>(topic: &str, value: &T) -> Result<(), String> {
    let payload = serde_json::to_string(value).map_err(|e| e.to_string())?;
    publish(topic, &payload)
}

/// Subscribes to `*`, `prefix.*` or an exact topic; returns the id.
pub fn subscribe(pattern: &str) -> Result<u64, String> {
    host_call!(
        wasm: crate::bindings::host::prx::host::events::subscribe(pattern),
        native: crate::testing::subscribe(pattern),
    )
}

pub fn unsubscribe(id: u64) -> Result<(), String> {
    host_call!(
        wasm: crate::bindings::host::prx::host::events::unsubscribe(id),
        native: crate::testing::unsubscribe(id),
    )
}
