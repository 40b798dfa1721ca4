//! Who is in the cluster: the last heartbeat of every node, and which of
//! them are alive (heard from within the expiry, three heartbeats).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::wire::{Announce, PluginAnnounce};

/// A node as `prx cluster` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeView {
    pub node: String,
    /// Heard from within the expiry.
    pub alive: bool,
    /// This supervisor.
    pub local: bool,
    /// Milliseconds since its last heartbeat.
    pub last_seen_ms: u64,
    pub started_at_ms: u64,
    pub plugins: Vec<PluginAnnounce>,
}

#[derive(Debug)]
pub struct Members {
    expiry: Duration,
    nodes: Mutex<BTreeMap<String, (Announce, Instant)>>,
}

/// A node silent this many expiries is forgotten (shown as not alive
/// until then).
const FORGET_AFTER: u32 = 20;

impl Members {
    pub fn new(expiry: Duration) -> Self {
        Self {
            expiry,
            nodes: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (Announce, Instant)>> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A heartbeat arrived (checked already). False when the table is
    /// full ([`super::MAX_PEERS`] nodes) and it is a new node's.
    pub fn heard(&self, announce: Announce) -> bool {
        let mut nodes = self.lock();
        let now = Instant::now();
        nodes.retain(|_, (_, at)| now.duration_since(*at) < self.expiry * FORGET_AFTER);
        if announce.leaving {
            nodes.remove(&announce.node);
        } else if nodes.len() < super::MAX_PEERS || nodes.contains_key(&announce.node) {
            nodes.insert(announce.node.clone(), (announce, now));
        } else {
            return false;
        }
        true
    }

    /// When `node` said it started, by its last heartbeat.
    pub fn started_at(&self, node: &str) -> Option<u64> {
        self.lock().get(node).map(|(a, _)| a.started_at_ms)
    }

    /// The nodes heard from within the expiry.
    pub fn alive(&self) -> Vec<Announce> {
        let now = Instant::now();
        self.lock()
            .values()
            .filter(|(_, at)| now.duration_since(*at) < self.expiry)
            .map(|(a, _)| a.clone())
            .collect()
    }

    /// Every node heard from recently; `local` names this one.
    pub fn view(&self, local: &str) -> Vec<NodeView> {
        let now = Instant::now();
        self.lock()
            .values()
            .map(|(a, at)| {
                let age = now.duration_since(*at);
                NodeView {
                    node: a.node.clone(),
                    alive: age < self.expiry,
                    local: a.node == local,
                    last_seen_ms: age.as_millis() as u64,
                    started_at_ms: a.started_at_ms,
                    plugins: a.plugins.clone(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announce(node: &str, leaving: bool) -> Announce {
        Announce {
            node: node.into(),
            started_at_ms: 0,
            leaving,
            plugins: Vec::new(),
        }
    }

    #[test]
    fn a_silent_node_is_no_longer_alive_and_a_leaving_one_is_gone() {
        let members = Members::new(Duration::from_millis(50));
        members.heard(announce("a", false));
        members.heard(announce("b", false));
        assert_eq!(members.alive().len(), 2);
        members.heard(announce("b", true));
        assert_eq!(members.view("a").len(), 1);
        std::thread::sleep(Duration::from_millis(60));
        assert!(members.alive().is_empty());
        let view = members.view("a");
        assert!(!view[0].alive && view[0].local);
    }
}
