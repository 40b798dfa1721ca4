//! kv and kv-atomic: a plugin's keys in its own namespace of the store,
//! within its quota; staged apart while a new version is readied.

use prx_ipc::{HostCall, HostReply, HostValue};

use crate::broker::{PluginBroker, staged};
use crate::services::kv::{self, KvStore};

impl PluginBroker {
    /// Serves kv from `store` with a quota in bytes (alone: tests).
    pub fn with_kv(mut self, store: KvStore, quota: u64) -> Self {
        self.kv = Some(store);
        self.kv_quota = quota;
        self
    }

    pub(in crate::broker) async fn kv(&self, call: HostCall) -> HostReply {
        let Some(store) = &self.kv else {
            return self.unavailable(&call);
        };
        let ns = &*self.plugin;
        let function = call.function();
        if self.shared_kv.is_some() {
            let reply = self.kv_shared(call).await;
            return self.reply(function, reply);
        }
        if self.staged.is_on() {
            let reply = self.kv_staged(store, call);
            return self.reply(function, reply);
        }
        let reply = match call {
            HostCall::KvGet { key } => store.get(ns, &key).map(HostValue::OptBytes),
            HostCall::KvListKeys { prefix } => store.list_keys(ns, &prefix).map(HostValue::Strings),
            HostCall::KvSet { key, value } => store
                .set(ns, &key, value, self.kv_quota)
                .await
                .map(|()| HostValue::Unit),
            HostCall::KvDelete { key } => store.delete(ns, &key).await.map(HostValue::Bool),
            HostCall::KvIncrement { key, delta } => store
                .increment(ns, &key, delta, self.kv_quota)
                .await
                .map(HostValue::S64),
            _ => return HostReply::Trap("not a kv call".into()),
        };
        self.reply(function, reply)
    }

    /// kv from the plugin's JetStream bucket, the same on every node; a
    /// version being readied stages its writes as with the embedded store.
    async fn kv_shared(&self, call: HostCall) -> Result<HostValue, kv::KvError> {
        let Some((cluster, bucket)) = &self.shared_kv else {
            return Err(kv::KvError::Storage("no shared kv".into()));
        };
        let (ns, staged, quota) = (&*self.plugin, &self.staged, self.kv_quota);
        // A version being readied leaves the bucket's settings (its size)
        // alone until it takes over.
        let store = bucket
            .get_or_try_init(async || {
                if staged.is_on() {
                    cluster.plugin_kv_as_is(ns, quota).await
                } else {
                    cluster.plugin_kv(ns, quota).await
                }
            })
            .await
            .map_err(|e| kv::KvError::Storage(e.to_string()))?;
        let slot = |key: &str| staged::Slot::new(ns, "", key);
        if !staged.is_on() {
            return match call {
                HostCall::KvGet { key } => store.get(&key).await.map(HostValue::OptBytes),
                HostCall::KvListKeys { prefix } => {
                    store.list_keys(&prefix).await.map(HostValue::Strings)
                }
                HostCall::KvSet { key, value } => {
                    store.set(&key, value).await.map(|()| HostValue::Unit)
                }
                HostCall::KvDelete { key } => store.delete(&key).await.map(HostValue::Bool),
                HostCall::KvIncrement { key, delta } => {
                    store.increment(&key, delta).await.map(HostValue::S64)
                }
                _ => Err(kv::KvError::Storage("not a kv call".into())),
            };
        }
        let read = async |key: &str| match staged.peek(&slot(key)) {
            Some(value) => Ok(value),
            None => {
                let live = store.get(key).await?;
                match staged.delta(&slot(key)) {
                    Some(added) => {
                        let sum = counter(live, key)?.checked_add(added);
                        let sum = sum.ok_or_else(|| kv::KvError::Overflow { key: key.into() })?;
                        Ok(Some(sum.to_string().into_bytes()))
                    }
                    None => Ok(live),
                }
            }
        };
        match call {
            HostCall::KvGet { key } => read(&key).await.map(HostValue::OptBytes),
            HostCall::KvListKeys { prefix } => {
                let live = store.list_keys(&prefix).await?;
                Ok(HostValue::Strings(staged.merge_keys(ns, "", &prefix, live)))
            }
            HostCall::KvSet { key, value } => {
                let live = staged::Live::Usage(store.usage().await?);
                staged
                    .stage(slot(&key), Some(value), live, quota)
                    .map(|()| HostValue::Unit)
            }
            HostCall::KvDelete { key } => {
                let existed = read(&key).await?.is_some();
                let live = staged::Live::Exists(store.get(&key).await?.is_some());
                staged.stage(slot(&key), None, live, quota)?;
                Ok(HostValue::Bool(existed))
            }
            HostCall::KvIncrement { key, delta } => {
                let overflow = || kv::KvError::Overflow { key: key.clone() };
                if let Some(value) = staged.peek(&slot(&key)) {
                    // It wrote this key: its value wins, increments on it.
                    let next = counter(value, &key)?
                        .checked_add(delta)
                        .ok_or_else(overflow)?;
                    let live = staged::Live::Usage(store.usage().await?);
                    staged.stage(slot(&key), Some(next.to_string().into_bytes()), live, quota)?;
                    return Ok(HostValue::S64(next));
                }
                let live = counter(store.get(&key).await?, &key)?;
                let pending = staged.delta(&slot(&key)).unwrap_or(0);
                let next = pending
                    .checked_add(delta)
                    .and_then(|added| live.checked_add(added))
                    .ok_or_else(overflow)?;
                staged.add_delta(slot(&key), delta, quota)?;
                Ok(HostValue::S64(next))
            }
            _ => Err(kv::KvError::Storage("not a kv call".into())),
        }
    }

