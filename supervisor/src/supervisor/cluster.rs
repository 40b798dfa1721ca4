//! This node in the cluster: the tasks that send its events out, take
//! other nodes' events and calls in, and say every heartbeat what it
//! serves.
//!
//! Every plugin here that serves something has a NATS queue subscription
//! per thing it serves (one per tool, RPC, provider, middleware plugin,
//! and one for the events of a hook or module), in a queue group named
//! after it. NATS hands each message to one member of each group, so a
//! call is served by one of the nodes running the plugin, and an event
//! reaches each plugin once however many nodes run it. A plugin that stops
//! serving (quarantined, failed, stopped) drops its subscriptions at the
//! next heartbeat, and NATS sends its share to the others; a node that
//! dies loses them when its connection closes.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::cluster::subjects::{self, CallKind};
use crate::cluster::wire::{self, Announce, Answer, AnswerMsg, CallBody, CallMsg, EventMsg};
use crate::cluster::{Cluster, Direction};
use crate::error::CallError;
use crate::manifest::CapabilityType;
use crate::plugin::{Plugin, StateKind};
use crate::services::events::Event;

use super::{Inner, Supervisor};

/// What one subscription is for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Route {
    /// Every event, for this plugin (its queue group: one node's copy).
    Events(String),
    Call(CallKind, String),
}

/// The subscription a call body belongs on.
fn route_of(body: &CallBody) -> Route {
    match body {
        CallBody::Tool { tool, .. } => Route::Call(CallKind::Tool, tool.clone()),
        CallBody::Rpc { name, .. } => Route::Call(CallKind::Rpc, name.clone()),
        CallBody::Chat { provider, .. } => Route::Call(CallKind::Chat, provider.clone()),
        CallBody::Middleware { plugin, .. } => Route::Call(CallKind::Middleware, plugin.clone()),
    }
}

/// States in which a plugin takes calls and events (an idle one starts a
/// worker on the first; a restarting one is back within milliseconds).
pub(super) fn serving(state: StateKind) -> bool {
    matches!(
        state,
        StateKind::Running | StateKind::Idle | StateKind::Starting | StateKind::Restarting
    )
}

impl Supervisor {
    pub(super) fn cluster(&self) -> Option<&Cluster> {
        self.inner.cluster.as_ref()
    }

    /// Starts this node's part in the cluster: the event pump, the
    /// listeners and the heartbeat that keeps the subscriptions right.
    pub(super) fn join_cluster(&self, cluster: &Cluster, outbox: mpsc::Receiver<Event>) {
        tokio::spawn(pump(cluster.clone(), outbox));
        tokio::spawn(listen_hosts(cluster.clone(), Arc::downgrade(&self.inner)));
        tokio::spawn(listen_nodes(cluster.clone(), Arc::downgrade(&self.inner)));
        tokio::spawn(keep(cluster.clone(), Arc::downgrade(&self.inner)));
    }

    /// Says goodbye, so the others drop this node at once, and sends what
    /// is still buffered.
    pub(super) async fn leave_cluster(&self) {
        let Some(cluster) = self.cluster() else {
            return;
        };
        let announce = Announce {
            node: cluster.node().to_string(),
            started_at_ms: self.inner.started_at_ms,
            leaving: true,
            plugins: Vec::new(),
        };
        let subject = subjects::node(cluster.node());
        let _ = cluster
            .client()
            .publish(subject, wire::encode(&announce).into())
            .await;
        // The goodbye and the events still buffered reach the server (a
        // flush waits for it to answer), then the connection closes and
        // the listeners end with it.
        let wait = std::time::Duration::from_secs(2);
        let _ = tokio::time::timeout(wait, cluster.client().flush()).await;
        let _ = tokio::time::timeout(wait, cluster.client().drain()).await;
    }

