//! Calls to a plugin: waiting for a ready worker, one call's deadline,
//! forwarding it and turning what comes back (or does not) into a
//! `CallError`; `describe` answered from a short-lived cache.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use prx_ipc::{Call, Output};

use crate::error::CallError;
use crate::topics::{Chain, no_chain};
use crate::worker_handle::Worker;

use super::{Plugin, PluginState, Runtime};

/// One call into a plugin, counted until dropped.
struct ActiveCall<'a>(&'a Plugin);

impl Drop for ActiveCall<'_> {
    fn drop(&mut self) {
        self.0.idle.touch();
        if self.0.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}

/// How long a module's `describe()` answer is served again.
pub const DESCRIBE_FRESH: Duration = Duration::from_secs(1);

impl Plugin {
    /// Calls into the plugin, waiting for a worker up to the plugin's
    /// deadline. A guest's `err` comes back as [`Output::Refused`].
    /// A call that reached a version replaced meanwhile goes on to the
    /// new one.
    pub async fn call(&self, rt: &Runtime, call: Call, chain: Chain) -> Result<Output, CallError> {
        let Some(_active) = self.enter_call() else {
            return self.forward(rt, call, chain).await;
        };
        self.idle.touch();
        self.want_worker();
        let deadline = self.deadline(rt);
        // With spares, the least busy worker; else (or with none live)
        // the first, waiting for it as during a restart.
        let spread = if self.spares.is_empty() {
            None
        } else {
            self.least_busy()
        };
        let ready = match spread {
            Some(worker) => Ok(worker),
            None => self.ready_worker(deadline).await,
        };
        let worker = match ready {
            Ok(worker) => worker,
            Err(_) if self.successor.get().is_some() => {
                return self.forward(rt, call, chain).await;
            }
            Err(e) => return Err(e),
        };
        self.call_worker(&worker, rt, call, chain).await
    }

    async fn forward(&self, rt: &Runtime, call: Call, chain: Chain) -> Result<Output, CallError> {
        match self.successor.get() {
            Some(next) => Box::pin(next.call(rt, call, chain)).await,
            None => Err(CallError::NotRunning {
                plugin: self.name.to_string(),
                state: PluginState::Stopped.label().into(),
                detail: None,
            }),
        }
    }

    fn enter_call(&self) -> Option<ActiveCall<'_>> {
        let open = self.gate.read().unwrap_or_else(|p| p.into_inner());
        if !*open {
            return None;
        }
        self.active.fetch_add(1, Ordering::SeqCst);
        Some(ActiveCall(self))
    }

    pub(super) async fn call_worker(
        &self,
        worker: &Worker,
        rt: &Runtime,
        call: Call,
        chain: Chain,
    ) -> Result<Output, CallError> {
        let deadline = self.deadline(rt);
        let kind = crate::metrics::call_kind(&call);
        let started = std::time::Instant::now();
        let result = worker
            .invoke(call, deadline, chain)
            .await
            .map_err(|e| self.call_error(e, rt));
        if let Some(kind) = kind {
            let error = crate::metrics::error_kind(&result);
            self.stats().record(kind, error, started.elapsed());
        }
        result
    }

    /// The error for a reply of the wrong type (the worker, which sent it,
    /// was already killed for it).
    pub fn bad_reply(&self) -> CallError {
        CallError::BadReply {
            plugin: self.name.to_string(),
        }
    }

    /// The supervisor's own deadline for one invocation.
    pub fn deadline(&self, rt: &Runtime) -> Duration {
        Duration::from_millis(self.limits.max_execution_time_ms) + rt.deadline_grace
    }

    /// A worker to call, waiting up to `wait` while one is being started.
    pub async fn ready_worker(&self, wait: Duration) -> Result<Arc<Worker>, CallError> {
        // The common case: a live worker, no waiting and no timer.
        if let Some(worker) = self.worker.borrow().as_ref().filter(|w| !w.is_closed()) {
            return Ok(worker.clone());
        }
        let mut rx = self.worker.subscribe();
        let ready = tokio::time::timeout(wait, async {
            loop {
                let current = rx.borrow_and_update().clone();
                if let Some(worker) = current.filter(|w| !w.is_closed()) {
                    return Some(worker);
                }
                if self.is_stopping()
                    || matches!(
                        self.state(),
                        PluginState::Failed(_)
                            | PluginState::Quarantined { .. }
                            | PluginState::Stopped
                            // A start after an idle stop failed.
                            | PluginState::Idle
                    )
                {
                    return None;
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await;
        match ready {
            Ok(Some(worker)) => Ok(worker),
            _ if matches!(self.state(), PluginState::Quarantined { .. }) => {
                Err(CallError::NotRunning {
                    plugin: self.name.to_string(),
                    state: "quarantined".into(),
                    detail: match self.state() {
                        PluginState::Quarantined { reason, .. } => Some(reason),
                        _ => None,
                    },
                })
            }
            _ => {
                let state = self.state();
                Err(CallError::NotRunning {
                    plugin: self.name.to_string(),
                    state: state.label().into(),
                    detail: match state {
                        PluginState::Failed(reason) => Some(reason),
                        _ => None,
                    },
                })
            }
        }
    }

    pub fn call_error(&self, e: crate::worker_handle::InvokeError, rt: &Runtime) -> CallError {
        use crate::worker_handle::InvokeError;
        let plugin = self.name.to_string();
        match e {
            InvokeError::Guest(g) => CallError::Guest {
                plugin,
                kind: g.kind,
                message: g.message.escaped(),
            },
            InvokeError::Timeout(_) => CallError::Unresponsive {
                plugin,
                after_ms: self.deadline(rt).as_millis() as u64,
            },
            InvokeError::Died(cause) => CallError::Crashed { plugin, cause },
            InvokeError::BadReply => CallError::BadReply { plugin },
            InvokeError::Busy(why) => CallError::Busy { plugin, why },
        }
    }

    /// A module's `describe()`, asked of the worker at most once per
    /// [`DESCRIBE_FRESH`] however many requests want it: callers at the
    /// same time wait for one answer, later ones share it while it is
    /// fresh. `GET /v1/modules` needs no token; this keeps any number of
    /// its callers from queueing calls at the module.
    pub async fn describe(&self, rt: &Runtime) -> Result<Output, String> {
        let mut last = self.described.lock().await;
        if let Some((at, answer)) = &*last
            && at.elapsed() < DESCRIBE_FRESH
        {
            return answer.clone();
        }
        let answer = self
            .call(rt, Call::ModuleDescribe, no_chain())
            .await
            .map_err(|e| e.to_string());
        *last = Some((Instant::now(), answer.clone()));
        answer
    }
}
