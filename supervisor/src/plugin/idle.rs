//! Idle workers stopped and started again (`[resources] idle_stop_s`): a
//! plugin whose worker has had no call for that long is left without one
//! (state `idle`), and the next call starts a worker from the compile
//! cache, waiting for it within its deadline. A machine can then hold more
//! plugins than it has memory for live workers.
//!
//! One task per plugin version does both, so a stop and a start never
//! race: it stops the worker once idle, and starts one when a call asks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::heal::Quarantine;
use super::{Plugin, PluginState, Runtime, supervise};

/// What a plugin with `idle_stop_s` keeps about its calls and stops.
#[derive(Debug)]
pub(crate) struct IdleStop {
    /// Stop the worker after this long without a call; `None`: never.
    after: Option<Duration>,
    /// When this plugin version was made: the clock the fields below
    /// count from.
    born: Instant,
    /// The last time a call entered or left, in ms since `born`.
    last_call_ms: AtomicU64,
    /// Times its idle worker was stopped.
    stops: AtomicU32,
    /// How long the last start after a stop took, in µs (0: none yet).
    last_wake_us: AtomicU64,
    /// A call found the plugin idle and waits for a worker.
    wanted: tokio::sync::Notify,
}

impl IdleStop {
    pub(crate) fn new(after_s: Option<u64>) -> Self {
        Self {
            after: after_s.map(Duration::from_secs),
            born: Instant::now(),
            last_call_ms: AtomicU64::new(0),
            stops: AtomicU32::new(0),
            last_wake_us: AtomicU64::new(0),
            wanted: tokio::sync::Notify::new(),
        }
    }

    /// A call entered or left (kept only when the worker may be stopped
    /// for idling: no clock read on the call path otherwise).
    pub(crate) fn touch(&self) {
        if self.after.is_none() {
            return;
        }
        let now = self.born.elapsed().as_millis() as u64;
        self.last_call_ms.fetch_max(now, Ordering::Relaxed);
    }

    fn since_last_call(&self) -> Duration {
        let last = Duration::from_millis(self.last_call_ms.load(Ordering::Relaxed));
        self.born.elapsed().saturating_sub(last)
    }

    pub(crate) fn stops(&self) -> u32 {
        self.stops.load(Ordering::Relaxed)
    }

    /// How long the last call that found the worker stopped waited for a
    /// new one, in ms.
    pub(crate) fn last_wake_ms(&self) -> Option<f64> {
        match self.last_wake_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(us as f64 / 1000.0),
        }
    }
}

impl Plugin {
    /// Starts the task that stops this version's worker when idle, when
    /// its manifest asks for it.
    pub(super) fn watch_idle(self: &Arc<Self>, rt: &Runtime) {
        if let Some(after) = self.idle.after {
            tokio::spawn(keep_idle(self.clone(), rt.clone(), after));
        }
    }

    /// For a call that found the plugin idle: marks it starting and asks
    /// for a worker; the caller then waits for one like any call during a
    /// restart. Nothing happens when the plugin is not idle.
    pub(super) fn want_worker(&self) {
        if self.idle.after.is_none() {
            return;
        }
        {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if !matches!(*state, PluginState::Idle) {
                return;
            }
            *state = PluginState::Starting;
        }
        self.idle.wanted.notify_one();
    }

