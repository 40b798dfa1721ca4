//! The event bus: topics, pattern subscriptions and bounded queues.
//!
//! Publishing never waits: every subscriber has its own bounded queue, and
//! an event that finds a queue full is dropped for that subscriber alone
//! and counted. A subscriber is either a plugin (one queue per plugin,
//! however many patterns it subscribed; an event that matches several of
//! them is queued once) or a host-side [`Subscription`] from the library.
//!
//! Topics under `prx.` are the host's: plugins cannot publish them. A
//! subscription belongs to whoever made it, and only its owner can remove
//! it; a plugin's runtime subscriptions end with the worker that made them,
//! its manifest subscriptions (and its queue) with the plugin.
//!
//! Every event carries its causal chain: the plugins whose event handlers
//! led to it, first cause first. An event is never queued for a plugin in
//! its own chain (a handler never hears the echo of itself, however many
//! plugins the echo went through), and an event whose chain is already
//! `max_depth` long is queued for no plugin at all. Both are counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::topics::{Chain, EventError, Pattern, check_topic, is_reserved, no_chain};

mod table;
use table::{State, Target};

/// Largest payload accepted (the PRX limit).
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// Most live subscriptions one plugin may hold.
pub const MAX_SUBSCRIPTIONS_PER_PLUGIN: usize = 256;
/// Events waiting for one subscriber before new ones are dropped.
pub const DEFAULT_QUEUE: usize = 1024;
/// Longest causal chain whose events still reach plugins.
pub const DEFAULT_MAX_DEPTH: usize = 8;

/// One published event. Cheap to clone: topic and payload are shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Publication order on this bus, from 1.
    pub seq: u64,
    pub topic: Arc<str>,
    /// The JSON payload, as published.
    pub payload: Arc<str>,
    /// The plugin that published it; `None` for the host.
    pub source: Option<Arc<str>>,
    /// Milliseconds since the Unix epoch.
    pub published_at_ms: u64,
    /// The plugins whose handlers caused it, first cause first.
    pub chain: Chain,
}

/// Who holds a subscription.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Owner {
    Host,
    Plugin(String),
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Host => f.write_str("host"),
            Self::Plugin(name) => f.write_str(name),
        }
    }
}

/// What `prx events` shows of one subscriber.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SubscriberStats {
    pub owner: Owner,
    pub patterns: Vec<(u64, String)>,
    /// Events waiting in its queue.
    pub queued: usize,
    pub delivered: u64,
    /// Events dropped because its queue was full.
    pub dropped: u64,
    /// Events held back because the plugin's own handler caused them, or
    /// their causal chain was too long.
    #[serde(default)]
    pub suppressed: u64,
}

/// The bus; cheap to clone.
#[derive(Debug, Clone)]
pub struct EventBus {
    state: Arc<Mutex<State>>,
    queue: usize,
    max_depth: usize,
    /// In a cluster: where events published here go to reach plugins.
    outbox: Option<Arc<Outbox>>,
}

/// Events on their way to the cluster, from the node named `node`.
#[derive(Debug)]
struct Outbox {
    node: Arc<str>,
    sender: mpsc::Sender<Event>,
    /// Events dropped because the link fell that far behind.
    dropped: AtomicU64,
}

/// Events the link has not sent yet before new ones are dropped.
pub const OUTBOX_QUEUE: usize = 16 * 1024;

/// A host event's JSON object with `"node"` added (an object that has one
/// already, or a payload that is not an object, is kept as it is).
fn stamp_node(payload: &str, node: &str) -> Arc<str> {
    match serde_json::from_str::<serde_json::Value>(payload) {
        Ok(serde_json::Value::Object(mut map)) if !map.contains_key("node") => {
            map.insert("node".into(), node.into());
            serde_json::Value::Object(map).to_string().into()
        }
        _ => payload.into(),
    }
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new(DEFAULT_QUEUE)
    }
}

impl EventBus {
    /// A bus whose subscribers each queue at most `queue` events.
    pub fn new(queue: usize) -> Self {
        Self {
            state: Arc::default(),
            queue: queue.max(1),
            max_depth: DEFAULT_MAX_DEPTH,
            outbox: None,
        }
    }

