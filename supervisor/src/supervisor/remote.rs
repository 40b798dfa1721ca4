//! Calls this node makes to plugins on other nodes: where a call goes
//! (this node's plugin while it serves, else whichever node serves it),
//! the request with its deadline, and what the answer becomes.

use std::sync::Arc;

use crate::cluster::Direction;
use crate::cluster::subjects::{self, CallKind};
use crate::cluster::wire::{self, Answer, AnswerMsg, CallBody, CallMsg};
use crate::error::CallError;
use crate::plugin::Plugin;

use super::Supervisor;

/// Tries of a call whose serving node turned out not to run it.
const MAX_TRIES: usize = 3;
use super::cluster::serving;

impl Supervisor {
    /// This node's plugin for a call, when it should serve it: always
    /// alone; in a cluster, only while it serves (a quarantined or failed
    /// copy leaves the call to the other nodes).
    pub(super) fn here(&self, plugin: Option<Arc<Plugin>>) -> Option<Arc<Plugin>> {
        plugin.filter(|p| self.cluster().is_none() || serving(p.state().kind()))
    }

    /// Where a call with this node's copy `local` goes: `Some` that copy,
    /// `None` the cluster; alone and without a copy, the `unknown` error.
    pub(super) fn choose(
        &self,
        local: &Option<Arc<Plugin>>,
        unknown: impl FnOnce() -> CallError,
    ) -> Result<Option<Arc<Plugin>>, CallError> {
        if let Some(plugin) = self.here(local.clone()) {
            return Ok(Some(plugin));
        }
        if local.is_none() && self.cluster().is_none() {
            return Err(unknown());
        }
        Ok(None)
    }

    /// Sends a call to whichever node serves `name` and waits, at most
    /// `[cluster] call_timeout_ms`, for its answer. `what` names the kind
    /// in errors. Fails with [`CallError::NotInCluster`] when no node
    /// serves it.
    pub(super) async fn call_remote(
        &self,
        kind: CallKind,
        what: &'static str,
        name: &str,
        body: CallBody,
    ) -> Result<Answer, CallError> {
        let Some(cluster) = self.cluster() else {
            return Err(CallError::Unavailable(
                "this supervisor is not in a cluster".into(),
            ));
        };
        let nowhere = || CallError::NotInCluster {
            what,
            name: name.into(),
            nodes: cluster.alive_nodes(),
        };
        let Some(subject) = subjects::call(kind, name) else {
            return Err(nowhere());
        };
        // A node whose copy is stopping or not running did not run the
        // call: it goes to another (NATS picks again), a few times at most.
        // One deadline for every try: the caller waits `call_timeout_ms`
        // in all.
        let deadline = tokio::time::Instant::now() + cluster.config().call_timeout;
        let mut tries = 0;
        loop {
            tries += 1;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self
                .call_once(cluster, what, name, &subject, body.clone(), left)
                .await
            {
                Err(CallError::Remote {
                    kind: "not_running" | "shutting_down",
                    ..
                }) if tries < MAX_TRIES => {}
                Err(CallError::NotInCluster { .. }) => return Err(nowhere()),
                other => return other,
            }
        }
    }

    async fn call_once(
        &self,
        cluster: &crate::cluster::Cluster,
        what: &'static str,
        name: &str,
        subject: &str,
        body: CallBody,
        timeout: std::time::Duration,
    ) -> Result<Answer, CallError> {
        let call = CallMsg {
            from: cluster.node().to_string(),
            deadline_ms: timeout.as_millis() as u64,
            body,
        };
        let request = async_nats::Request::new()
            .payload(wire::encode(&call).into())
            .timeout(Some(timeout));
        let reply = match cluster
            .client()
            .send_request(subject.to_owned(), request)
            .await
        {
            Ok(reply) => reply,
            Err(e) => {
                use async_nats::client::RequestErrorKind;
                return Err(match e.kind() {
                    RequestErrorKind::NoResponders => CallError::NotInCluster {
                        what,
                        name: name.into(),
                        nodes: Vec::new(),
                    },
                    RequestErrorKind::TimedOut => CallError::Unavailable(format!(
                        "no answer from the cluster for {what} `{name}` within {} ms ([cluster] call_timeout_ms); the node serving it may have died mid-call",
                        cluster.config().call_timeout.as_millis()
                    )),
                    _ => CallError::Unavailable(format!(
                        "the cluster link failed calling {what} `{name}`: {e}"
                    )),
                });
            }
        };
        let answer = wire::decode::<AnswerMsg>(&reply.payload)
            .and_then(|a| subjects::check_node(&a.node).map(|()| a));
        let answer = match answer {
            Ok(answer) => answer,
            Err(why) => {
                cluster.traffic().refused();
                return Err(CallError::Unavailable(format!(
                    "the answer to {what} `{name}` from the cluster was not readable: {why}"
                )));
            }
        };
        let ok = !matches!(answer.answer, Answer::Failed { .. });
        cluster.count_call(Direction::Out, &answer.node, ok);
        match answer.answer {
            Answer::Failed { kind, message } => {
                Err(CallError::remote(&answer.node, &kind, &message))
            }
            other => Ok(other),
        }
    }

    /// [`Self::call_remote`] for a call answered with text.
    pub(super) async fn call_remote_text(
        &self,
        kind: CallKind,
        what: &'static str,
        name: &str,
        body: CallBody,
    ) -> Result<String, CallError> {
        match self.call_remote(kind, what, name, body).await? {
            Answer::Text(text) => Ok(text),
            _ => Err(CallError::Unavailable(format!(
                "the cluster answered {what} `{name}` with the wrong type"
            ))),
        }
    }
}
