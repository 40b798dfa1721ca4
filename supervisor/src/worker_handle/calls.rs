//! Calls into a worker: one at a time, a bounded queue before it, a
//! deadline that starts with the caller's turn, and every write to the
//! worker under a deadline too, so a worker that stops reading is killed
//! rather than waited on.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use prx_ipc::{Call, Invoke, Output, ToWorker};
use tokio::sync::oneshot;

use crate::topics::Chain;

use super::frames::{InFlight, LINK_SPIN, poll_briefly};

use super::{InvokeError, LinkError, Worker};

pub(super) type Reply = oneshot::Sender<Result<Output, InvokeError>>;

/// A call waiting for its reply.
pub(super) struct Waiting {
    pub(super) reply: Reply,
}

/// Calls that may wait for their turn at one worker; more are refused as
/// busy at once (`GET /v1/modules` from any number of clients, say).
pub const MAX_QUEUED_CALLS: usize = 64;

/// In-flight calls; `closed` once the worker is gone, so no call can be
/// added that nobody will answer.
#[derive(Default)]
pub(super) struct Pending {
    /// By id: the worker runs them in the order they were sent, which is
    /// id order (ids are taken while the link is held for writing).
    pub(super) calls: BTreeMap<u64, Waiting>,
    /// Ids whose caller gave up (deadline); a late reply to one is dropped,
    /// not mistaken for a forged id.
    pub(super) abandoned: HashSet<u64>,
    pub(super) closed: Option<String>,
}

impl Worker {
    /// Calls into the plugin. The worker enforces the limits itself; this
    /// deadline is the backstop for a worker that stops answering.
    ///
    /// `chain` is the causal chain of the call (the plugins whose event
    /// handlers led to it); the plugin's host calls during it carry it.
    pub async fn invoke(
        &self,
        call: Call,
        deadline: Duration,
        chain: Chain,
    ) -> Result<Output, InvokeError> {
        // One call at a time at the worker, which runs them one after
        // another anyway; the others wait here, where waiting is not the
        // worker's fault: its deadline starts when its turn does.
        let _turn = self.take_turn(deadline).await?;
        let _in_flight = InFlight::begin();
        let started = Instant::now();
        let (tx, rx) = oneshot::channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut pending = self.lock_pending();
            if let Some(cause) = &pending.closed {
                return Err(InvokeError::Died(cause.clone()));
            }
            self.broker.begin_invocation(chain);
            pending.calls.insert(id, Waiting { reply: tx });
        }
        let frame = ToWorker::Invoke(Invoke { id, call });
        if let Err(e) = self.send(&frame, deadline).await {
            self.lock_pending().calls.remove(&id);
            return Err(InvokeError::Died(e));
        }
        let ToWorker::Invoke(Invoke { call, .. }) = frame else {
            unreachable!("built above as an Invoke");
        };
        // A short call is answered before a sleeping runtime would wake.
        poll_briefly(&self.watch, LINK_SPIN);
        let full = deadline;
        let deadline = deadline.saturating_sub(started.elapsed());
        match tokio::time::timeout(deadline, rx).await {
            // A reply of a type the function cannot return is a lie about
            // the component, like a reply to an id never issued.
            Ok(Ok(Ok(output))) if !call.accepts(&output) => {
                self.violation(&format!(
                    "a reply of the wrong type to a call of {}",
                    call.export()
                ));
                Err(InvokeError::BadReply)
            }
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(InvokeError::Died("the worker went away".into())),
            Err(_) => {
                {
                    let mut pending = self.lock_pending();
                    pending.calls.remove(&id);
                    pending.abandoned.insert(id);
                }
                tracing::warn!(plugin = %self.plugin, pid = self.pid, ?deadline,
                    "worker did not answer in time; killing it");
                self.kill_because(format!(
                    "killed by the supervisor: no answer within {} ms",
                    full.as_millis()
                ));
                Err(InvokeError::Timeout(full))
            }
        }
    }

    /// Waits for this call's turn at the worker: at most `wait`, behind at
    /// most [`MAX_QUEUED_CALLS`] others; past either the caller is told
    /// the plugin is busy, and the worker is not blamed.
    async fn take_turn(
        &self,
        wait: Duration,
    ) -> Result<tokio::sync::SemaphorePermit<'_>, InvokeError> {
        if let Ok(turn) = self.turn.try_acquire() {
            return Ok(turn);
        }
        if self.queued.fetch_add(1, Ordering::SeqCst) >= MAX_QUEUED_CALLS {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(InvokeError::Busy(format!(
                "{MAX_QUEUED_CALLS} calls are already waiting for it"
            )));
        }
        let turn = tokio::time::timeout(wait, self.turn.acquire()).await;
        self.queued.fetch_sub(1, Ordering::SeqCst);
        match turn {
            Ok(Ok(turn)) => Ok(turn),
            Ok(Err(_)) => Err(InvokeError::Died("the worker is gone".into())),
            Err(_) => Err(InvokeError::Busy(format!(
                "the calls before this one kept it busy for {} ms",
                wait.as_millis()
            ))),
        }
    }

    /// Writes one frame within `within`. A worker that does not drain its
    /// link in that time (it stopped reading, or floods host calls and
    /// never takes the answers) is killed like one that does not answer:
    /// no write can wait on it for ever, nor hold the link from others.
    pub(super) async fn send(&self, frame: &ToWorker, within: Duration) -> Result<(), String> {
        let sent = tokio::time::timeout(within, async {
            self.writer.lock().await.write(frame).await
        })
        .await;
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e @ LinkError::Lied(_))) => {
                let what = e.to_string();
                self.violation(&what);
                Err(format!("protocol violation: {what}"))
            }
            Ok(Err(e)) => Err(format!("link write failed: {e}")),
            Err(_) => {
                let why = format!(
                    "killed by the supervisor: it did not read its link within {} ms",
                    within.as_millis()
                );
                tracing::warn!(plugin = %self.plugin, pid = self.pid, "{why}");
                self.kill_because(why.clone());
                Err(why)
            }
        }
    }

    /// How many calls were ever sent to this worker (a number that only
    /// grows; liveness compares two readings).
    pub(super) fn calls_issued(&self) -> u64 {
        self.next_id.load(Ordering::Relaxed)
    }

    /// Calls in it or waiting for their turn at it: how busy it is.
    pub fn busy(&self) -> usize {
        self.in_flight() + self.queued.load(Ordering::Relaxed)
    }

    /// Calls in flight right now.
    pub fn in_flight(&self) -> usize {
        self.lock_pending().calls.len()
    }

    pub(super) fn lock_pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}
