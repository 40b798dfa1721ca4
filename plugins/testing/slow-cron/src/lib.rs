//! Test guest: a cron job that counts its runs in kv (`runs`) and then
//! sleeps `[config] sleep_ms` (0 by default) before it returns, so a run
//! can outlast its period.

use prx_pdk::prelude::*;

pub struct Slow;

impl Cron for Slow {
    fn run() -> Result<String, String> {
        let run = kv::increment("runs", 1)?;
        let sleep_ms: u64 = config::get("sleep_ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        std::thread::sleep(std::time::Duration::from_millis(sleep_ms));
        if config::get("fail").as_deref() == Some("true") {
            return Err(format!("run {run} failed on purpose"));
        }
        Ok(format!("run {run}"))
    }
}

export_cron!(Slow);
