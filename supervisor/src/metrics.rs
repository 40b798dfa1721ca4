//! What the supervisor counts about each plugin: calls, errors by kind,
//! latencies, fuel, restarts, quarantines, published events, recent log
//! lines and the last answer of each RPC. The status API and the console
//! read it as JSON, `/metrics` as Prometheus text (see
//! [`crate::api::exposition`]).
//!
//! Stats are kept by plugin name, not by version: a reload or a restart
//! does not reset them, as an operator watching a counter expects.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prx_ipc::{Call, Output};
use serde::{Deserialize, Serialize};

use crate::CallError;

/// Upper bounds of the latency histogram, in seconds: from a cached tool
/// call (tens of microseconds) to the longest time limit a plugin may set.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Calls kept for the p50/p99 shown in the status: exact over a recent
/// window, where the histogram only bounds them.
pub const RECENT_CALLS: usize = 1024;

/// Log lines kept per plugin for the console.
pub const LOG_LINES: usize = 200;

/// Largest RPC answer kept as a plugin's last one: enough for a chart,
/// not a place to hoard a module's output.
pub const MAX_RPC_SAMPLE: usize = 64 * 1024;

/// Every plugin's stats, by name.
#[derive(Debug, Default)]
pub struct Metrics {
    plugins: Mutex<BTreeMap<String, Arc<PluginStats>>>,
}

impl Metrics {
    /// The stats of `plugin`, made on first use.
    pub fn plugin(&self, plugin: &str) -> Arc<PluginStats> {
        lock(&self.plugins)
            .entry(plugin.to_owned())
            .or_default()
            .clone()
    }

    /// Stats of the plugins seen so far, by name.
    pub fn all(&self) -> Vec<(String, Arc<PluginStats>)> {
        lock(&self.plugins)
            .iter()
            .map(|(name, stats)| (name.clone(), stats.clone()))
            .collect()
    }

    /// Forgets a plugin whose directory is gone, so its series end.
    pub fn forget(&self, plugin: &str) {
        lock(&self.plugins).remove(plugin);
    }
}

/// One plugin's counters.
#[derive(Debug, Default)]
pub struct PluginStats {
    calls: Mutex<Calls>,
    fuel: AtomicU64,
    restarts: AtomicU64,
    quarantines: AtomicU64,
    events_published: AtomicU64,
    log: Mutex<VecDeque<LogLine>>,
    rpc_samples: Mutex<BTreeMap<String, RpcSample>>,
}

#[derive(Debug, Default)]
struct Calls {
    /// By call kind (`tool`, `rpc`, ...).
    by_kind: BTreeMap<&'static str, u64>,
    /// By error kind ([`CallError::kind`], plus `refused`).
    errors: BTreeMap<&'static str, u64>,
    /// Counts per [`LATENCY_BUCKETS`] bound (not cumulative), then the
    /// ones above the last bound.
    buckets: [u64; LATENCY_BUCKETS.len() + 1],
    sum_seconds: f64,
    recent: VecDeque<Duration>,
}

/// A line in a plugin's recent log: what it wrote, or what the supervisor
/// did with it (`source` = `supervisor`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub level: String,
    pub source: String,
    pub message: String,
}

/// The last answer of one of a module's RPCs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RpcSample {
    pub at_ms: u64,
    /// The answer as JSON.
    pub answer: serde_json::Value,
}

/// What the status shows of a plugin's calls.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CallSummary {
    pub calls: u64,
    pub errors: u64,
    /// Over the last [`RECENT_CALLS`] calls; `None` before any.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub fuel_used: u64,
    pub quarantines: u64,
    pub events_published: u64,
}

/// A snapshot of the counters `/metrics` shows.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub by_kind: Vec<(&'static str, u64)>,
    pub errors: Vec<(&'static str, u64)>,
    /// Cumulative, one per [`LATENCY_BUCKETS`] bound, then `+Inf`.
    pub buckets: Vec<u64>,
    pub sum_seconds: f64,
    pub fuel: u64,
    pub restarts: u64,
    pub quarantines: u64,
    pub events_published: u64,
}

