//! Memory for the host application: stored, recalled, forgotten and
//! counted in the built-in store, or in the storage plugin the operator
//! named as the backend.

use serde::{Deserialize, Serialize};

use crate::topics::no_chain;

use super::{HOST_MEMORY_OWNER, Supervisor};

/// A memory found by a recall, whichever store served it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryFound {
    pub id: String,
    pub text: String,
    pub category: String,
    /// Relevance: 1.0 for the best match of the built-in store; the
    /// storage plugin's score otherwise.
    pub importance: f64,
    /// Who stored it (the built-in store knows).
    pub plugin: Option<String>,
    /// When it was stored, as the storage plugin writes time.
    pub timestamp: Option<String>,
}

impl Supervisor {
    /// Stores a memory on behalf of the host application; returns its id.
    pub async fn store_memory(&self, text: &str, category: &str) -> Result<String, String> {
        match &self.inner.storage {
            Some(route) => route.store(text, category, None, no_chain()).await,
            None => self
                .inner
                .services
                .memory
                .store(HOST_MEMORY_OWNER, text, category)
                .await
                .map_err(|e| e.to_string()),
        }
    }

    /// The memories most relevant to `query`, best first.
    pub async fn recall_memory(&self, query: &str, limit: u32) -> Result<Vec<MemoryFound>, String> {
        match &self.inner.storage {
            Some(route) => route
                .recall(query, limit, None, no_chain())
                .await
                .map(|found| {
                    found
                        .into_iter()
                        .map(|m| MemoryFound {
                            id: m.key,
                            text: m.content,
                            category: m.category,
                            importance: m.score.unwrap_or(0.0),
                            plugin: None,
                            timestamp: Some(m.timestamp),
                        })
                        .collect()
                }),
            None => self
                .inner
                .services
                .memory
                .recall_for(HOST_MEMORY_OWNER, query, limit)
                .await
                .map(|found| {
                    found
                        .into_iter()
                        .map(|r| MemoryFound {
                            id: r.id,
                            text: r.text,
                            category: r.category,
                            importance: r.importance,
                            plugin: Some(r.plugin),
                            timestamp: None,
                        })
                        .collect()
                })
                .map_err(|e| e.to_string()),
        }
    }

    /// Forgets the memory `id`; true when it existed.
    pub async fn forget_memory(&self, id: &str) -> Result<bool, String> {
        match &self.inner.storage {
            Some(route) => route.forget(id, no_chain()).await,
            None => self
                .inner
                .services
                .memory
                .forget(id)
                .await
                .map_err(|e| e.to_string()),
        }
    }

    /// How many memories are stored.
    pub async fn count_memories(&self) -> Result<u64, String> {
        match &self.inner.storage {
            Some(route) => route.count(no_chain()).await,
            None => self
                .inner
                .services
                .memory
                .count()
                .map_err(|e| e.to_string()),
        }
    }

    /// Where memory is served: `built-in`, or the storage capability's
    /// name with its plugin and health.
    pub fn memory_backend(&self) -> serde_json::Value {
        match &self.inner.storage {
            None => serde_json::json!({ "backend": "built-in" }),
            Some(route) => serde_json::json!({
                "backend": route.name(),
                "plugin": route.plugin().map(|p| p.name.to_string()),
                "healthy": route.is_healthy(),
            }),
        }
    }
}
