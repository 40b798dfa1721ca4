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
                let current = match staged.get(store, &slot(&key))? {
                    None => 0,
                    Some(bytes) => std::str::from_utf8(&bytes)
                        .ok()
                        .and_then(|t| t.trim().parse::<i64>().ok())
                        .ok_or_else(|| kv::KvError::NotANumber { key: key.clone() })?,
                };
                let next = current
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
        let writes = self.staged.take();
        match &self.kv {
            Some(store) if !writes.is_empty() => staged::apply(store, writes, self.kv_quota)
                .await
                .map_err(|e| format!("writing what it stored while starting: {e}")),
            _ => Ok(()),
        }
    }
}