    /// The heartbeat: this node and what each of its plugins serves.
    fn announce(&self) -> Announce {
        let node = self
            .cluster()
            .map(|c| c.node().to_string())
            .unwrap_or_default();
        // Each route table turned around once: plugin -> the names it
        // serves (a node may run a thousand plugins).
        let by_plugin = |map: &std::sync::RwLock<BTreeMap<String, Arc<Plugin>>>| {
            let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (name, p) in map.read().unwrap_or_else(|p| p.into_inner()).iter() {
                if subjects::is_subject_words(name) {
                    out.entry(p.name.to_string())
                        .or_default()
                        .push(name.clone());
                }
            }
            out
        };
        let (mut tools, mut providers, mut rpcs) = (
            by_plugin(&self.inner.tools),
            by_plugin(&self.inner.providers),
            by_plugin(&self.inner.rpcs),
        );
        let priorities: BTreeMap<String, i64> = self
            .ordered_middleware()
            .into_iter()
            .map(|(priority, p)| (p.name.to_string(), priority))
            .collect();
        let plugins = self.all_plugins();
        Announce {
            node,
            started_at_ms: self.inner.started_at_ms,
            leaving: false,

            plugins: plugins
                .iter()
                .map(|p| wire::PluginAnnounce {
                    name: p.name.to_string(),
                    version: p.manifest.plugin.version.clone(),
                    state: p.state().label().into(),
                    tools: tools.remove(&*p.name).unwrap_or_default(),
                    providers: providers.remove(&*p.name).unwrap_or_default(),
                    rpcs: rpcs.remove(&*p.name).unwrap_or_default(),
                    middleware_priority: priorities.get(&*p.name).copied(),
                })
                .collect(),
        }
    }

    /// The subscriptions this node should hold now, with their queue
    /// group.
    fn wanted_routes(&self, announce: &Announce) -> BTreeMap<Route, (String, String)> {
        let mut routes = BTreeMap::new();
        for plugin in &announce.plugins {
            let Some(local) = self.plugin_named(&plugin.name) else {
                continue;
            };
            if !serving(local.state().kind()) {
                continue;
            }
            let group = plugin.name.clone();
            let events = local
                .manifest
                .capabilities_of(CapabilityType::Hook)
                .next()
                .is_some()
                || local
                    .manifest
                    .capabilities_of(CapabilityType::Module)
                    .next()
                    .is_some();
            if events {
                routes.insert(
                    Route::Events(plugin.name.clone()),
                    (subjects::ALL_EVENTS.to_owned(), format!("ev-{group}")),
                );
            }
            let calls = [
                (CallKind::Tool, &plugin.tools),
                (CallKind::Chat, &plugin.providers),
                (CallKind::Rpc, &plugin.rpcs),
            ];
            let middleware = plugin
                .middleware_priority
                .map(|_| vec![plugin.name.clone()]);
            for (kind, names) in calls
                .into_iter()
                .chain(middleware.as_ref().map(|m| (CallKind::Middleware, m)))
            {
                for name in names {
                    if let Some(subject) = subjects::call(kind, name) {
                        routes.insert(Route::Call(kind, name.clone()), (subject, "prx".into()));
                    }
                }
            }
        }
        routes
    }

    /// Serves one call another node sent; the answer goes back on its
    /// reply subject. The call must be what its subject (`route`) is for,
    /// and the reply subject an inbox of the node it names: a node cannot
    /// reach through one subject a plugin its credentials keep it from, nor
    /// have this node publish where it cannot.
    async fn serve_call(
        &self,
        cluster: &Cluster,
        route: &Route,
        message: async_nats::Message,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
    ) {
        let call = wire::decode::<CallMsg>(&message.payload).and_then(|call| {
            subjects::check_node(&call.from)?;
            match (&message.reply, route_of(&call.body)) {
                (Some(reply), _) if !subjects::is_inbox_of(reply, &call.from) => Err(format!(
                    "its reply subject {reply} is not an inbox of node {}",
                    call.from
                )),
                (None, _) => Err("it has no reply subject".into()),
                (_, asked) if asked != *route => {
                    Err(format!("it asks for {asked:?} on the subject of {route:?}"))
                }
                _ => Ok(call),
            }
        });
        let call = match call {
            Ok(call) => call,
            Err(why) => {
                if cluster.traffic().refused() {
                    tracing::warn!(subject = %message.subject, "a cross-node call was refused: {why}");
                }
                return;
            }
        };
        let Some(reply) = message.reply else { return };
        let result = match permit {
            None => Err(CallError::Busy {
                plugin: format!("(node {})", cluster.node()),
                why: format!(
                    "{} calls from other nodes are being served already",
                    crate::cluster::MAX_SERVED_CALLS
                ),
            }),
            Some(_permit) if call.deadline_ms == 0 => Err(CallError::Unavailable(format!(
                "the caller on node {} stopped waiting before the call arrived",
                call.from
            ))),
            Some(_permit) => self.serve_here(call.body).await,
        };
        cluster.count_call(Direction::In, &call.from, result.is_ok());
        let answer = match result {
            Ok(answer) => answer,
            Err(e) => Answer::Failed {
                kind: e.kind().into(),
                message: e.to_string(),
            },
        };
        let answer = AnswerMsg {
            node: cluster.node().to_string(),
            answer,
        };
        let _ = cluster
            .client()
            .publish(reply, wire::encode(&answer).into())
            .await;
    }

