//! `prx:host/memory`: long-term memory kept by the host (permission
//! `memory`).

pub use crate::bindings::host::prx::host::memory::MemoryEntry;

/// Stores a memory; returns its id.
pub fn store(text: &str, category: &str) -> Result<String, String> {
    host_call!(
        wasm: crate::bindings::host::prx::host::memory::store(text, category),
        native: crate::testing::memory_store(text, category),
    )
}

/// The entries most relevant to `query`, best first.
pub fn recall(query: &str, limit: u32) -> Result<Vec<MemoryEntry>, String> {
    host_call!(
        wasm: crate::bindings::host::prx::host::memory::recall(query, limit),
        native: crate::testing::memory_recall(query, limit),
    )
}
