//! A storage plugin as the memory backend.
//!
//! When the operator names a storage capability in `[memory] backend`,
//! every memory call (plugins' `memory` host calls and the library's
//! memory functions) goes to that plugin. There is no silent fallback to
//! the built-in store: while the plugin is not loaded, not running, or its
//! last `health-check` said false, memory calls fail with an error that
//! names it, so a caller never believes something was stored that was not.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prx_ipc::{Call, Output, StoredMemory};

use crate::broker::MemoryBackend;
use crate::broker::backend::Answer;
use crate::plugin::{Plugin, Runtime};
use crate::topics::Chain;

/// Where memory calls go when a storage plugin is the backend.
#[derive(Debug)]
pub struct StorageRoute {
    /// The storage capability's name, from the operator's config.
    name: String,
    serving: RwLock<Option<(Arc<Plugin>, Runtime)>>,
    /// The last `health-check` answer (true until one says otherwise).
    healthy: AtomicBool,
}

impl StorageRoute {
    pub fn new(name: String) -> Self {
        Self {
            name,
            serving: RwLock::new(None),
            healthy: AtomicBool::new(true),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The plugin serving the capability `name` has loaded.
    pub fn attach(&self, plugin: Arc<Plugin>, rt: Runtime) {
        self.healthy.store(true, Ordering::SeqCst);
        *self.serving.write().unwrap_or_else(|p| p.into_inner()) = Some((plugin, rt));
    }

    /// The plugin `plugin` no longer serves the capability (unloaded, or
    /// its new version is no longer a storage backend).
    pub fn detach(&self, plugin: &str) {
        let mut serving = self.serving.write().unwrap_or_else(|p| p.into_inner());
        if serving.as_ref().is_some_and(|(p, _)| &*p.name == plugin) {
            *serving = None;
        }
    }

    /// Forgets the serving plugin, whatever it is (the supervisor shuts
    /// down). The route is held by the services the plugin's runtime
    /// holds: until it lets go, neither is freed, nor the kv database
    /// they share.
    pub fn release(&self) {
        *self.serving.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn serving(&self) -> Option<(Arc<Plugin>, Runtime)> {
        self.serving
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The plugin that serves memory, if it is loaded.
    pub fn plugin(&self) -> Option<Arc<Plugin>> {
        self.serving().map(|(p, _)| p)
    }

    /// True when `plugin` is the backend (it may not call memory itself).
    pub fn is_served_by(&self, plugin: &str) -> bool {
        self.plugin().is_some_and(|p| &*p.name == plugin)
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::SeqCst)
    }

    async fn invoke(&self, call: Call, chain: Chain) -> Result<Output, String> {
        let Some((plugin, rt)) = self.serving() else {
            return Err(format!(
                "the memory backend `{}` is not loaded (check `prx plugins`); memory is unavailable until it is",
                self.name
            ));
        };
        if !self.is_healthy() {
            return Err(format!(
                "the memory backend `{}` (plugin `{}`) reports itself unhealthy; memory is unavailable until its health-check passes",
                self.name, plugin.name
            ));
        }
        match plugin.call(&rt, call, chain).await {
            Ok(Output::Refused(error)) => Err(format!(
                "the memory backend `{}` (plugin `{}`) refused: {}",
                self.name,
                plugin.name,
                crate::text::untrusted_text(error)
            )),
            Ok(output) => Ok(output),
            Err(e) => Err(format!("the memory backend `{}` failed: {e}", self.name)),
        }
    }

    /// Stores a memory under a new key; returns the key.
    pub async fn store(
        &self,
        content: &str,
        category: &str,
        session_id: Option<String>,
        chain: Chain,
    ) -> Result<String, String> {
        let key = new_key();
        let call = Call::StorageStore {
            key: key.clone(),
            content: content.into(),
            category: category.into(),
            session_id,
        };
        match self.invoke(call, chain).await? {
            Output::Unit => Ok(key),
            _ => Err(self.wrong_type()),
        }
    }

    pub async fn recall(
        &self,
        query: &str,
        limit: u32,
        session_id: Option<String>,
        chain: Chain,
    ) -> Result<Vec<StoredMemory>, String> {
        let call = Call::StorageRecall {
            query: query.into(),
            limit,
            session_id,
        };
        match self.invoke(call, chain).await? {
            Output::Stored(mut found) => {
                found.truncate(limit as usize);
                Ok(found)
            }
            _ => Err(self.wrong_type()),
        }
    }

    pub async fn forget(&self, key: &str, chain: Chain) -> Result<bool, String> {
        match self
            .invoke(Call::StorageForget { key: key.into() }, chain)
            .await?
        {
            Output::Bool(found) => Ok(found),
            _ => Err(self.wrong_type()),
        }
    }

    pub async fn count(&self, chain: Chain) -> Result<u64, String> {
        match self.invoke(Call::StorageCount, chain).await? {
            Output::Count(n) => Ok(u64::from(n)),
            _ => Err(self.wrong_type()),
        }
    }

    fn wrong_type(&self) -> String {
        format!(
            "the memory backend `{}` answered with the wrong type",
            self.name
        )
    }

    /// Asks the plugin's `health-check` once and records the answer. A
    /// plugin that is not running is unhealthy.
    pub async fn check_health(&self) -> bool {
        let serving = self.serving();
        let plugin_name = serving.as_ref().map(|(p, _)| p.name.to_string());
        let healthy = match serving {
            None => false,
            Some((plugin, rt)) => matches!(
                plugin
                    .call(&rt, Call::StorageHealth, crate::topics::no_chain())
                    .await,
                Ok(Output::Bool(true))
            ),
        };
        let was = self.healthy.swap(healthy, Ordering::SeqCst);
        if was != healthy {
            if healthy {
                tracing::info!(backend = %self.name, plugin = plugin_name, "memory backend healthy again");
            } else {
                tracing::error!(backend = %self.name, plugin = plugin_name, "memory backend unhealthy; memory calls fail until it recovers");
            }
        }
        healthy
    }
}

impl MemoryBackend for StorageRoute {
    fn is_served_by(&self, plugin: &str) -> bool {
        StorageRoute::is_served_by(self, plugin)
    }

    fn store<'a>(
        &'a self,
        content: &'a str,
        category: &'a str,
        chain: Chain,
    ) -> Answer<'a, String> {
        Box::pin(StorageRoute::store(self, content, category, None, chain))
    }

    fn recall<'a>(
        &'a self,
        query: &'a str,
        limit: u32,
        chain: Chain,
    ) -> Answer<'a, Vec<StoredMemory>> {
        Box::pin(StorageRoute::recall(self, query, limit, None, chain))
    }
}

/// Polls the backend's health every `every` until the route is dropped.
pub async fn poll_health(route: std::sync::Weak<StorageRoute>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(route) = route.upgrade() else { return };
        if route.plugin().is_some() {
            route.check_health().await;
        }
    }
}

/// A new memory key: time and randomness, unique enough to never repeat.
fn new_key() -> String {
    format!("mem-{:x}-{:08x}", crate::clock::now_ms(), fastrand::u32(..))
}
