//! A bus module: the RPC `stats.summary` summarises a list of numbers
//! (cached by input in the `summary` namespace), `stats.last_price`
//! answers the last price event seen for a symbol, and `stats.clear`
//! empties the summary cache. Price events (`prices.*`) are kept in the
//! `prices` namespace. `describe` reports calls, cache hits and prices seen.

use std::sync::atomic::{AtomicU64, Ordering};

use prx_pdk::prelude::*;
use serde_json::{Value, json};

pub struct Stats;

static CALLS: AtomicU64 = AtomicU64::new(0);
static HITS: AtomicU64 = AtomicU64::new(0);
static PRICES: AtomicU64 = AtomicU64::new(0);

impl Module for Stats {
    fn on_load(host: &mut ModuleHost) -> Result<(), String> {
        host.register_rpc("stats.summary", summary)?;
        host.register_rpc("stats.last_price", last_price)?;
        host.register_rpc("stats.clear", clear)?;
        host.register_event_handler("prices.*", on_price)?;
        log::info("stats module loaded");
        Ok(())
    }

    fn describe() -> ModuleInfo {
        ModuleInfo::new("LOADED")
            .stat("rpc_calls", CALLS.load(Ordering::Relaxed))
            .stat("cache_hits", HITS.load(Ordering::Relaxed))
            .stat("prices_seen", PRICES.load(Ordering::Relaxed))
    }
}

/// `{"values": [numbers]}` -> `{"count", "mean", "min", "max"}`.
fn summary(payload: &str) -> Result<String, String> {
    CALLS.fetch_add(1, Ordering::Relaxed);
    let input: Value = serde_json::from_str(payload).map_err(|e| format!("payload: {e}"))?;
    let values: Vec<f64> = input["values"]
        .as_array()
        .ok_or("payload needs \"values\": a list of numbers")?
        .iter()
        .map(|v| v.as_f64().ok_or("every value must be a number"))
        .collect::<Result<_, _>>()?;
    if values.is_empty() {
        return Err("\"values\" is empty".into());
    }
    let key = serde_json::to_string(&values).map_err(|e| e.to_string())?;
    if let Some(hit) = cache::get_json::<Value>("summary", &key)? {
        HITS.fetch_add(1, Ordering::Relaxed);
        return Ok(hit.to_string());
    }
    let count = values.len() as f64;
    let result = json!({
        "count": values.len(),
        "mean": values.iter().sum::<f64>() / count,
        "min": values.iter().copied().fold(f64::INFINITY, f64::min),
        "max": values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    });
    cache::put_json("summary", &key, &result)?;
    if let Err(e) = events::publish_json("stats.computed", &result) {
        log::debug(&format!("not published: {e}"));
    }
    Ok(result.to_string())
}

/// `{"symbol": "ABC"}` -> the payload of the last `prices.ABC` event.
fn last_price(payload: &str) -> Result<String, String> {
    CALLS.fetch_add(1, Ordering::Relaxed);
    let input: Value = serde_json::from_str(payload).map_err(|e| format!("payload: {e}"))?;
    let symbol = input["symbol"].as_str().ok_or("payload needs \"symbol\"")?;
    match cache::get_json::<Value>("prices", symbol)? {
        Some(price) => Ok(price.to_string()),
        None => Ok("null".into()),
    }
}

fn clear(_payload: &str) -> Result<String, String> {
    CALLS.fetch_add(1, Ordering::Relaxed);
    let removed = cache::clear("summary")?;
    Ok(json!({ "removed": removed }).to_string())
}

fn on_price(topic: &str, payload: &str) -> Result<(), String> {
    let symbol = topic.strip_prefix("prices.").unwrap_or(topic);
    let price: Value = serde_json::from_str(payload).map_err(|e| e.to_string())?;
    cache::put_json("prices", symbol, &price)?;
    PRICES.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

export_module!(Stats);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_and_answers_from_the_cache_the_second_time() {
        __prx_module_load().unwrap();
        assert_eq!(
            prx_pdk::testing::registered_rpcs(),
            ["stats.summary", "stats.last_price", "stats.clear"]
        );
        let first = __prx_module_rpc("stats.summary", r#"{"values":[1,2,3,6]}"#).unwrap();
        let first: Value = serde_json::from_str(&first).unwrap();
        assert_eq!(first["mean"], 3.0);
        assert_eq!(first["max"], 6.0);
        let again = __prx_module_rpc("stats.summary", r#"{"values":[1,2,3,6]}"#).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&again).unwrap(), first);
        assert_eq!(HITS.load(Ordering::Relaxed), 1);
        assert!(__prx_module_rpc("stats.nope", "{}").is_err());
        assert!(__prx_module_rpc("stats.summary", r#"{"values":[]}"#).is_err());
    }
}
