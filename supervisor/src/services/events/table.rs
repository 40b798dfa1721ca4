//! The bus's table: every subscriber's inbox (its queue and counters),
//! every subscription, and the fan-out of one event to the inboxes it is
//! for, with the causal-chain rules.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use super::{Event, Owner};
use crate::topics::Pattern;

/// A subscriber's queue and counters.
#[derive(Debug)]
pub(super) struct Inbox {
    pub(super) owner: Owner,
    pub(super) sender: mpsc::Sender<Event>,
    pub(super) delivered: AtomicU64,
    pub(super) dropped: Arc<AtomicU64>,
    /// Events held back by the recursion protection.
    pub(super) suppressed: AtomicU64,
}

#[derive(Debug)]
pub(super) struct Sub {
    pub(super) inbox: u64,
    pub(super) pattern: Pattern,
    /// From the manifest: kept when the plugin's worker is replaced.
    pub(super) fixed: bool,
}

#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) next_id: u64,
    pub(super) seq: u64,
    /// Subscription id to subscription, in subscription order.
    pub(super) subs: BTreeMap<u64, Sub>,
    pub(super) inboxes: BTreeMap<u64, Inbox>,
    /// A plugin's inbox id, and the receiving end until the plugin's
    /// event handler takes it.
    pub(super) plugin_inboxes: BTreeMap<String, (u64, Option<mpsc::Receiver<Event>>)>,
    pub(super) published: u64,
    /// Events that reached no plugin because their chain was too long.
    pub(super) too_deep: u64,
}

/// Whose inboxes an event goes to.
#[derive(Debug, Clone, Copy)]
pub(super) enum Target<'a> {
    All,
    /// The host's subscriptions only.
    Hosts,
    /// One plugin's inbox only.
    Plugin(&'a str),
}

impl State {
    /// Queues `event` for every matching inbox of `target`: each inbox
    /// once, in the order of its first matching subscription; never for a
    /// plugin in its chain, nor for any plugin when the chain is
    /// `max_depth` long. Returns how many inboxes took it.
    pub(super) fn fan_out(&mut self, event: &Event, target: Target<'_>, max_depth: usize) -> usize {
        let topic = &*event.topic;
        let too_deep = event.chain.len() >= max_depth;
        let mut targets: Vec<u64> = Vec::new();
        for sub in self.subs.values() {
            if sub.pattern.matches(topic) && !targets.contains(&sub.inbox) {
                targets.push(sub.inbox);
            }
        }
        let mut closed = Vec::new();
        let (mut held_back, mut queued) = (0, 0);
        for id in targets {
            let Some(inbox) = self.inboxes.get(&id) else {
                continue;
            };
            let wanted = match (target, &inbox.owner) {
                (Target::All, _) | (Target::Hosts, Owner::Host) => true,
                (Target::Plugin(want), Owner::Plugin(name)) => want == name,
                _ => false,
            };
            if !wanted {
                continue;
            }
            if let Owner::Plugin(name) = &inbox.owner
                && (too_deep || event.chain.iter().any(|p| **p == **name))
            {
                inbox.suppressed.fetch_add(1, Ordering::Relaxed);
                held_back += 1;
                continue;
            }
            match inbox.sender.try_send(event.clone()) {
                Ok(()) => {
                    inbox.delivered.fetch_add(1, Ordering::Relaxed);
                    queued += 1;
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    inbox.dropped.fetch_add(1, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => closed.push(id),
            }
        }
        for id in closed {
            self.remove_inbox(id);
        }
        if too_deep && held_back > 0 {
            self.too_deep += 1;
            tracing::warn!(topic, plugin = event.source.as_deref(), chain = ?event.chain, max_depth,
                "event not delivered to {held_back} plugin(s): its causal chain is too long (a loop between plugins?)");
        } else if held_back > 0 {
            tracing::debug!(topic, plugin = event.source.as_deref(), chain = ?event.chain,
                "event not delivered to {held_back} plugin(s) whose own handler caused it");
        }
        queued
    }

    /// The subscriptions of a plugin (none when it has no inbox).
    pub(super) fn subs_of(&self, plugin: &str) -> impl Iterator<Item = (&u64, &Sub)> {
        let inbox = self.plugin_inboxes.get(plugin).map(|(inbox, _)| *inbox);
        self.subs
            .iter()
            .filter(move |(_, s)| Some(s.inbox) == inbox)
    }

    pub(super) fn add_inbox(
        &mut self,
        owner: Owner,
        sender: mpsc::Sender<Event>,
        dropped: Arc<AtomicU64>,
    ) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        let inbox = Inbox {
            owner,
            sender,
            delivered: AtomicU64::new(0),
            dropped,
            suppressed: AtomicU64::new(0),
        };
        self.inboxes.insert(id, inbox);
        id
    }

    pub(super) fn add_sub(&mut self, inbox: u64, pattern: Pattern, fixed: bool) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.subs.insert(
            id,
            Sub {
                inbox,
                pattern,
                fixed,
            },
        );
        id
    }

    pub(super) fn plugin_inbox(&mut self, plugin: &str, queue: usize) -> u64 {
        if let Some((inbox, _)) = self.plugin_inboxes.get(plugin) {
            return *inbox;
        }
        let (sender, receiver) = mpsc::channel(queue);
        let id = self.add_inbox(
            Owner::Plugin(plugin.into()),
            sender,
            Arc::new(AtomicU64::new(0)),
        );
        self.plugin_inboxes
            .insert(plugin.into(), (id, Some(receiver)));
        id
    }

    pub(super) fn remove_inbox(&mut self, inbox: u64) {
        self.inboxes.remove(&inbox);
        self.subs.retain(|_, s| s.inbox != inbox);
    }
}