    /// A call from another node, served by this node's plugins only (a
    /// call is never passed on again, so no call goes round the cluster).
    async fn serve_here(&self, body: CallBody) -> Result<Answer, CallError> {
        match body {
            CallBody::Tool { tool, args } => {
                self.call_tool_here(&tool, &args).await.map(Answer::Text)
            }
            CallBody::Rpc { name, payload } => {
                self.rpc_here(&name, &payload).await.map(Answer::Text)
            }
            CallBody::Chat {
                provider,
                messages,
                model,
                temperature,
            } => self
                .chat_here(&provider, messages, &model, temperature)
                .await
                .map(Answer::Chat),
            CallBody::Middleware {
                plugin,
                stage,
                data,
            } => self
                .middleware_step_here(&plugin, &stage, &data)
                .await
                .map(Answer::Text),
        }
    }
}

/// Sends the events published here to the cluster.
async fn pump(cluster: Cluster, mut outbox: mpsc::Receiver<Event>) {
    while let Some(event) = outbox.recv().await {
        let message = EventMsg {
            node: cluster.node().to_string(),
            topic: event.topic.to_string(),
            payload: event.payload.to_string(),
            source: event.source.as_deref().map(str::to_owned),
            chain: event.chain.iter().map(|p| p.to_string()).collect(),
            published_at_ms: event.published_at_ms,
        };
        let subject = subjects::event(cluster.node(), &event.topic);
        match cluster
            .client()
            .publish(subject, wire::encode(&message).into())
            .await
        {
            Ok(()) => cluster.traffic().event(Direction::Out),
            Err(e) => tracing::warn!(topic = %event.topic, "event not sent to the cluster: {e}"),
        }
    }
}

/// An event read from the link, checked; `None` (counted) when it is bad.
fn read_event(cluster: &Cluster, message: &async_nats::Message) -> Option<(String, Event)> {
    let checked = wire::decode::<EventMsg>(&message.payload).and_then(|e| {
        e.check()?;
        match subjects::event_of(&message.subject) {
            Some((node, topic)) if node == e.node && topic == e.topic => Ok(e),
            _ => Err("its subject is not its node and topic".into()),
        }
    });
    let event = match checked {
        Ok(event) => event,
        Err(why) => {
            if cluster.traffic().refused() {
                tracing::warn!(subject = %message.subject, "an event from the cluster was refused: {why}");
            }
            return None;
        }
    };
    Some((
        event.node,
        Event {
            seq: 0,
            topic: event.topic.into(),
            payload: event.payload.into(),
            source: event.source.map(Into::into),
            published_at_ms: event.published_at_ms,
            chain: event.chain.into_iter().map(Into::into).collect(),
        },
    ))
}

/// Other nodes' events, for the host subscriptions here (`prx events
/// tail`, the console).
async fn listen_hosts(cluster: Cluster, inner: Weak<Inner>) {
    let Ok(mut events) = cluster.client().subscribe(subjects::ALL_EVENTS).await else {
        tracing::error!("cannot subscribe to the cluster's events");
        return;
    };
    while let Some(message) = events.next().await {
        let Some(inner) = inner.upgrade() else { return };
        // Read (decoded, checked) only when a host subscription here wants
        // its topic: most nodes have none, and every event comes here.
        let wanted = subjects::event_of(&message.subject)
            .is_some_and(|(_, topic)| inner.services.bus.hosts_listen(topic));
        if wanted
            && let Some((node, event)) = read_event(&cluster, &message)
            && *node != **cluster.node()
        {
            inner.services.bus.receive_for_hosts(&event);
        }
    }
}

