//! Supervision of a running plugin's worker: what an exit means, when to
//! restart and after how long, when to quarantine. One task per plugin
//! watches its worker from start to stop.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use crate::config::RestartPolicy;
use crate::worker::{ExitCause, StartError, Worker};

use super::{Plugin, PluginState, Runtime};

/// Why a worker ended, as the operator should read it.
enum Exit {
    /// The worker broke the protocol or was killed by seccomp: a security
    /// event, quarantined at once.
    Security(String),
    /// Anything else unexpected: restarted with backoff.
    Crash(String),
}

fn classify_exit(worker: &Worker, status: &ExitCause) -> Exit {
    if let Some(what) = worker.violation_seen() {
        return Exit::Security(format!("protocol violation: {what}"));
    }
    if status.is_seccomp_kill() {
        return Exit::Security("killed by seccomp (a forbidden system call)".into());
    }
    Exit::Crash(worker.kill_reason().unwrap_or_else(|| status.to_string()))
}

/// The wait before restart number `consecutive` (0 = the first after a
/// healthy run): none, then `initial`, doubling up to `max`, each with
/// ±25 % jitter so plugins that crashed together do not restart together.
pub fn backoff(policy: &RestartPolicy, consecutive: u32) -> Duration {
    if consecutive == 0 {
        return Duration::ZERO;
    }
    let doublings = (consecutive - 1).min(20);
    let base = policy
        .backoff_initial
        .saturating_mul(1 << doublings)
        .min(policy.backoff_max);
    base.mul_f64(0.75 + fastrand::f64() * 0.5)
        .min(policy.backoff_max)
}

/// One-for-one supervision of a plugin's worker: waits for it to exit and
/// starts a new one, with backoff; quarantines a plugin that keeps
/// crashing or whose worker breaks the protocol.
pub(super) async fn supervise(plugin: Arc<Plugin>, rt: Runtime, mut worker: Arc<Worker>) {
    let policy = rt.restart;
    let mut crashes: VecDeque<Instant> = VecDeque::new();
    let mut consecutive = 0u32;
    loop {
        let status = worker.exited().await;
        if plugin.stopping.load(Ordering::SeqCst) {
            return;
        }
        plugin.worker.send_replace(None);
        let exit = classify_exit(&worker, &status);
        let cause = match &exit {
            Exit::Security(c) | Exit::Crash(c) => c.clone(),
        };
        *plugin.last_exit.lock().unwrap_or_else(|p| p.into_inner()) = Some(cause.clone());
        plugin.announce(
            "prx.lifecycle.crashed",
            serde_json::json!({
                "pid": worker.pid(),
                "cause": cause,
                "security": matches!(exit, Exit::Security(_)),
            }),
        );
        if let Exit::Security(reason) = exit {
            tracing::error!(plugin = %plugin.name, pid = worker.pid(), event = "prx.lifecycle.crashed",
                security = true, %reason, "worker stopped for a security reason");
            plugin.quarantine(reason);
            return;
        }
        tracing::warn!(plugin = %plugin.name, pid = worker.pid(), event = "prx.lifecycle.crashed",
            %cause, "worker exited unexpectedly");
        if worker.uptime() >= policy.healthy_after {
            consecutive = 0;
        }
        // Restart attempts: a worker that cannot even be started counts as
        // one more crash and goes round again.
        let mut cause = cause;
        worker = loop {
            let now = Instant::now();
            crashes.push_back(now);
            while crashes
                .front()
                .is_some_and(|t| now.duration_since(*t) > policy.crash_window)
            {
                crashes.pop_front();
            }
            if crashes.len() > policy.max_crashes as usize {
                plugin.quarantine(format!(
                    "{} crashes within {} s (last: {cause})",
                    crashes.len(),
                    policy.crash_window.as_secs()
                ));
                return;
            }
            let delay = backoff(&policy, consecutive);
            consecutive += 1;
            if !delay.is_zero() {
                plugin.set_state(PluginState::BackingOff {
                    until: SystemTime::now() + delay,
                });
                tracing::info!(plugin = %plugin.name, delay_ms = delay.as_millis() as u64,
                    "backing off before restarting");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = plugin.wake.notified() => {}
                }
            }
            if plugin.stopping.load(Ordering::SeqCst) {
                return;
            }
            plugin.set_state(PluginState::Restarting);
            plugin.restarts.fetch_add(1, Ordering::Relaxed);
            plugin.stats().count_restart();
            let started = Instant::now();
            match plugin.start_worker(&rt).await {
                Ok(new) => {
                    if let Err(e) = plugin.init_worker(&new, &rt).await {
                        // Counted as one more crash: the instance never served.
                        tracing::warn!(plugin = %plugin.name, "restarted worker failed to initialise: {e}");
                        new.kill();
                        cause = e;
                        continue;
                    }
                    tracing::info!(plugin = %plugin.name, pid = new.pid(), event = "prx.lifecycle.restarted",
                        took_ms = started.elapsed().as_millis() as u64, "worker restarted");
                    plugin.announce(
                        "prx.lifecycle.restarted",
                        serde_json::json!({
                            "pid": new.pid(),
                            "restarts": plugin.restarts.load(Ordering::Relaxed),
                        }),
                    );
                    break new;
                }
                Err(e) if e.is_security_event() => {
                    plugin.quarantine(e.reason());
                    return;
                }
                Err(e @ (StartError::Load { .. } | StartError::Sandbox(_))) => {
                    // The same bytes fail the same way: retrying cannot help.
                    let reason = plugin.fail(format!("restart failed: {e}"));
                    tracing::error!(plugin = %plugin.name, "{reason}");
                    return;
                }
                Err(e) => {
                    tracing::warn!(plugin = %plugin.name, "restart failed: {e}");
                    cause = e.to_string();
                    *plugin.last_exit.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(cause.clone());
                }
            }
        };
        if plugin.stopping.load(Ordering::SeqCst) {
            worker.kill();
            return;
        }
        plugin.worker.send_replace(Some(worker.clone()));
        plugin.set_state(PluginState::Running);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_immediate_then_doubles_with_jitter_up_to_the_cap() {
        let policy = RestartPolicy::default();
        assert_eq!(backoff(&policy, 0), Duration::ZERO);
        for (n, base_ms) in [(1u32, 100u64), (2, 200), (3, 400), (4, 800)] {
            for _ in 0..50 {
                let d = backoff(&policy, n).as_millis() as u64;
                assert!(
                    d >= base_ms * 3 / 4 && d <= base_ms * 5 / 4,
                    "restart {n}: {d} ms"
                );
            }
        }
        for _ in 0..50 {
            assert!(backoff(&policy, 30) <= policy.backoff_max);
            assert!(backoff(&policy, 30) >= policy.backoff_max.mul_f64(0.75));
        }
    }
}
