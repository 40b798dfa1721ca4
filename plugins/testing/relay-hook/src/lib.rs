//! Test guest: a hook that counts deliveries in kv (`seen`, and
//! `seen:<topic>`) and, when `[config] forward_to` is set, publishes every
//! event it gets to that topic. Two of them forwarding to each other make
//! the loop the host's recursion protection must stop. An event whose
//! payload has `"fail": true` makes the handler return an error.

use prx_pdk::prelude::*;

pub struct Relay;

impl Hook for Relay {
    fn on_event(event: &str, payload_json: &str) -> Result<(), String> {
        kv::increment("seen", 1)?;
        kv::increment(&format!("seen:{event}"), 1)?;
        let payload: serde_json::Value = serde_json::from_str(payload_json).unwrap_or_default();
        if payload["fail"] == true {
            return Err(format!("refused {event} on purpose"));
        }
        if let Some(topic) = config::get("forward_to") {
            let hop = payload["hop"].as_u64().unwrap_or(0) + 1;
            events::publish_json(&topic, &serde_json::json!({ "hop": hop, "from": event }))?;
        }
        Ok(())
    }
}

export_hook!(Relay);
