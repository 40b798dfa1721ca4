//! Test guest: a middleware that appends `[config] tag` to the data's
//! `trail` list and counts its calls in kv (`calls`). It refuses when `fail_at` names its tag, traps when
//! `trap_at` does, and spins past its time limit when `stall_at` does.

use prx_pdk::prelude::*;

pub struct Tag;

impl Middleware for Tag {
    fn process(stage: &str, data_json: &str) -> Result<String, String> {
        let tag = config::get("tag").unwrap_or_else(|| "untagged".into());
        kv::increment("calls", 1)?;
        let mut data: serde_json::Value =
            serde_json::from_str(data_json).map_err(|e| e.to_string())?;
        if data["fail_at"] == tag.as_str() {
            return Err(format!("{tag} refuses at {stage}"));
        }
        if data["trap_at"] == tag.as_str() {
            panic!("{tag} traps");
        }
        if data["stall_at"] == tag.as_str() {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        match data["trail"].as_array_mut() {
            Some(trail) => trail.push(tag.into()),
            None => data["trail"] = serde_json::json!([tag]),
        }
        Ok(data.to_string())
    }
}

export_middleware!(Tag);