/// The kind of work a call is, or `None` for the supervisor's own
/// housekeeping (names, specs, `on-load`, `describe`), which is not
/// counted as a call (a console polling `describe` would inflate it).
pub fn call_kind(call: &Call) -> Option<&'static str> {
    Some(match call {
        Call::ToolExecute { .. } => "tool",
        Call::HookOnEvent { .. } | Call::ModuleOnEvent { .. } => "event",
        Call::MiddlewareProcess { .. } => "middleware",
        Call::CronRun => "cron",
        Call::ProviderChat { .. } => "chat",
        Call::StorageStore { .. }
        | Call::StorageRecall { .. }
        | Call::StorageForget { .. }
        | Call::StorageCount => "storage",
        Call::ModuleRpc { .. } => "rpc",
        Call::ToolGetSpec
        | Call::ProviderName
        | Call::StorageName
        | Call::StorageHealth
        | Call::ModuleOnLoad
        | Call::ModuleDescribe => return None,
    })
}

/// The error kind of a finished call, if it failed: a guest's own `err`
/// (or a tool result with `success = false`) is `refused`.
pub fn error_kind(result: &Result<Output, CallError>) -> Option<&'static str> {
    match result {
        Ok(Output::Refused(_)) => Some("refused"),
        Ok(Output::ToolResult(r)) if !r.success => Some("refused"),
        Ok(_) => None,
        Err(e) => Some(e.kind()),
    }
}

impl PluginStats {
    /// Counts a finished call of kind `kind`.
    pub fn record(&self, kind: &'static str, error: Option<&'static str>, elapsed: Duration) {
        let mut calls = lock(&self.calls);
        *calls.by_kind.entry(kind).or_default() += 1;
        if let Some(error) = error {
            *calls.errors.entry(error).or_default() += 1;
        }
        let seconds = elapsed.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        calls.buckets[bucket] += 1;
        calls.sum_seconds += seconds;
        if calls.recent.len() == RECENT_CALLS {
            calls.recent.pop_front();
        }
        calls.recent.push_back(elapsed);
    }

    /// Adds fuel a worker reported, clamped to the plugin's own limit: the
    /// number comes from an untrusted process.
    pub fn add_fuel(&self, reported: u64, max_fuel: u64) {
        self.fuel
            .fetch_add(reported.min(max_fuel), Ordering::Relaxed);
    }

