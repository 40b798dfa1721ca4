//! A bus module whose `describe` is busy for a millisecond and counts its
//! calls: what many listings of the modules at once fall on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prx_pdk::prelude::*;

pub struct Slow;

static DESCRIBED: AtomicU64 = AtomicU64::new(0);

impl Module for Slow {
    fn on_load(_host: &mut ModuleHost) -> Result<(), String> {
        Ok(())
    }

    fn describe() -> ModuleInfo {
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(1) {
            std::hint::spin_loop();
        }
        ModuleInfo::new("SLOW").stat("described", DESCRIBED.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

export_module!(Slow);