    /// In a cluster: events published here no longer go to plugins
    /// directly but to the returned queue, for the link to send to every
    /// node (this one included), which hands each to one copy of each
    /// plugin through [`Self::receive_for`]. Host subscriptions here still
    /// get them at once; host events carry `node`.
    pub fn with_cluster(mut self, node: Arc<str>) -> (Self, mpsc::Receiver<Event>) {
        let (sender, receiver) = mpsc::channel(OUTBOX_QUEUE);
        self.outbox = Some(Arc::new(Outbox {
            node,
            sender,
            dropped: AtomicU64::new(0),
        }));
        (self, receiver)
    }

    /// An event from the link for one plugin here (its queue group chose
    /// this node): queued if the plugin's subscriptions match, with the
    /// same chain and depth rules as a local publish. True when queued.
    pub fn receive_for(&self, plugin: &str, event: &Event) -> bool {
        let mut state = self.lock();
        state.fan_out(event, Target::Plugin(plugin), self.max_depth) > 0
    }

    /// An event another node published, for the host subscriptions here.
    pub fn receive_for_hosts(&self, event: &Event) {
        let mut state = self.lock();
        state.fan_out(event, Target::Hosts, self.max_depth);
    }

    /// Whether a host subscription here matches `topic` (another node's
    /// event is read only then).
    pub fn hosts_listen(&self, topic: &str) -> bool {
        let state = self.lock();
        state.subs.values().any(|s| {
            s.pattern.matches(topic)
                && state
                    .inboxes
                    .get(&s.inbox)
                    .is_some_and(|i| i.owner == Owner::Host)
        })
    }

    /// Events dropped on their way to the cluster (the link fell behind).
    pub fn outbox_dropped(&self) -> u64 {
        self.outbox
            .as_ref()
            .map_or(0, |o| o.dropped.load(Ordering::Relaxed))
    }

