//! memory: the built-in store, or the storage plugin the operator named
//! as the backend.

use prx_ipc::{HostCall, HostReply, HostValue, MemoryEntry};

use crate::broker::{MemoryBackend, PluginBroker};

impl PluginBroker {
    pub(in crate::broker) async fn memory(&self, call: HostCall) -> HostReply {
        if let Some(route) = &self.storage {
            return self.memory_from_plugin(route.as_ref(), call).await;
        }
        let Some(store) = &self.memory else {
            return self.unavailable(&call);
        };
        let function = call.function();
        let reply = match call {
            HostCall::MemoryStore { text, category } => store
                .store(&self.plugin, &text, &category)
                .await
                .map(HostValue::String),
            // Off the async threads, one at a time per plugin: a recall
            // may read thousands of postings.
            HostCall::MemoryRecall { query, limit } => store
                .recall_for(&self.plugin, &query, limit)
                .await
                .map(|found| {
                    HostValue::Memories(
                        found
                            .into_iter()
                            .map(|r| MemoryEntry {
                                id: r.id,
                                text: r.text,
                                category: r.category,
                                importance: r.importance,
                            })
                            .collect(),
                    )
                }),
            _ => return HostReply::Trap("not a memory call".into()),
        };
        self.reply(function, reply)
    }

    /// Memory served by the operator's storage plugin.
    pub(in crate::broker) async fn memory_from_plugin(
        &self,
        route: &dyn MemoryBackend,
        call: HostCall,
    ) -> HostReply {
        let function = call.function();
        if route.is_served_by(&self.plugin) {
            return HostReply::Err(format!(
                "{function}: this plugin is the memory backend; it cannot call memory (it would call itself)"
            ));
        }
        let chain = self.current_chain();
        let reply = match call {
            HostCall::MemoryStore { text, category } => route
                .store(&text, &category, chain)
                .await
                .map(HostValue::String),
            HostCall::MemoryRecall { query, limit } => {
                route.recall(&query, limit, chain).await.map(|found| {
                    HostValue::Memories(
                        found
                            .into_iter()
                            .map(|m| MemoryEntry {
                                id: m.key,
                                text: m.content,
                                category: m.category,
                                importance: m.score.unwrap_or(0.0),
                            })
                            .collect(),
                    )
                })
            }
            _ => return HostReply::Trap("not a memory call".into()),
        };
        self.reply(function, reply)
    }
}
