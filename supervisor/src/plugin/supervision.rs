//! Supervision of a running plugin's worker: what an exit means, when to
//! restart and after how long, when to quarantine. One task per plugin
//! watches its worker from start to stop.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use crate::config::RestartPolicy;
use crate::worker_handle::{ExitCause, StartError, Worker};

use super::{Plugin, PluginState, Runtime};

/// Why a worker ended, as the operator should read it.
enum Exit {
    /// The worker broke the protocol or was killed by seccomp: a security
    /// event, quarantined at once.
    Security(String),
    /// Anything else unexpected: restarted with backoff.
    Crash(String),
}

/// What a worker's end means: `violation` is the protocol violation the
/// supervisor saw (if any), `kill_reason` why the supervisor killed it (if
/// it did), `status` how the process ended.
fn classify_exit(
    violation: Option<String>,
    kill_reason: Option<String>,
    status: &ExitCause,
) -> Exit {
    if let Some(what) = violation {
        return Exit::Security(format!("protocol violation: {what}"));
    }
    if status.is_seccomp_kill() {
        return Exit::Security("killed by seccomp (a forbidden system call)".into());
    }
    Exit::Crash(kill_reason.unwrap_or_else(|| status.to_string()))
}

/// The restart decisions of one plugin's supervision, apart from any
/// process: crashes are counted in a sliding window, restarts are spaced
/// by [`backoff`], and a plugin that crashes too often is quarantined.
#[derive(Debug)]
struct Restarts {
    policy: RestartPolicy,
    /// When each crash inside the window happened.
    crashes: VecDeque<Instant>,
    /// Restarts since the last worker that ran long enough to be healthy.
    consecutive: u32,
}

/// What to do after a crash.
#[derive(Debug, PartialEq)]
enum Next {
    /// Start a new worker after this long.
    RestartAfter(Duration),
    /// Too many crashes in the window: stop restarting, for this reason.
    Quarantine(String),
}

impl Restarts {
    fn new(policy: RestartPolicy) -> Self {
        Self {
            policy,
            crashes: VecDeque::new(),
            consecutive: 0,
        }
    }

    /// A worker that served for `uptime` ended: one that ran long enough
    /// to count as healthy starts the backoff afresh.
    fn worker_ended(&mut self, uptime: Duration) {
        if uptime >= self.policy.healthy_after {
            self.consecutive = 0;
        }
    }

    /// One more crash at `now` (a worker's end, or a restart that failed),
    /// whose cause was `cause`.
    fn crashed(&mut self, now: Instant, cause: &str) -> Next {
        self.crashes.push_back(now);
        while self
            .crashes
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.policy.crash_window)
        {
            self.crashes.pop_front();
        }
        if self.crashes.len() > self.policy.max_crashes as usize {
            return Next::Quarantine(format!(
                "{} crashes within {} s (last: {cause})",
                self.crashes.len(),
                self.policy.crash_window.as_secs()
            ));
        }
        let delay = backoff(&self.policy, self.consecutive);
        self.consecutive += 1;
        Next::RestartAfter(delay)
    }
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
    let mut restarts = Restarts::new(rt.restart);
    loop {
        let status = worker.exited().await;
        if plugin.stopping.load(Ordering::SeqCst) {
            return;
        }
        plugin.worker.send_replace(None);
        let exit = classify_exit(worker.violation_seen(), worker.kill_reason(), &status);
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
        restarts.worker_ended(worker.uptime());
        // Restart attempts: a worker that cannot even be started counts as
        // one more crash and goes round again.
        let mut cause = cause;
        worker = loop {
            let delay = match restarts.crashed(Instant::now(), &cause) {
                Next::RestartAfter(delay) => delay,
                Next::Quarantine(reason) => {
                    plugin.quarantine(reason);
                    return;
                }
            };
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
    use crate::worker_handle::ExitHow;

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

    fn policy() -> RestartPolicy {
        RestartPolicy {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            healthy_after: Duration::from_secs(30),
            max_crashes: 3,
            crash_window: Duration::from_secs(60),
        }
    }

    fn delay(next: Next) -> Duration {
        match next {
            Next::RestartAfter(delay) => delay,
            Next::Quarantine(why) => panic!("quarantined: {why}"),
        }
    }

    #[test]
    fn crashes_past_the_limit_within_the_window_quarantine() {
        let mut restarts = Restarts::new(policy());
        let t0 = Instant::now();
        // The first restart is immediate, the next ones back off.
        assert_eq!(delay(restarts.crashed(t0, "a")), Duration::ZERO);
        assert!(delay(restarts.crashed(t0 + Duration::from_secs(1), "b")) > Duration::ZERO);
        assert!(delay(restarts.crashed(t0 + Duration::from_secs(2), "c")) > Duration::ZERO);
        // The fourth within 60 s is one too many.
        assert_eq!(
            restarts.crashed(t0 + Duration::from_secs(3), "d"),
            Next::Quarantine("4 crashes within 60 s (last: d)".into())
        );
    }

    #[test]
    fn crashes_that_left_the_window_no_longer_count() {
        let mut restarts = Restarts::new(policy());
        let t0 = Instant::now();
        for i in 0..3 {
            delay(restarts.crashed(t0 + Duration::from_secs(i), "early"));
        }
        // A minute later the three early crashes are out of the window.
        let later = t0 + Duration::from_secs(2 + 61);
        delay(restarts.crashed(later, "late"));
        assert_eq!(restarts.crashes.len(), 1);
    }

    #[test]
    fn a_healthy_run_restarts_the_backoff_and_a_short_one_does_not() {
        let mut restarts = Restarts::new(policy());
        let t0 = Instant::now();
        delay(restarts.crashed(t0, "a"));
        delay(restarts.crashed(t0, "b"));
        assert_eq!(restarts.consecutive, 2);
        restarts.worker_ended(Duration::from_secs(5));
        assert_eq!(restarts.consecutive, 2, "5 s is not healthy");
        restarts.worker_ended(Duration::from_secs(30));
        assert_eq!(restarts.consecutive, 0);
        assert_eq!(delay(restarts.crashed(t0, "c")), Duration::ZERO);
    }

    #[test]
    fn a_violation_or_a_seccomp_kill_is_a_security_event_anything_else_a_crash() {
        let signal = |n: i32| ExitCause {
            how: ExitHow::Signal(n),
            out_of_memory: false,
        };
        let sigsys = signal(nix::libc::SIGSYS);
        assert!(matches!(
            classify_exit(Some("forged id".into()), None, &signal(9)),
            Exit::Security(why) if why == "protocol violation: forged id"
        ));
        assert!(matches!(
            classify_exit(None, None, &sigsys),
            Exit::Security(_)
        ));
        assert!(matches!(
            classify_exit(None, Some("no heartbeat".into()), &signal(9)),
            Exit::Crash(why) if why == "no heartbeat"
        ));
        assert!(matches!(
            classify_exit(None, None, &signal(9)),
            Exit::Crash(_)
        ));
    }
}
