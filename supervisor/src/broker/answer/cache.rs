//! cache: named namespaces of a plugin's entries, kept in the kv store
//! under a prefix the host puts before each key; staged like kv while a
//! new version is readied.

use prx_ipc::{HostCall, HostReply, HostValue};

use crate::broker::{PluginBroker, staged};
use crate::services::kv::{self, KvStore};

// The cache's prefix must fit under the store's limit for host prefixes,
// or its keys would again be cut short.
const _: () = assert!(MAX_CACHE_NAMESPACE < kv::MAX_KEY_PREFIX_LEN);

/// Longest cache namespace and key.
pub const MAX_CACHE_NAMESPACE: usize = 64;

pub const MAX_CACHE_KEY: usize = kv::MAX_KEY_LEN;

/// Separates namespace and key in the kv store; refused inside both.
pub(in crate::broker) const CACHE_SEPARATOR: char = '\u{1f}';

/// What the host puts before a cache key in the kv store, once the
/// namespace and the plugin's `key` are checked (`""` for the whole
/// namespace). The prefix does not count against the key's limit.
pub(in crate::broker) fn cache_prefix(namespace: &str, key: &str) -> Result<String, String> {
    if namespace.is_empty()
        || namespace.len() > MAX_CACHE_NAMESPACE
        || !namespace
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(format!(
            "namespace {namespace:?} must be 1 to {MAX_CACHE_NAMESPACE} letters, digits, `_`, `-` or `.`"
        ));
    }
    if key.len() > MAX_CACHE_KEY || key.contains(CACHE_SEPARATOR) {
        return Err(format!(
            "key of {} bytes: keys are at most {MAX_CACHE_KEY} bytes, without U+001F",
            key.len()
        ));
    }
    Ok(format!("{namespace}{CACHE_SEPARATOR}"))
}

impl PluginBroker {
    /// The kv namespace holding this plugin's cache.
    pub(in crate::broker) fn cache_namespace(&self) -> String {
        format!("{}{CACHE_SEPARATOR}cache", self.plugin)
    }

    pub(in crate::broker) async fn cache(&self, call: HostCall) -> HostReply {
        let Some(store) = &self.kv else {
            return self.unavailable(&call);
        };
        let function = call.function();
        if self.staged.is_on() {
            let reply = self.cache_staged(store, call);
            return self.reply(function, reply);
        }
        let ns = self.cache_namespace();
        let reply = match call {
            HostCall::CacheGet { namespace, key } => match cache_prefix(&namespace, &key) {
                Ok(prefix) => store
                    .get_under(&ns, &prefix, &key)
                    .map(HostValue::OptBytes)
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e),
            },
            HostCall::CachePut {
                namespace,
                key,
                value,
            } => match cache_prefix(&namespace, &key) {
                Ok(prefix) => store
                    .set_under(&ns, &prefix, &key, value, self.kv_quota)
                    .await
                    .map(|()| HostValue::Unit)
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e),
            },
            HostCall::CacheClear { namespace } => match cache_prefix(&namespace, "") {
                Ok(prefix) => match store.list_keys(&ns, &prefix) {
                    // Deleted together, so the store makes them durable in
                    // one batch rather than one sync each.
                    Ok(keys) => {
                        let mut deletes = tokio::task::JoinSet::new();
                        for key in keys {
                            let (store, ns, prefix) = (store.clone(), ns.clone(), prefix.clone());
                            deletes.spawn(async move {
                                match key.strip_prefix(prefix.as_str()) {
                                    Some(own) => store.delete_under(&ns, &prefix, own).await,
                                    None => Ok(false),
                                }
                            });
                        }
                        let mut removed = 0u64;
                        let mut failed = None;
                        while let Some(done) = deletes.join_next().await {
                            match done {
                                Ok(Ok(found)) => removed += u64::from(found),
                                Ok(Err(e)) => failed = Some(e.to_string()),
                                Err(e) => failed = Some(e.to_string()),
                            }
                        }
                        match failed {
                            None => Ok(HostValue::U64(removed)),
                            Some(e) => Err(e),
                        }
                    }
                    Err(e) => Err(e.to_string()),
                },
                Err(e) => Err(e),
            },
            _ => return HostReply::Trap("not a cache call".into()),
        };
        self.reply(function, reply)
    }

    /// The cache for a version being readied, staged like its kv.
    pub(in crate::broker) fn cache_staged(
        &self,
        store: &KvStore,
        call: HostCall,
    ) -> Result<HostValue, String> {
        let (ns, staged, quota) = (self.cache_namespace(), &self.staged, self.kv_quota);
        match call {
            HostCall::CacheGet { namespace, key } => {
                let prefix = cache_prefix(&namespace, &key)?;
                staged
                    .get(store, &staged::Slot::new(&ns, &prefix, &key))
                    .map(HostValue::OptBytes)
                    .map_err(|e| e.to_string())
            }
            HostCall::CachePut {
                namespace,
                key,
                value,
            } => {
                let prefix = cache_prefix(&namespace, &key)?;
                staged
                    .put(
                        store,
                        staged::Slot::new(&ns, &prefix, &key),
                        Some(value),
                        quota,
                    )
                    .map(|()| HostValue::Unit)
                    .map_err(|e| e.to_string())
            }
            HostCall::CacheClear { namespace } => {
                let prefix = cache_prefix(&namespace, "")?;
                let keys = staged
                    .list(store, &ns, &prefix, "")
                    .map_err(|e| e.to_string())?;
                for key in &keys {
                    staged
                        .put(store, staged::Slot::new(&ns, &prefix, key), None, quota)
                        .map_err(|e| e.to_string())?;
                }
                Ok(HostValue::U64(keys.len() as u64))
            }
            _ => Err("not a cache call".into()),
        }
    }
}
