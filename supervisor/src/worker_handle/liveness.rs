//! Whether an idle worker is still there: heartbeats, and what happens to
//! one that misses its beat.

use std::sync::Arc;
use std::time::Duration;

use prx_ipc::ToWorker;
use tokio::sync::oneshot;

use super::Worker;

/// Heartbeats on idle workers. A worker in the middle of a call is covered
/// by the call's deadline instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// How often an idle worker is pinged.
    pub interval: Duration,
    /// How long a ping may go unanswered before the worker is killed (and
    /// the kill counted as a crash).
    pub timeout: Duration,
}

impl Default for Liveness {
    /// A healthy worker answers a ping in microseconds; a second of silence
    /// is a stopped or wedged process, found within three seconds.
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
        }
    }
}

/// Pings an idle worker every `interval`; one that does not answer within
/// `timeout` is killed. Busy workers are covered by the call deadline.
pub(super) async fn heartbeat(worker: Arc<Worker>, liveness: Liveness) {
    let mut nonce = 0u64;
    loop {
        tokio::select! {
            _ = worker.exited() => return,
            _ = tokio::time::sleep(liveness.interval) => {}
        }
        if worker.is_closed() {
            return;
        }
        if worker.in_flight() > 0 {
            continue;
        }
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
