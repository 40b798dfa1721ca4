//! Memory served by something other than the built-in store: what the
//! broker needs of it, so that it does not need to know it is a plugin.
//!
//! The operator may name a storage plugin as the memory backend; the
//! supervisor's route to that plugin implements this trait, and a
//! plugin's `memory` calls reach it through here.

use std::future::Future;
use std::pin::Pin;

use prx_ipc::StoredMemory;

use crate::topics::Chain;

/// A boxed future, so the trait can be used as `dyn MemoryBackend`.
pub type Answer<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// Where `memory` host calls go when the built-in store does not serve
/// them. `chain` is the causal chain of the call that asks.
pub trait MemoryBackend: Send + Sync + std::fmt::Debug {
    /// True when `plugin` is the backend itself (it may not call memory:
    /// it would call itself).
    fn is_served_by(&self, plugin: &str) -> bool;

    /// Stores a memory; returns its key.
    fn store<'a>(&'a self, content: &'a str, category: &'a str, chain: Chain)
    -> Answer<'a, String>;

    /// At most `limit` memories for `query`, best first.
    fn recall<'a>(
        &'a self,
        query: &'a str,
        limit: u32,
        chain: Chain,
    ) -> Answer<'a, Vec<StoredMemory>>;
}