    /// kv for a version being readied: reads see its own writes over the
    /// live data; writes stay staged until it takes over.
    pub(in crate::broker) fn kv_staged(
        &self,
        store: &KvStore,
        call: HostCall,
    ) -> Result<HostValue, kv::KvError> {
        let (ns, staged, quota) = (&*self.plugin, &self.staged, self.kv_quota);
        let slot = |key: &str| staged::Slot::new(ns, "", key);
        match call {
            HostCall::KvGet { key } => staged.get(store, &slot(&key)).map(HostValue::OptBytes),
            HostCall::KvListKeys { prefix } => {
                staged.list(store, ns, "", &prefix).map(HostValue::Strings)
            }
            HostCall::KvSet { key, value } => staged
                .put(store, slot(&key), Some(value), quota)
                .map(|()| HostValue::Unit),
            HostCall::KvDelete { key } => {
                let existed = staged.get(store, &slot(&key))?.is_some();
                staged.put(store, slot(&key), None, quota)?;
                Ok(HostValue::Bool(existed))
            }
            HostCall::KvIncrement { key, delta } => {
                let next = counter(staged.get(store, &slot(&key))?, &key)?
                    .checked_add(delta)
                    .ok_or_else(|| kv::KvError::Overflow { key: key.clone() })?;
                staged.put(
                    store,
                    slot(&key),
                    Some(next.to_string().into_bytes()),
                    quota,
                )?;
                Ok(HostValue::S64(next))
            }
            _ => Err(kv::KvError::Storage("not a kv call".into())),
        }
    }

    /// This version is being readied beside a live one: its kv and cache
    /// writes are staged from now on.
    pub fn begin_staging(&self) {
        self.staged.begin();
    }

    /// It takes over: what it staged is written to the store, durably,
    /// and its writes go through from now on. A version refused instead
    /// is simply dropped with what it staged.
    pub async fn commit_staged(&self) -> Result<(), String> {
        let mut writes = self.staged.take();
        let deltas = self.staged.take_deltas();
        if let Some((cluster, bucket)) = &self.shared_kv {
            // kv's own keys (no host prefix) live in the bucket; the
            // cache's stay in the embedded store.
            let (shared, local): (Vec<_>, Vec<_>) = writes
                .into_iter()
                .partition(|(slot, _)| slot.prefix.is_empty());
            writes = local;
            if bucket.get().is_some() {
                // It takes over: its quota becomes the bucket's size on the
                // server now (the bucket was opened as it was while it was
                // readied).
                let store = cluster
                    .plugin_kv(&self.plugin, self.kv_quota)
                    .await
                    .map_err(|e| e.to_string())?;
                let failed = |e: kv::KvError| format!("writing what it stored while starting: {e}");
                for (slot, value) in shared {
                    match value {
                        Some(value) => store.set(&slot.key, value).await,
                        None => store.delete(&slot.key).await.map(|_| ()),
                    }
                    .map_err(failed)?;
                }
                // Increments replayed as increments: another node's
                // increments meanwhile are kept.
                for (slot, delta) in deltas {
                    store.increment(&slot.key, delta).await.map_err(failed)?;
                }
            }
        }
        match &self.kv {
            Some(store) if !writes.is_empty() => staged::apply(store, writes, self.kv_quota)
                .await
                .map_err(|e| format!("writing what it stored while starting: {e}")),
            _ => Ok(()),
        }
    }
}

/// A counter's value: 0 when absent, else its decimal text.
fn counter(value: Option<Vec<u8>>, key: &str) -> Result<i64, kv::KvError> {
    match value {
        None => Ok(0),
        Some(bytes) => std::str::from_utf8(&bytes)
            .ok()
            .and_then(|t| t.trim().parse::<i64>().ok())
            .ok_or_else(|| kv::KvError::NotANumber { key: key.into() }),
    }
}
