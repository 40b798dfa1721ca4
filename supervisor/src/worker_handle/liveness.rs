//! Whether an idle worker is still there: heartbeats that back off while
//! the worker stays idle, and what happens to one that misses its beat.

use std::sync::Arc;
use std::time::Duration;

use prx_ipc::ToWorker;
use tokio::sync::oneshot;

use super::Worker;

/// Heartbeats on idle workers. A worker in the middle of a call is covered
/// by the call's deadline instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// How soon after its last call an idle worker is first pinged.
    pub interval: Duration,
    /// The longest gap between pings: each answered ping with no call
    /// since doubles the gap, up to this. A thousand idle workers then
    /// cost a few pings a second, not hundreds, and a worker that stops
    /// answering while idle is still found within this (or by the
    /// deadline of its next call, whichever comes first).
    pub max_interval: Duration,
    /// How long a ping may go unanswered before the worker is killed (and
    /// the kill counted as a crash).
    pub timeout: Duration,
}

impl Default for Liveness {
    /// A healthy worker answers a ping in microseconds; a second of silence
    /// is a stopped or wedged process, found within three seconds of its
    /// last call, and within about a minute however long it was idle.
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(2),
            max_interval: Duration::from_secs(60),
            timeout: Duration::from_secs(1),
        }
    }
}

/// Pings an idle worker, `interval` after its last call and then at gaps
/// that double up to `max_interval` while no call comes; one that does
/// not answer within `timeout` is killed. Busy workers are covered by the
/// call deadline.
pub(super) async fn heartbeat(worker: Arc<Worker>, liveness: Liveness) {
    let mut nonce = 0u64;
    let mut gap = liveness.interval;
    let mut calls_seen = worker.calls_issued();
    loop {
        tokio::select! {
            _ = worker.exited() => return,
            _ = tokio::time::sleep(gap) => {}
        }
        if worker.is_closed() {
            return;
        }
        let calls = worker.calls_issued();
        if calls != calls_seen || worker.in_flight() > 0 {
            // It was called since: it is alive or its call's deadline
            // says otherwise; start over from the short gap.
            calls_seen = calls;
            gap = liveness.interval;
            continue;
        }
        gap = next_gap(gap, &liveness);
        nonce += 1;
        let (tx, rx) = oneshot::channel();
        *super::lock(&worker.ping) = Some((nonce, tx));
        if worker
            .send(&ToWorker::Ping(nonce), liveness.timeout)
            .await
            .is_err()
        {
            return;
        }
        if tokio::time::timeout(liveness.timeout, rx).await.is_err() {
            tracing::warn!(plugin = %worker.plugin, pid = worker.pid,
                timeout_ms = liveness.timeout.as_millis() as u64,
                "worker missed its heartbeat; killing it");
            worker.kill_because(format!(
                "killed by the supervisor: no heartbeat within {} ms",
                liveness.timeout.as_millis()
            ));
            return;
        }
    }
}

/// The gap after an answered ping with no call since: twice the last one,
/// at most `max_interval` (and never below `interval`).
fn next_gap(gap: Duration, liveness: &Liveness) -> Duration {
    (gap * 2).min(liveness.max_interval).max(liveness.interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_gaps_double_up_to_the_cap() {
        let liveness = Liveness::default();
        let mut gap = liveness.interval;
        let mut gaps = Vec::new();
        for _ in 0..7 {
            gap = next_gap(gap, &liveness);
            gaps.push(gap.as_secs());
        }
        assert_eq!(gaps, [4, 8, 16, 32, 60, 60, 60]);
        // A cap below the first gap leaves the first gap.
        let flat = Liveness {
            max_interval: Duration::from_millis(1),
            ..liveness
        };
        assert_eq!(next_gap(flat.interval, &flat), flat.interval);
    }
}