    /// Events whose causal chain has `max_depth` plugins reach no plugin.
    pub fn with_max_depth(mut self, max_depth: usize) -> Self {
        self.max_depth = max_depth.max(1);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes for a plugin: the payload is checked and `prx.*` refused.
    /// `chain` is the causal chain of the invocation that publishes.
    pub fn publish_from(
        &self,
        plugin: &str,
        topic: &str,
        payload: &str,
        chain: Chain,
    ) -> Result<u64, EventError> {
        check_topic(topic)?;
        if is_reserved(topic) {
            return Err(EventError::Reserved(topic.into()));
        }
        self.publish_checked(Some(plugin.into()), topic, payload, chain)
    }

    /// Publishes as the host (any topic, `prx.*` included).
    pub fn publish(&self, topic: &str, payload: &str) -> Result<u64, EventError> {
        self.publish_caused(topic, payload, no_chain())
    }

    /// Publishes as the host something the handlers in `chain` caused (a
    /// handler's failure, say): those plugins do not receive it.
    pub fn publish_caused(
        &self,
        topic: &str,
        payload: &str,
        chain: Chain,
    ) -> Result<u64, EventError> {
        check_topic(topic)?;
        self.publish_checked(None, topic, payload, chain)
    }

    fn publish_checked(
        &self,
        source: Option<Arc<str>>,
        topic: &str,
        payload: &str,
        chain: Chain,
    ) -> Result<u64, EventError> {
        if payload.len() > MAX_PAYLOAD {
            return Err(EventError::PayloadTooLarge(payload.len()));
        }
        serde_json::from_str::<serde::de::IgnoredAny>(payload)
            .map_err(|e| EventError::InvalidJson(e.to_string()))?;
        let payload = match &self.outbox {
            Some(outbox) if source.is_none() && is_reserved(topic) => {
                stamp_node(payload, &outbox.node)
            }
            _ => payload.into(),
        };
        let mut state = self.lock();
        state.seq += 1;
        state.published += 1;
        let event = Event {
            seq: state.seq,
            topic: topic.into(),
            payload,
            source,
            published_at_ms: crate::clock::now_ms(),
            chain,
        };
        match &self.outbox {
            // In a cluster, plugins everywhere get it through the link
            // (once per plugin, wherever it runs); hosts here get it now.
            Some(outbox) => {
                state.fan_out(&event, Target::Hosts, self.max_depth);
                if outbox.sender.try_send(event.clone()).is_err() {
                    outbox.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                state.fan_out(&event, Target::All, self.max_depth);
            }
        }
        Ok(event.seq)
    }

    /// A host-side subscription; events arrive on the returned handle.
    /// Dropping the handle unsubscribes.
    pub fn subscribe(&self, pattern: &str) -> Result<Subscription, EventError> {
        let pattern = Pattern::parse(pattern)?;
        let (sender, receiver) = mpsc::channel(self.queue);
        let dropped = Arc::new(AtomicU64::new(0));
        let mut state = self.lock();
        let inbox = state.add_inbox(Owner::Host, sender, dropped.clone());
        let id = state.add_sub(inbox, pattern, false);
        Ok(Subscription {
            id,
            receiver,
            dropped,
            bus: self.clone(),
            inbox,
        })
    }

    /// A plugin subscribes at run time (`events.subscribe`); the
    /// subscription ends with the worker instance. Returns its id.
    pub fn subscribe_plugin(&self, plugin: &str, pattern: &str) -> Result<u64, EventError> {
        self.subscribe_plugin_as(plugin, pattern, false)
    }

    /// A subscription from a plugin's manifest: it lasts as long as the
    /// plugin does, across worker restarts.
    pub fn subscribe_plugin_fixed(&self, plugin: &str, pattern: &str) -> Result<u64, EventError> {
        self.subscribe_plugin_as(plugin, pattern, true)
    }

    fn subscribe_plugin_as(
        &self,
        plugin: &str,
        pattern: &str,
        fixed: bool,
    ) -> Result<u64, EventError> {
        let pattern = Pattern::parse(pattern)?;
        let mut state = self.lock();
        let inbox = state.plugin_inbox(plugin, self.queue);
        let held = state.subs.values().filter(|s| s.inbox == inbox).count();
        if held >= MAX_SUBSCRIPTIONS_PER_PLUGIN {
            return Err(EventError::TooManySubscriptions(
                MAX_SUBSCRIPTIONS_PER_PLUGIN,
            ));
        }
        Ok(state.add_sub(inbox, pattern, fixed))
    }

    /// A new version of a plugin replaces its manifest subscriptions with
    /// `patterns`, all at once; its queue, with the events waiting in it,
    /// and its run-time subscriptions stay. Nothing changes when a pattern
    /// is bad.
    pub fn replace_fixed(&self, plugin: &str, patterns: &[&str]) -> Result<(), EventError> {
        let parsed = patterns
            .iter()
            .map(|p| Pattern::parse(p))
            .collect::<Result<Vec<_>, _>>()?;
        let mut state = self.lock();
        let Some((inbox, _)) = state.plugin_inboxes.get(plugin) else {
            drop(state);
            for pattern in patterns {
                self.subscribe_plugin_fixed(plugin, pattern)?;
            }
            return Ok(());
        };
        let inbox = *inbox;
        let kept = state
            .subs
            .values()
            .filter(|s| s.inbox == inbox && !s.fixed)
            .count();
        if kept + parsed.len() > MAX_SUBSCRIPTIONS_PER_PLUGIN {
            return Err(EventError::TooManySubscriptions(
                MAX_SUBSCRIPTIONS_PER_PLUGIN,
            ));
        }
        state.subs.retain(|_, s| s.inbox != inbox || !s.fixed);
        for pattern in parsed {
            state.add_sub(inbox, pattern, true);
        }
        Ok(())
    }

    /// The ids of a plugin's run-time subscriptions (those of its current
    /// instance).
    pub fn runtime_subscriptions(&self, plugin: &str) -> Vec<u64> {
        let state = self.lock();
        state
            .subs_of(plugin)
            .filter(|(_, s)| !s.fixed)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Whether `topic` matches one of the plugin's manifest subscriptions,
    /// and one of its run-time subscriptions: (manifest, run time).
    pub fn matching(&self, plugin: &str, topic: &str) -> (bool, bool) {
        let state = self.lock();
        let (mut fixed, mut runtime) = (false, false);
        for (_, sub) in state
            .subs_of(plugin)
            .filter(|(_, s)| s.pattern.matches(topic))
        {
            fixed |= sub.fixed;
            runtime |= !sub.fixed;
        }
        (fixed, runtime)
    }

    /// A plugin removes one of its own subscriptions.
    pub fn unsubscribe_plugin(&self, plugin: &str, id: u64) -> Result<(), EventError> {
        let mut state = self.lock();
        let inbox = state.plugin_inboxes.get(plugin).map(|(inbox, _)| *inbox);
        match state.subs.get(&id) {
            Some(sub) if Some(sub.inbox) == inbox => {
                state.subs.remove(&id);
                Ok(())
            }
            _ => Err(EventError::NotYours(id)),
        }
    }

    /// A plugin's worker is gone: its run-time subscriptions end (a new
    /// instance subscribes afresh); its manifest subscriptions and the
    /// events already queued for it stay.
    pub fn end_instance(&self, plugin: &str) {
        let mut state = self.lock();
        if let Some((inbox, _)) = state.plugin_inboxes.get(plugin) {
            let inbox = *inbox;
            state.subs.retain(|_, s| s.inbox != inbox || s.fixed);
        }
    }

    /// A plugin is gone for good (unloaded, stopped): every subscription
    /// ends and its queue is closed.
    pub fn remove_plugin(&self, plugin: &str) {
        let mut state = self.lock();
        if let Some((inbox, _)) = state.plugin_inboxes.remove(plugin) {
            state.remove_inbox(inbox);
        }
    }

    /// True when some subscription matches `topic`: a publisher can skip
    /// building a payload nobody would receive.
    pub fn has_subscribers(&self, topic: &str) -> bool {
        // Another node's plugins may listen: only they know.
        self.outbox.is_some() || self.lock().subs.values().any(|s| s.pattern.matches(topic))
    }

    /// Events that reached no plugin because their chain was too long.
    pub fn too_deep(&self) -> u64 {
        self.lock().too_deep
    }

    /// The receiving end of a plugin's queue, for whoever delivers its
    /// events; `None` once taken (or if it never subscribed).
    pub fn take_plugin_queue(&self, plugin: &str) -> Option<mpsc::Receiver<Event>> {
        let mut state = self.lock();
        let queue = self.queue;
        state.plugin_inbox(plugin, queue);
        state
            .plugin_inboxes
            .get_mut(plugin)
            .and_then(|(_, receiver)| receiver.take())
    }

    /// Every subscriber, with its patterns and counters.
    pub fn stats(&self) -> Vec<SubscriberStats> {
        let state = self.lock();
        state
            .inboxes
            .iter()
            .map(|(id, inbox)| SubscriberStats {
                owner: inbox.owner.clone(),
                patterns: state
                    .subs
                    .iter()
                    .filter(|(_, s)| s.inbox == *id)
                    .map(|(sid, s)| (*sid, s.pattern.to_string()))
                    .collect(),
                queued: self.queue - inbox.sender.capacity(),
                delivered: inbox.delivered.load(Ordering::Relaxed),
                dropped: inbox.dropped.load(Ordering::Relaxed),
                suppressed: inbox.suppressed.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Events published since the bus was made.
    pub fn published(&self) -> u64 {
        self.lock().published
    }
}

/// A host-side subscription. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    id: u64,
    receiver: mpsc::Receiver<Event>,
    dropped: Arc<AtomicU64>,
    bus: EventBus,
    inbox: u64,
}

impl Subscription {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The next event; `None` once the bus is gone.
    pub async fn recv(&mut self) -> Option<Event> {
        self.receiver.recv().await
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.receiver.try_recv().ok()
    }

    /// Events this subscription lost because its queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.bus.lock().remove_inbox(self.inbox);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topics::extend;

    #[test]
    fn patterns_match_all_under_or_exactly() {
        let all = Pattern::parse("*").unwrap();
        let under = Pattern::parse("tool.*").unwrap();
        let exact = Pattern::parse("tool.call").unwrap();
        assert!(all.matches("anything.at.all"));
        assert!(under.matches("tool.call") && under.matches("tool.result.late"));
        assert!(!under.matches("tool") && !under.matches("toolbox.call"));
        assert!(exact.matches("tool.call") && !exact.matches("tool.call.x"));
        assert_eq!(under.to_string(), "tool.*");
        for bad in ["", "a.*.b", "a*", "*.a", "a..b", ".a", "a b", "a.**"] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn payloads_must_be_json_of_at_most_64_kib() {
        let bus = EventBus::default();
        let mut sub = bus.subscribe("*").unwrap();
        // A JSON string of exactly 64 KiB is accepted; one byte more is not.
        let fits = format!("\"{}\"", "x".repeat(MAX_PAYLOAD - 2));
        assert_eq!(fits.len(), MAX_PAYLOAD);
        bus.publish_from("p", "a.b", &fits, no_chain()).unwrap();
        let over = format!("\"{}\"", "x".repeat(MAX_PAYLOAD - 1));
        assert_eq!(
            bus.publish_from("p", "a.b", &over, no_chain()),
            Err(EventError::PayloadTooLarge(MAX_PAYLOAD + 1))
        );
        assert!(matches!(
            bus.publish_from("p", "a.b", "{not json", no_chain()),
            Err(EventError::InvalidJson(_))
        ));
        assert!(matches!(
            bus.publish_from("p", "a.b", "", no_chain()),
            Err(EventError::InvalidJson(_))
        ));
        assert_eq!(sub.try_recv().map(|e| e.payload.len()), Some(MAX_PAYLOAD));
        assert_eq!(sub.try_recv(), None, "refused events were delivered");
    }

    #[test]
    fn plugins_cannot_publish_host_topics() {
        let bus = EventBus::default();
        for topic in ["prx", "prx.lifecycle.loaded"] {
            assert_eq!(
                bus.publish_from("p", topic, "{}", no_chain()),
                Err(EventError::Reserved(topic.into()))
            );
            bus.publish(topic, "{}").unwrap();
        }
        // Only the `prx` segment is reserved, not every word starting so.
        bus.publish_from("p", "prxy.status", "{}", no_chain())
            .unwrap();
    }

    #[test]
    fn a_plugin_gets_each_event_once_and_removes_only_its_own_subscriptions() {
        let bus = EventBus::default();
        let a = bus.subscribe_plugin("a", "tool.*").unwrap();
        bus.subscribe_plugin("a", "*").unwrap();
        let b = bus.subscribe_plugin("b", "tool.call").unwrap();
        bus.publish("tool.call", "1").unwrap();
        let mut queue = bus.take_plugin_queue("a").unwrap();
        assert_eq!(&*queue.try_recv().unwrap().topic, "tool.call");
        assert!(queue.try_recv().is_err(), "delivered twice");
        assert!(bus.take_plugin_queue("a").is_none(), "taken twice");

        assert_eq!(bus.unsubscribe_plugin("a", b), Err(EventError::NotYours(b)));
        assert_eq!(
            bus.unsubscribe_plugin("a", 999),
            Err(EventError::NotYours(999))
        );
        bus.unsubscribe_plugin("a", a).unwrap();
        assert_eq!(bus.unsubscribe_plugin("a", a), Err(EventError::NotYours(a)));
        let stats = bus.stats();
        assert_eq!(stats.len(), 2);
        assert_eq!(stats[0].patterns.len(), 1, "{stats:?}");
    }

    #[test]
    fn a_new_version_replaces_manifest_subscriptions_and_keeps_the_queue() {
        let bus = EventBus::default();
        bus.subscribe_plugin_fixed("h", "old.*").unwrap();
        bus.subscribe_plugin("h", "runtime.topic").unwrap();
        bus.publish("old.waiting", "1").unwrap();
        let mut queue = bus.take_plugin_queue("h").unwrap();

        assert!(matches!(
            bus.replace_fixed("h", &["new.*", "bad pattern"]),
            Err(EventError::InvalidPattern { .. })
        ));
        bus.publish("old.still", "2").unwrap();
        bus.replace_fixed("h", &["new.*"]).unwrap();
        for topic in ["old.gone", "new.one", "runtime.topic"] {
            bus.publish(topic, "3").unwrap();
        }
        let got: Vec<String> = std::iter::from_fn(|| queue.try_recv().ok())
            .map(|e| e.topic.to_string())
            .collect();
        assert_eq!(
            got,
            ["old.waiting", "old.still", "new.one", "runtime.topic"]
        );
    }

    #[test]
    fn a_plugin_cannot_hold_unbounded_subscriptions() {
        let bus = EventBus::default();
        for _ in 0..MAX_SUBSCRIPTIONS_PER_PLUGIN {
            bus.subscribe_plugin("p", "a.b").unwrap();
        }
        assert_eq!(
            bus.subscribe_plugin("p", "a.b"),
            Err(EventError::TooManySubscriptions(
                MAX_SUBSCRIPTIONS_PER_PLUGIN
            ))
        );
        bus.remove_plugin("p");
        assert!(bus.stats().is_empty());
        bus.subscribe_plugin("p", "a.b").unwrap();
    }

    #[test]
    fn a_subscriber_that_never_reads_loses_events_without_slowing_the_publisher() {
        let bus = EventBus::new(8);
        let stalled = bus.subscribe("load.*").unwrap();
        let mut reader = bus.subscribe("load.test").unwrap();
        let mut seen = 0;
        for i in 0..10_000 {
            bus.publish("load.test", &i.to_string()).unwrap();
            while reader.try_recv().is_some() {
                seen += 1;
            }
        }
        assert_eq!(seen, 10_000, "the reading subscriber lost events");
        assert_eq!(stalled.dropped(), 10_000 - 8);
        let stats = bus.stats();
        let s = stats.iter().find(|s| s.dropped > 0).unwrap();
        assert_eq!((s.queued, s.delivered, s.dropped), (8, 8, 9_992));
    }

    #[tokio::test]
    async fn events_arrive_in_publish_order_and_dropping_the_handle_unsubscribes() {
        let bus = EventBus::default();
        let mut sub = bus.subscribe("a.*").unwrap();
        for i in 0..5 {
            bus.publish_from("p", "a.x", &i.to_string(), no_chain())
                .unwrap();
        }
        bus.publish("b.x", "0").unwrap();
        for i in 0..5 {
            let e = sub.recv().await.unwrap();
            assert_eq!(&*e.payload, i.to_string());
            assert_eq!(e.source.as_deref(), Some("p"));
        }
        assert!(sub.try_recv().is_none());
        drop(sub);
        assert!(bus.stats().is_empty());
        assert_eq!(bus.published(), 6);
    }

    #[test]
    fn a_handler_never_hears_its_own_echo_and_long_chains_stop() {
        let bus = EventBus::default().with_max_depth(3);
        bus.subscribe_plugin("a", "*").unwrap();
        bus.subscribe_plugin("b", "*").unwrap();
        let mut a = bus.take_plugin_queue("a").unwrap();
        let mut b = bus.take_plugin_queue("b").unwrap();
        let mut host = bus.subscribe("*").unwrap();
        let name = |n: &str| -> Arc<str> { n.into() };
        // a's handler publishes: b gets it, a does not.
        let from_a = extend(&no_chain(), &name("a"));
        bus.publish_from("a", "x.y", "1", from_a.clone()).unwrap();
        assert!(a.try_recv().is_err(), "a heard its own echo");
        assert_eq!(&*b.try_recv().unwrap().chain, &*from_a);
        // b's handler answers: a is in the chain, so neither gets it.
        let from_ab = extend(&from_a, &name("b"));
        bus.publish_from("b", "x.z", "2", from_ab.clone()).unwrap();
        assert!(a.try_recv().is_err() && b.try_recv().is_err());
        // A chain of three distinct plugins reaches no plugin (c is new).
        bus.subscribe_plugin("c", "*").unwrap();
        let mut c = bus.take_plugin_queue("c").unwrap();
        let from_abd = extend(&from_ab, &name("d"));
        bus.publish_from("d", "x.w", "3", from_abd).unwrap();
        assert!(c.try_recv().is_err(), "a too-long chain was delivered");
        assert_eq!(bus.too_deep(), 1);
        // The host's own subscribers see everything.
        assert_eq!(
            std::iter::from_fn(|| host.try_recv()).count(),
            3,
            "host subscribers are not plugins"
        );
        let stats = bus.stats();
        let suppressed = |who: &str| {
            stats
                .iter()
                .find(|s| s.owner == Owner::Plugin(who.into()))
                .map(|s| s.suppressed)
        };
        assert_eq!(
            (suppressed("a"), suppressed("b"), suppressed("c")),
            (Some(3), Some(2), Some(1))
        );
    }

    #[test]
    fn manifest_subscriptions_and_the_queue_outlive_a_worker() {
        let bus = EventBus::default();
        bus.subscribe_plugin_fixed("h", "audit.*").unwrap();
        bus.subscribe_plugin("h", "other").unwrap();
        let mut queue = bus.take_plugin_queue("h").unwrap();
        bus.publish("audit.one", "1").unwrap();
        bus.end_instance("h");
        bus.publish("audit.two", "2").unwrap();
        bus.publish("other", "3").unwrap();
        let topics: Vec<_> = std::iter::from_fn(|| queue.try_recv().ok())
            .map(|e| e.topic.to_string())
            .collect();
        assert_eq!(topics, ["audit.one", "audit.two"]);
        bus.remove_plugin("h");
        bus.publish("audit.three", "4").unwrap();
        assert!(queue.try_recv().is_err());
        assert!(bus.stats().is_empty());
    }
}
