//! Token buckets: how many log lines a plugin may write, how many events
//! it may publish. What goes past the rate is dropped and counted.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// How many log lines a plugin may write: a token bucket per plugin.
/// Lines past it are dropped and counted, so a plugin cannot flood the
/// supervisor's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRate {
    /// Lines per second, sustained.
    pub per_second: u32,
    /// Lines at once after a quiet spell.
    pub burst: u32,
}

impl Default for LogRate {
    /// Far more than a person reads, far less than a loop can write.
    fn default() -> Self {
        Self {
            per_second: 100,
            burst: 500,
        }
    }
}

/// How fast one plugin may publish events: far more than any handler
/// needs, and a loop between plugins that slipped past the chain is slowed
/// to this instead of running at socket speed.
pub const PUBLISH_RATE: LogRate = LogRate {
    per_second: 1_000,
    burst: 2_000,
};

/// A token bucket over one plugin's log lines (or published events).
#[derive(Debug)]
pub(crate) struct LogLimiter {
    rate: LogRate,
    /// Tokens left, when they were last counted, and lines dropped since
    /// the last line let through.
    bucket: Mutex<(f64, Instant, u64)>,
    dropped: AtomicU64,
}

/// What the bucket says of one more line (or event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    Yes,
    No,
    /// The first line dropped after lines went through.
    FirstDrop,
    /// Let through after this many were dropped.
    AfterDrops(u64),
}

impl LogLimiter {
    pub(crate) fn new(rate: LogRate) -> Self {
        Self {
            rate,
            bucket: Mutex::new((f64::from(rate.burst), Instant::now(), 0)),
            dropped: AtomicU64::new(0),
        }
    }

    pub(crate) fn rate(&self) -> LogRate {
        self.rate
    }

    /// Lines (or events) dropped so far.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub(crate) fn admit(&self) -> Admit {
        let mut bucket = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last, since) = &mut *bucket;
        let now = Instant::now();
        let refill = now.duration_since(*last).as_secs_f64() * f64::from(self.rate.per_second);
        *tokens = (*tokens + refill).min(f64::from(self.rate.burst));
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            return match std::mem::take(since) {
                0 => Admit::Yes,
                n => Admit::AfterDrops(n),
            };
        }
        self.dropped.fetch_add(1, Ordering::Relaxed);
        *since += 1;
        if *since == 1 {
            Admit::FirstDrop
        } else {
            Admit::No
        }
    }
}
