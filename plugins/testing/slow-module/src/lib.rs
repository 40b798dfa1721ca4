//! A bus module whose `describe` is busy for a millisecond and counts its
//! calls: what many listings of the modules at once fall on. With
//! `[config] write_on_load` its `on-load` writes that kv key, with
//! `[config] cache_on_load` it puts that key in the cache namespace
//! `load`, with `[config] clear_cache_on_load` it clears that namespace,
//! with `[config] subscribe` it subscribes to that pattern, and with `[config]
//! refuse_load` it then refuses to load: a new version refused after it
//! wrote and subscribed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prx_pdk::prelude::*;

pub struct Slow;

static DESCRIBED: AtomicU64 = AtomicU64::new(0);

impl Module for Slow {
    fn on_load(host: &mut ModuleHost) -> Result<(), String> {
        if let Some(key) = prx_pdk::config::get("write_on_load") {
            prx_pdk::kv::set(&key, b"from on-load")?;
        }
        if let Some(key) = prx_pdk::config::get("cache_on_load") {
            prx_pdk::cache::put("load", &key, b"from on-load")?;
        }
        if prx_pdk::config::get("clear_cache_on_load").is_some() {
            prx_pdk::cache::clear("load")?;
        }
        if let Some(pattern) = prx_pdk::config::get("subscribe") {
            host.register_event_handler(&pattern, on_event)?;
        }
        match prx_pdk::config::get("refuse_load") {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }

    fn describe() -> ModuleInfo {
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(1) {
            std::hint::spin_loop();
        }
        ModuleInfo::new("SLOW").stat("described", DESCRIBED.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

fn on_event(_topic: &str, _payload: &str) -> Result<(), String> {
    Ok(())
}

export_module!(Slow);