/// Heartbeats, into the table of members.
async fn listen_nodes(cluster: Cluster, inner: Weak<Inner>) {
    let Ok(mut beats) = cluster.client().subscribe(subjects::ALL_NODES).await else {
        tracing::error!("cannot subscribe to the cluster's heartbeats");
        return;
    };
    let started_at_ms = match inner.upgrade() {
        Some(inner) => inner.started_at_ms,
        None => return,
    };
    while let Some(message) = beats.next().await {
        if inner.strong_count() == 0 {
            return;
        }
        match wire::decode::<Announce>(&message.payload).and_then(|a| {
            a.check()?;
            Ok(a)
        }) {
            Ok(announce) if message.subject.as_str() == subjects::node(&announce.node) => {
                if *announce.node == **cluster.node()
                    && announce.started_at_ms != started_at_ms
                    && !announce.leaving
                {
                    if cluster.traffic().refused() {
                        tracing::error!(node = %announce.node, "another supervisor uses this node's name: each node needs its own ([cluster] node, --node)");
                    }
                    continue;
                }
                if !cluster.members().heard(announce) {
                    cluster.traffic().refused();
                }
            }
            _ => {
                cluster.traffic().refused();
            }
        }
    }
}

/// Every heartbeat: say what this node serves, and hold exactly the
/// subscriptions that go with it.
async fn keep(cluster: Cluster, inner: Weak<Inner>) {
    let mut held: BTreeMap<Route, Held> = BTreeMap::new();
    let mut tick = tokio::time::interval(cluster.config().heartbeat);
    loop {
        let Some(strong) = inner.upgrade() else { break };
        let notified = strong.routes_changed.clone();
        let supervisor = Supervisor { inner: strong };
        if supervisor
            .inner
            .draining
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            break;
        }
        let announce = supervisor.announce();
        let wanted = supervisor.wanted_routes(&announce);
        // Dropping a `Held` stops its subscription (see `serve`).
        held.retain(|route, held| wanted.contains_key(route) && !held.task.is_finished());
        for (route, (subject, group)) in wanted {
            if held.contains_key(&route) {
                continue;
            }
            match cluster
                .client()
                .queue_subscribe(subject.clone(), group)
                .await
            {
                Ok(subscription) => {
                    let (stop, stopped) = tokio::sync::oneshot::channel();
                    let task = tokio::spawn(serve(
                        cluster.clone(),
                        Arc::downgrade(&supervisor.inner),
                        route.clone(),
                        subscription,
                        stopped,
                    ));
                    held.insert(route, Held { task, _stop: stop });
                }
                Err(e) => {
                    tracing::warn!(
                        subject,
                        ?route,
                        "cannot subscribe; tried again next heartbeat: {e}"
                    )
                }
            }
        }
        let _ = cluster
            .client()
            .publish(
                subjects::node(cluster.node()),
                wire::encode(&announce).into(),
            )
            .await;
        drop(supervisor);
        tokio::select! {
            _ = tick.tick() => {}
            () = notified.notified() => {}
        }
    }
    // Dropping each `Held` stops its subscription (see `serve`).
    drop(held);
}

/// A subscription being served; dropping it stops it.
struct Held {
    task: JoinHandle<()>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Serves one subscription: its events into the plugin's queue, or each
/// call in a task of its own (at most [`crate::cluster::MAX_SERVED_CALLS`]
/// at once across the node; past that, a call is answered `busy` at
/// once). When `stop` fires it unsubscribes and serves what had arrived
/// already, so no caller waits out its timeout for a message dropped here.
async fn serve(
    cluster: Cluster,
    inner: Weak<Inner>,
    route: Route,
    mut subscription: async_nats::Subscriber,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut stopping = false;
    loop {
        let message = tokio::select! {
            message = subscription.next() => message,
            _ = &mut stop, if !stopping => {
                stopping = true;
                let _ = subscription.unsubscribe().await;
                continue;
            }
        };
        let Some(message) = message else { return };
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let supervisor = Supervisor { inner: strong };
        match &route {
            Route::Events(plugin) => {
                if let Some((node, event)) = read_event(&cluster, &message) {
                    if *node != **cluster.node() {
                        cluster.traffic().event(Direction::In);
                    }
                    supervisor.inner.services.bus.receive_for(plugin, &event);
                }
            }
            Route::Call(..) => match cluster.serve_permit() {
                Some(permit) => {
                    let (cluster, route) = (cluster.clone(), route.clone());
                    tokio::spawn(async move {
                        supervisor
                            .serve_call(&cluster, &route, message, Some(permit))
                            .await
                    });
                }
                // Full: answered `busy` here, without a task of its own.
                None => supervisor.serve_call(&cluster, &route, message, None).await,
            },
        }
    }
}
