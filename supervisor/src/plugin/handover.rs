//! Handing a plugin over from one version to the next: a standby worker
//! readied beside the live one, the switch, the old version's retirement
//! and the stop.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::worker_handle::Worker;

use super::{Plugin, PluginState, Runtime, supervise};

impl Plugin {
    /// Starts and checks a worker for this new version of a running plugin
    /// (exports, tool spec, names, a module's `on-load`) without touching
    /// the running version: its subscriptions and queue stay as they are.
    pub async fn start_standby(&self, rt: &Runtime) -> Result<Arc<Worker>, String> {
        // Its kv and cache writes wait until it takes over (`commit_staged`).
        self.broker.begin_staging();
        let worker = self.spawn_checked(rt).await?;
        match self.init_worker(&worker, rt).await {
            Ok(()) => Ok(worker),
            Err(e) => {
                worker.kill();
                Err(e)
            }
        }
    }

    /// A new worker whose exports match the manifest (killed when not).
    async fn spawn_checked(&self, rt: &Runtime) -> Result<Arc<Worker>, String> {
        let worker = self.spawn_worker(rt).await.map_err(|e| e.reason())?;
        if let Err(e) = self.check_exports(&worker) {
            worker.kill();
            return Err(e);
        }
        Ok(worker)
    }

    /// Compiles the component in a sandboxed worker (filling the compile
    /// cache), checks its exports against the manifest, asks the calls
    /// without effects (a tool's spec, a provider's or storage's name; a
    /// module's `on-load` is not run) and stops the worker: an install can
    /// make sure a version starts, and its later load is a cached one.
    pub async fn compile_check(&self, rt: &Runtime) -> Result<(), String> {
        // A check, not a version that serves: nothing it writes is kept.
        self.broker.begin_staging();
        let worker = self.spawn_checked(rt).await?;
        let named = self.ask_names(&worker, rt).await;
        worker.kill();
        named
    }

    /// Makes a started standby this plugin's serving worker, in place of
    /// `previous` (which the caller retires), and watches it.
    pub fn go_live(self: &Arc<Self>, rt: &Runtime, worker: Arc<Worker>, previous: &Plugin) {
        self.reloads.store(
            previous.reloads.load(Ordering::Relaxed) + 1,
            Ordering::Relaxed,
        );
        self.worker.send_replace(Some(worker.clone()));
        self.set_state(PluginState::Running);
        self.announce(
            "prx.lifecycle.reloaded",
            serde_json::json!({
                "pid": worker.pid(),
                "from_version": previous.manifest.plugin.version,
                "digest": self.digest_hex(),
            }),
        );
        tokio::spawn(supervise(self.clone(), rt.clone(), worker));
        self.watch_idle(rt);
        if !self.spares.is_empty() {
            let (plugin, rt) = (self.clone(), rt.clone());
            tokio::spawn(async move { plugin.start_spares(&rt).await });
        }
    }

    /// Hands this version over to `successor`: no call enters it any more
    /// (those routed here go on to the successor), the calls in it finish
    /// (for at most `drain`), then its worker stops. Its subscriptions,
    /// queue and kv data belong to the plugin's name and stay.
    pub async fn retire(&self, successor: Arc<Plugin>, drain: Duration) {
        let _ = self.successor.set(successor);
        *self.gate.write().unwrap_or_else(|p| p.into_inner()) = false;
        self.stopping.store(true, Ordering::SeqCst);
        self.wake.notify_waiters();
        // Calls waiting for a worker of this version give up and go on.
        self.worker.send_modify(|_| {});
        let drained = tokio::time::timeout(drain, async {
            loop {
                let woken = self.drained.notified();
                if self.active.load(Ordering::SeqCst) == 0 {
                    return;
                }
                woken.await;
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(plugin = %self.name, in_flight = self.active.load(Ordering::SeqCst),
                "the replaced version's calls did not finish in time; stopping it");
        }
        self.set_state(PluginState::Stopped);
        if let Some(worker) = self.worker.send_replace(None) {
            worker.stop(Duration::from_secs(2)).await;
        }
        self.stop_spares(Duration::from_secs(2)).await;
    }

    /// Drops a parked (failed or quarantined) version whose files are
    /// loaded again from scratch: nothing it had pending (a release after
    /// its cool-down, a release under way) may start a worker for it any
    /// more, and a worker it has is killed.
    pub fn discard(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.wake.notify_waiters();
        if let Some(worker) = self.worker.send_replace(None) {
            worker.kill();
        }
        self.kill_spares();
    }

    /// Stops the worker for good (shutdown).
    pub async fn stop(&self, grace: Duration) {
        self.stopping.store(true, Ordering::SeqCst);
        self.set_state(PluginState::Stopped);
        self.wake.notify_waiters();
        if let Some(worker) = self.worker.send_replace(None) {
            worker.stop(grace).await;
        }
        self.stop_spares(grace).await;
        self.broker.instance_ended();
        self.broker.plugin_removed();
        self.announce("prx.lifecycle.unloaded", serde_json::json!({}));
    }
}