    pub fn count_restart(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_quarantine(&self) {
        self.quarantines.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_published(&self) {
        self.events_published.fetch_add(1, Ordering::Relaxed);
    }

    /// Keeps a line of the plugin's log (already sanitized by the broker).
    pub fn plugin_line(&self, level: &str, message: &str) {
        self.push_line(level, "plugin", message);
    }

    /// Keeps a line about what the supervisor did with the plugin.
    pub fn note(&self, level: &str, message: impl Into<String>) {
        self.push_line(level, "supervisor", &message.into());
    }

    fn push_line(&self, level: &str, source: &str, message: &str) {
        let mut log = lock(&self.log);
        if log.len() == LOG_LINES {
            log.pop_front();
        }
        log.push_back(LogLine {
            at_ms: crate::clock::now_ms(),
            level: level.to_owned(),
            source: source.to_owned(),
            message: message.to_owned(),
        });
    }

    pub fn recent_log(&self) -> Vec<LogLine> {
        lock(&self.log).iter().cloned().collect()
    }

    /// Keeps the answer of RPC `name` when it is JSON of a chartable size.
    pub fn rpc_answer(&self, name: &str, answer: &str) {
        if answer.len() > MAX_RPC_SAMPLE {
            return;
        }
        let Ok(answer) = serde_json::from_str(answer) else {
            return;
        };
        lock(&self.rpc_samples).insert(
            name.to_owned(),
            RpcSample {
                at_ms: crate::clock::now_ms(),
                answer,
            },
        );
    }

    pub fn rpc_samples(&self) -> BTreeMap<String, RpcSample> {
        lock(&self.rpc_samples).clone()
    }

    pub fn summary(&self) -> CallSummary {
        let calls = lock(&self.calls);
        let mut recent: Vec<Duration> = calls.recent.iter().copied().collect();
        recent.sort_unstable();
        let quantile = |q: f64| {
            if recent.is_empty() {
                return None;
            }
            // Nearest rank: the smallest value with at least q of the
            // calls at or below it.
            let rank = ((q * recent.len() as f64).ceil() as usize).clamp(1, recent.len());
            Some(recent[rank - 1].as_secs_f64() * 1000.0)
        };
        CallSummary {
            calls: calls.by_kind.values().sum(),
            errors: calls.errors.values().sum(),
            p50_ms: quantile(0.5),
            p99_ms: quantile(0.99),
            fuel_used: self.fuel.load(Ordering::Relaxed),
            quarantines: self.quarantines.load(Ordering::Relaxed),
            events_published: self.events_published.load(Ordering::Relaxed),
        }
    }

    pub fn counters(&self) -> Counters {
        let calls = lock(&self.calls);
        let mut total = 0;
        let buckets = calls
            .buckets
            .iter()
            .map(|n| {
                total += n;
                total
            })
            .collect();
        Counters {
            by_kind: calls.by_kind.iter().map(|(k, n)| (*k, *n)).collect(),
            errors: calls.errors.iter().map(|(k, n)| (*k, *n)).collect(),
            buckets,
            sum_seconds: calls.sum_seconds,
            fuel: self.fuel.load(Ordering::Relaxed),
            restarts: self.restarts.load(Ordering::Relaxed),
            quarantines: self.quarantines.load(Ordering::Relaxed),
            events_published: self.events_published.load(Ordering::Relaxed),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a cron plugin has done, for `prx cron` and the plugin status.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CronStats {
    pub runs: u64,
    pub failures: u64,
    /// Fire times skipped because the previous run was still going.
    pub skipped: u64,
    /// The next fire time, RFC 3339 UTC.
    pub next: Option<String>,
    pub last: Option<CronOutcome>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CronOutcome {
    /// `schedule` or `manual`.
    pub trigger: String,
    /// The fire time it ran for (scheduled runs).
    pub scheduled_for: Option<String>,
    pub success: bool,
    /// The run's text, or the error.
    pub output: String,
    pub duration_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank_over_the_recent_window() {
        let stats = PluginStats::default();
        assert_eq!(stats.summary().p50_ms, None);
        for ms in 1..=100 {
            stats.record("tool", None, Duration::from_millis(ms));
        }
        let summary = stats.summary();
        assert_eq!(summary.calls, 100);
        assert_eq!(summary.p50_ms, Some(50.0));
        assert_eq!(summary.p99_ms, Some(99.0));
        // The window slides: old calls stop counting for the quantiles,
        // never for the totals.
        for _ in 0..RECENT_CALLS {
            stats.record("tool", Some("trap"), Duration::from_millis(7));
        }
        let summary = stats.summary();
        assert_eq!(summary.calls, 100 + RECENT_CALLS as u64);
        assert_eq!(summary.errors, RECENT_CALLS as u64);
        assert_eq!((summary.p50_ms, summary.p99_ms), (Some(7.0), Some(7.0)));
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_every_call() {
        let stats = PluginStats::default();
        stats.record("rpc", None, Duration::from_micros(50));
        stats.record("rpc", None, Duration::from_millis(3));
        stats.record("rpc", None, Duration::from_secs(60));
        let c = stats.counters();
        assert_eq!(c.buckets.len(), LATENCY_BUCKETS.len() + 1);
        assert_eq!(c.buckets[0], 1, "50 us is under the first bound");
        assert_eq!(c.buckets[5], 2, "3 ms is under 5 ms");
        assert_eq!(c.buckets[LATENCY_BUCKETS.len() - 1], 2);
        assert_eq!(*c.buckets.last().unwrap(), 3, "+Inf counts every call");
        assert!(c.buckets.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn reported_fuel_is_clamped_to_the_plugins_limit() {
        let stats = PluginStats::default();
        stats.add_fuel(u64::MAX, 1000);
        stats.add_fuel(10, 1000);
        assert_eq!(stats.summary().fuel_used, 1010);
    }

    #[test]
    fn the_log_keeps_the_newest_lines_and_rpc_samples_must_be_json() {
        let stats = PluginStats::default();
        for i in 0..LOG_LINES + 5 {
            stats.plugin_line("info", &format!("line {i}"));
        }
        stats.note("warn", "worker exited");
        let log = stats.recent_log();
        assert_eq!(log.len(), LOG_LINES);
        assert_eq!(log[0].message, "line 6");
        assert_eq!(log.last().unwrap().source, "supervisor");
        stats.rpc_answer("forecast", "{\"p50\":[1]}");
        stats.rpc_answer("broken", "not json");
        stats.rpc_answer("huge", &format!("\"{}\"", "x".repeat(MAX_RPC_SAMPLE)));
        let samples = stats.rpc_samples();
        assert_eq!(samples.keys().collect::<Vec<_>>(), ["forecast"]);
    }
}
