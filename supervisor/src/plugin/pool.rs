//! More than one worker per plugin (`[resources] workers = N`): for
//! plugins that keep no state in their instance, calls go to the least
//! busy of N worker processes, so one plugin can use every core.
//!
//! The first worker is the plugin's own (started, checked and supervised
//! as always); the others are spares, each with its own broker (so each
//! worker's invocation, its causal chain and its http request count, is
//! its own) and its own supervision with the plugin's restart policy. A
//! spare that keeps crashing quarantines the plugin, all its workers
//! with it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use crate::broker::PluginBroker;
use crate::worker_handle::{StartError, Worker};

use super::heal::Quarantine;
use super::supervision::{Keeper, watch as supervise_with};
use super::{Plugin, PluginState, Runtime};

/// One worker beyond the first.
#[derive(Debug)]
pub(crate) struct Spare {
    broker: Arc<PluginBroker>,
    worker: watch::Sender<Option<Arc<Worker>>>,
}

impl Spare {
    pub(crate) fn new(broker: Arc<PluginBroker>) -> Self {
        Self {
            broker,
            worker: watch::channel(None).0,
        }
    }
}

impl Plugin {
    /// Starts every spare beside a serving first worker, one after the
    /// other, and watches each. A spare that does not start is logged and
    /// the plugin serves with fewer workers (a security event quarantines
    /// it, as at load).
    pub(super) async fn start_spares(self: &Arc<Self>, rt: &Runtime) {
        for slot in 0..self.spares.len() {
            if self.is_stopping() {
                return;
            }
            match self.start_spare(rt, slot).await {
                Ok(worker) => {
                    self.spares[slot].worker.send_replace(Some(worker.clone()));
                    let keeper = SpareKeeper {
                        plugin: self.clone(),
                        rt: rt.clone(),
                        slot,
                    };
                    tokio::spawn(async move {
                        let policy = keeper.rt.restart;
                        supervise_with(&keeper, policy, worker).await;
                    });
                }
                Err(e) if e.is_security_event() => {
                    self.quarantine(rt, Quarantine::Security(e.reason()));
                    return;
                }
                Err(e) => {
                    tracing::warn!(plugin = %self.name, slot, "a spare worker did not start: {e}; the plugin serves with fewer workers");
                }
            }
        }
    }

    async fn start_spare(&self, rt: &Runtime, slot: usize) -> Result<Arc<Worker>, StartError> {
        let worker = self.spawn_worker_for(rt, &self.spares[slot].broker).await?;
        if let Err(e) = self.check_exports(&worker) {
            worker.kill();
            return Err(StartError::Violation(e));
        }
        Ok(worker)
    }

    /// The live worker with the fewest calls in it or waiting for it, the
    /// first worker on a tie; `None` when no worker is live.
    pub(super) fn least_busy(&self) -> Option<Arc<Worker>> {
        let first = self.worker.borrow().clone();
        let spares = self.spares.iter().map(|s| s.worker.borrow().clone());
        std::iter::once(first)
            .chain(spares)
            .flatten()
            .filter(|w| !w.is_closed())
            .min_by_key(|w| w.busy())
    }

    /// Stops every spare (their supervision sees it was on purpose).
    pub(super) async fn stop_spares(&self, grace: Duration) {
        for spare in &self.spares {
            if let Some(worker) = spare.worker.send_replace(None) {
                worker.stop_on_purpose();
                worker.stop(grace).await;
            }
        }
    }

    /// Kills every spare at once (quarantine, failure).
    pub(super) fn kill_spares(&self) {
        for spare in &self.spares {
            if let Some(worker) = spare.worker.send_replace(None) {
                worker.stop_on_purpose();
                worker.kill();
            }
        }
    }

    /// The process ids of the serving spares.
    pub(super) fn spare_pids(&self) -> Vec<u32> {
        self.spares
            .iter()
            .filter_map(|s| s.worker.borrow().as_ref().map(|w| w.pid()))
            .collect()
    }
}

/// Supervision of one spare: restarts with the plugin's policy, counted
/// in the plugin's restarts; the plugin's state is the first worker's.
struct SpareKeeper {
    plugin: Arc<Plugin>,
    rt: Runtime,
    slot: usize,
}

impl Keeper for SpareKeeper {
    type Worker = Worker;

    fn is_stopping(&self) -> bool {
        self.plugin.stopping.load(Ordering::SeqCst)
            || matches!(
                self.plugin.state(),
                PluginState::Quarantined { .. } | PluginState::Failed(_)
            )
    }

    fn lost(&self, worker: &Worker, cause: &str, security: bool) {
        self.plugin.spares[self.slot].worker.send_replace(None);
        *self
            .plugin
            .last_exit
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(cause.to_owned());
        tracing::warn!(plugin = %self.plugin.name, pid = worker.pid(), slot = self.slot,
            security, %cause, "a spare worker exited");
    }

    fn quarantine(&self, why: Quarantine) {
        self.plugin.quarantine(&self.rt, why);
    }

    fn fail(&self, reason: String) {
        self.plugin.fail_logged(reason);
    }

    fn back_off(&self, delay: Duration) -> impl Future<Output = ()> + Send {
        let plugin = &self.plugin;
        async move {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = plugin.wake.notified() => {}
            }
        }
    }

    fn restarting(&self) {
        self.plugin.restarts.fetch_add(1, Ordering::Relaxed);
        self.plugin.stats().count_restart();
    }

    fn start(&self) -> impl Future<Output = Result<Arc<Worker>, StartError>> + Send {
        self.plugin.start_spare(&self.rt, self.slot)
    }

    async fn init(&self, _worker: &Worker) -> Result<(), String> {
        // Its exports were checked at start; a spare asks nothing more
        // (the spec and names are the first worker's, from the same code).
        Ok(())
    }

    fn start_failed(&self, cause: &str) {
        tracing::warn!(plugin = %self.plugin.name, slot = self.slot, "restarting a spare worker failed: {cause}");
    }

    fn serving(&self, worker: Arc<Worker>, took: Duration) {
        tracing::info!(plugin = %self.plugin.name, pid = worker.pid(), slot = self.slot,
            took_ms = took.as_millis() as u64, "spare worker restarted");
        self.plugin.spares[self.slot]
            .worker
            .send_replace(Some(worker));
    }
}
