//! The `storage` capability: a memory backend the operator selects.
//!
//! When an operator names a storage plugin as the memory backend, every
//! `memory` host call of every plugin, and the host's own memory calls,
//! come here instead of the built-in store.

use serde::{Deserialize, Serialize};

use crate::bindings::storage::exports::prx::plugin::storage_exports as wit;

/// A memory as the backend returns it from a recall.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredMemory {
    pub id: String,
    /// The key it was stored under (what `forget_memory` takes).
    pub key: String,
    pub content: String,
    pub category: String,
    /// When it was stored, as the backend writes time (RFC 3339 is usual).
    pub timestamp: String,
    /// Relevance to the query, higher is better.
    pub score: Option<f64>,
}

/// A storage plugin. Export it with [`crate::export_storage!`].
pub trait Storage {
    fn name() -> String;
    fn store_memory(
        key: &str,
        content: &str,
        category: &str,
        session_id: Option<&str>,
    ) -> Result<(), String>;
    fn recall_memory(
        query: &str,
        limit: u32,
        session_id: Option<&str>,
    ) -> Result<Vec<StoredMemory>, String>;
    /// True when the key existed.
    fn forget_memory(key: &str) -> Result<bool, String>;
    fn count_memories() -> Result<u32, String>;
    /// Polled by the host; `false` makes memory calls fail until it is
    /// `true` again.
    fn health_check() -> bool;
}

impl From<StoredMemory> for wit::MemoryEntry {
    fn from(m: StoredMemory) -> Self {
        Self {
            id: m.id,
            key: m.key,
            content: m.content,
            category: m.category,
            timestamp: m.timestamp,
            score: m.score,
        }
    }
}

/// Exports a [`Storage`] as the plugin's `prx:plugin/storage-exports`.
#[macro_export]
macro_rules! export_storage {
    ($storage:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::bindings::storage::exports::prx::plugin::storage_exports as __wit;
            use $crate::storage::Storage as _;

            struct __PrxStorage;

            impl __wit::Guest for __PrxStorage {
                fn name() -> ::std::string::String {
                    <$storage>::name()
                }

                fn store_memory(
                    key: ::std::string::String,
                    content: ::std::string::String,
                    category: ::std::string::String,
                    session_id: ::std::option::Option<::std::string::String>,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    <$storage>::store_memory(&key, &content, &category, session_id.as_deref())
                }

                fn recall_memory(
                    query: ::std::string::String,
                    limit: u32,
                    session_id: ::std::option::Option<::std::string::String>,
                ) -> ::std::result::Result<::std::vec::Vec<__wit::MemoryEntry>, ::std::string::String>
                {
                    <$storage>::recall_memory(&query, limit, session_id.as_deref())
                        .map(|found| found.into_iter().map(Into::into).collect())
                }

                fn forget_memory(
                    key: ::std::string::String,
                ) -> ::std::result::Result<bool, ::std::string::String> {
                    <$storage>::forget_memory(&key)
                }

                fn count_memories() -> ::std::result::Result<u32, ::std::string::String> {
                    <$storage>::count_memories()
                }

                fn health_check() -> bool {
                    <$storage>::health_check()
                }
            }

            $crate::bindings::storage::__export_storage_world!(
                __PrxStorage with_types_in $crate::bindings::storage
            );
        };

        #[cfg(not(target_arch = "wasm32"))]
        #[doc(hidden)]
        pub fn __prx_storage_name() -> ::std::string::String {
            <$storage as $crate::storage::Storage>::name()
        }
    };
}