    /// Stops the worker if no call is in it or has come for `after`.
    /// Calls count themselves under the gate's read lock, so with the
    /// write lock held none can enter between the check and the stop:
    /// each either came before (and the worker stays) or finds the plugin
    /// idle and asks for a new one.
    async fn stop_if_idle(&self, after: Duration) {
        let worker = {
            let open = self.gate.write().unwrap_or_else(|p| p.into_inner());
            let idle = *open
                && self.active.load(Ordering::SeqCst) == 0
                && self.idle.since_last_call() >= after
                && matches!(self.state(), PluginState::Running);
            if !idle {
                return;
            }
            let Some(worker) = self.worker.send_replace(None) else {
                return;
            };
            // Before the stop: its supervision must not take the exit for
            // a crash.
            worker.stop_on_purpose();
            self.set_state(PluginState::Idle);
            worker
        };
        self.idle.stops.fetch_add(1, Ordering::Relaxed);
        tracing::info!(plugin = %self.name, pid = worker.pid(), event = "prx.lifecycle.idle_stopped",
            idle_s = after.as_secs(), "no call for a while; worker stopped until the next one");
        self.announce(
            "prx.lifecycle.idle_stopped",
            serde_json::json!({ "pid": worker.pid() }),
        );
        worker.stop(Duration::from_secs(2)).await;
    }

    /// Starts a worker for the calls waiting on an idle plugin. A start
    /// that fails leaves the plugin idle (the waiting calls fail and the
    /// next call tries again), failed when its bytes cannot run, or
    /// quarantined on a security event, as at load.
    async fn start_after_idle(self: &Arc<Self>, rt: &Runtime) {
        let started = Instant::now();
        let worker = match self.start_worker(rt).await {
            Ok(worker) => match self.get_ready(&worker, rt).await {
                Ok(()) => worker,
                Err(security @ Quarantine::Security(_)) => {
                    self.quarantine(rt, security);
                    self.worker.send_modify(|_| {});
                    return;
                }
                Err(Quarantine::Crashes(e)) => {
                    self.wake_failed(e);
                    return;
                }
            },
            Err(e) if e.is_security_event() => {
                self.quarantine(rt, Quarantine::Security(e.reason()));
                self.worker.send_modify(|_| {});
                return;
            }
            Err(e) => {
                self.wake_failed(e.to_string());
                return;
            }
        };
        let took = started.elapsed();
        self.idle
            .last_wake_us
            .store((took.as_micros() as u64).max(1), Ordering::Relaxed);
        tracing::info!(plugin = %self.name, pid = worker.pid(), event = "prx.lifecycle.woken",
            took_ms = took.as_millis() as u64, "a call came: worker started again");
        self.idle.touch();
        self.worker.send_replace(Some(worker.clone()));
        self.set_state(PluginState::Running);
        tokio::spawn(supervise(self.clone(), rt.clone(), worker));
    }

    fn wake_failed(&self, cause: String) {
        tracing::warn!(plugin = %self.name, "starting a worker after an idle stop failed: {cause}");
        *self.last_exit.lock().unwrap_or_else(|p| p.into_inner()) = Some(cause);
        self.set_state(PluginState::Idle);
        // The calls waiting for a worker see the plugin idle and give up.
        self.worker.send_modify(|_| {});
    }
}

/// The task behind `idle_stop_s`: stops the worker once idle, starts one
/// when a call asks, until this version stops.
async fn keep_idle(plugin: Arc<Plugin>, rt: Runtime, after: Duration) {
    loop {
        if plugin.is_stopping() {
            return;
        }
        let state = plugin.state();
        if matches!(state, PluginState::Idle | PluginState::Starting) {
            if matches!(state, PluginState::Idle) {
                tokio::select! {
                    _ = plugin.idle.wanted.notified() => {}
                    _ = plugin.wake.notified() => continue,
                }
            }
            if !plugin.is_stopping() && matches!(plugin.state(), PluginState::Starting) {
                plugin.start_after_idle(&rt).await;
            }
            continue;
        }
        // Running (or restarting, backing off, quarantined: supervision's
        // business): look again when the worker would have been idle long
        // enough.
        let wait = after.saturating_sub(plugin.idle.since_last_call());
        tokio::select! {
            _ = tokio::time::sleep(wait.max(Duration::from_millis(100))) => {}
            _ = plugin.wake.notified() => continue,
        }
        if plugin.idle.since_last_call() >= after {
            plugin.stop_if_idle(after).await;
        }
    }
}
