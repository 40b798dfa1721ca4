//! The serve loop: every frame a running worker sends after start-up,
//! matched to what the supervisor asked (replies by id, pongs by nonce) or
//! handed to the plugin's broker (host calls, log lines); anything else is
//! a protocol violation that ends the worker.

use std::sync::Arc;

use prx_ipc::{FromWorker, HostCallMsg, HostReplyMsg, LogLevel, ToWorker};

use crate::broker::PluginBroker;

use super::calls::Waiting;
use super::frames::{FrameReader, LINK_SPIN, poll_briefly};
use super::{InvokeError, LinkError, Worker, lock};

/// The most verbose plugin log level the supervisor's log keeps.
pub(super) fn plugin_log_level() -> LogLevel {
    use tracing::Level;
    if tracing::enabled!(target: "plugin", Level::TRACE) {
        LogLevel::Trace
    } else if tracing::enabled!(target: "plugin", Level::DEBUG) {
        LogLevel::Debug
    } else if tracing::enabled!(target: "plugin", Level::INFO) {
        LogLevel::Info
    } else if tracing::enabled!(target: "plugin", Level::WARN) {
        LogLevel::Warn
    } else {
        LogLevel::Error
    }
}

/// Reads frames after the handshake until the link closes or lies.
pub(super) async fn serve(worker: Arc<Worker>, mut reader: FrameReader, broker: Arc<PluginBroker>) {
    loop {
        // A call in flight: its answer or next host call usually comes
        // sooner than a sleeping runtime wakes.
        if !reader.has_buffered() && worker.in_flight() > 0 {
            poll_briefly(&reader.watch(), LINK_SPIN);
        }
        let frame = match reader.read().await {
            Ok(frame) => frame,
            // The link only breaks when the worker exits (or is broken
            // beyond use): make sure it is gone; its exit cause then fails
            // the calls in flight.
            Err(LinkError::Closed | LinkError::Io(_)) => {
                worker.reap_or_kill().await;
                return;
            }
            Err(e @ (LinkError::Malformed(_) | LinkError::Lied(_))) => {
                worker.violation(&e.to_string());
                return;
            }
        };
        match frame {
            FromWorker::InvokeReply(reply) => {
                let (waiting, abandoned) = {
                    let mut pending = worker.lock_pending();
                    let abandoned = pending.abandoned.remove(&reply.id);
                    let waiting = pending.calls.remove(&reply.id);
                    (waiting, abandoned)
                };
                if waiting.is_some() || abandoned {
                    broker.stats().add_fuel(reply.fuel_used, worker.max_fuel);
                }
                match waiting {
                    Some(Waiting { reply: tx }) => {
                        // Host calls from here on belong to no invocation
                        // until the next one is sent.
                        broker.end_invocation();
                        let outcome = reply.outcome.map_err(InvokeError::Guest);
                        let _ = tx.send(outcome);
                    }
                    None if abandoned => {}
                    // An id we never issued, or one answered twice.
                    None => {
                        worker.violation(&format!("reply to unknown request id {}", reply.id));
                        return;
                    }
                }
            }
            FromWorker::HostCall(HostCallMsg { id, call }) => {
                if !worker.imports.contains(&call.interface()) {
                    worker.violation(&format!(
                        "host call {} to {}, which the component does not import",
                        call.function(),
                        call.interface()
                    ));
                    return;
                }
                let reply = broker.answer(call).await;
                let frame = ToWorker::HostReply(HostReplyMsg { id, reply });
                if let Err(e) = worker.send(&frame, worker.write_timeout).await {
                    worker.close(&e);
                    return;
                }
            }
            FromWorker::Log(line) => broker.log(line.level, &line.message),
            FromWorker::Pong(nonce) => {
                let waiting = lock(&worker.ping).take_if(|(n, _)| *n == nonce);
                match waiting {
                    Some((_, tx)) => {
                        let _ = tx.send(());
                    }
                    None => {
                        worker.violation(&format!("pong {nonce} to no ping"));
                        return;
                    }
                }
            }
            // Under the plugin's log rate like any line: a worker can send
            // these at socket speed.
            FromWorker::Fatal(message) => broker.log(
                LogLevel::Error,
                &prx_ipc::WorkerText::new(format!("the worker reported a fatal error: {message}")),
            ),
            other => {
                worker.violation(&format!(
                    "frame kind {} after start-up",
                    prx_ipc::Message::kind(&other)
                ));
                return;
            }
        }
    }
}
