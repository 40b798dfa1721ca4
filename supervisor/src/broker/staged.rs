//! The kv writes of a version being readied, kept apart from the live
//! version's until it takes over.
//!
//! A new version's start code and `on-load` run while the old version
//! still serves. Should the new one be refused, nothing it wrote may stay:
//! its writes go here, its reads see them over the live data, and they are
//! applied to the store only when it takes over ([`Staged::take`]).

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::kv::{KvError, KvStore, MAX_KEY_LEN};

/// A key's staged state: a value, or deleted.
type Writes = BTreeMap<String, Option<Vec<u8>>>;

#[derive(Debug, Default)]
pub struct Staged {
    /// `None` when nothing is staged (a running version writes through).
    writes: Mutex<Option<Writes>>,
}

impl Staged {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Writes>> {
        self.writes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// From now on writes are staged.
    pub fn begin(&self) {
        *self.lock() = Some(Writes::new());
    }

    pub fn is_on(&self) -> bool {
        self.lock().is_some()
    }

    /// Ends staging and returns what was written, in key order.
    pub fn take(&self) -> Vec<(String, Option<Vec<u8>>)> {
        self.lock().take().unwrap_or_default().into_iter().collect()
    }

    /// `key`'s value as the readied version sees it.
    pub fn get(&self, store: &KvStore, ns: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        match self.lock().as_ref().and_then(|w| w.get(key)) {
            Some(staged) => Ok(staged.clone()),
            None => store.get(ns, key),
        }
    }

    /// Stages a value (`None`: a delete), within `quota` bytes counted
    /// as the store counts them (keys and values) over the live usage.
    pub fn put(
        &self,
        store: &KvStore,
        ns: &str,
        key: &str,
        value: Option<Vec<u8>>,
        quota: u64,
    ) -> Result<(), KvError> {
        if key.len() > MAX_KEY_LEN {
            return Err(KvError::KeyTooLong(key.len()));
        }
        let live = store.usage(ns)?;
        let mut guard = self.lock();
        let writes = guard.get_or_insert_with(Writes::new);
        let staged: u64 = writes
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k.len() + v.len()) as u64))
            .sum();
        let new = value.as_ref().map_or(0, |v| (key.len() + v.len()) as u64);
        let needed = live.saturating_add(staged).saturating_add(new);
        if value.is_some() && needed > quota {
            return Err(KvError::QuotaExceeded {
                needed: new,
                used: live.saturating_add(staged),
                quota,
            });
        }
        writes.insert(key.to_owned(), value);
        Ok(())
    }

    /// Keys under `prefix` as the readied version sees them.
    pub fn list(&self, store: &KvStore, ns: &str, prefix: &str) -> Result<Vec<String>, KvError> {
        let mut keys: std::collections::BTreeSet<String> =
            store.list_keys(ns, prefix)?.into_iter().collect();
        if let Some(writes) = self.lock().as_ref() {
            for (key, value) in writes.range(prefix.to_owned()..) {
                if !key.starts_with(prefix) {
                    break;
                }
                match value {
                    Some(_) => keys.insert(key.clone()),
                    None => keys.remove(key),
                };
            }
        }
        Ok(keys.into_iter().collect())
    }
}

/// Applies what a readied version staged to the store, now that it takes
/// over: sets and deletes, each durable before this returns.
pub async fn apply(
    store: &KvStore,
    ns: &str,
    writes: Vec<(String, Option<Vec<u8>>)>,
    quota: u64,
) -> Result<(), KvError> {
    for (key, value) in writes {
        match value {
            Some(value) => store.set(ns, &key, value, quota).await?,
            None => {
                store.delete(ns, &key).await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn staged_writes_are_seen_by_their_version_and_reach_the_store_only_when_applied() {
        let store = KvStore::in_memory().expect("store");
        store
            .set("p", "live", b"1".to_vec(), 1 << 20)
            .await
            .expect("set");
        store
            .set("p", "gone", b"2".to_vec(), 1 << 20)
            .await
            .expect("set");
        let staged = Staged::default();
        staged.begin();
        staged
            .put(&store, "p", "new", Some(b"3".to_vec()), 1 << 20)
            .expect("stage");
        staged
            .put(&store, "p", "gone", None, 1 << 20)
            .expect("stage");
        // The readied version sees its own writes over the live data...
        assert_eq!(
            staged.get(&store, "p", "new").expect("get"),
            Some(b"3".to_vec())
        );
        assert_eq!(staged.get(&store, "p", "gone").expect("get"), None);
        assert_eq!(
            staged.get(&store, "p", "live").expect("get"),
            Some(b"1".to_vec())
        );
        assert_eq!(staged.list(&store, "p", "").expect("list"), ["live", "new"]);
        // ...the live version does not...
        assert_eq!(store.get("p", "new").expect("get"), None);
        assert_eq!(store.get("p", "gone").expect("get"), Some(b"2".to_vec()));
        // ...and the quota counts both.
        assert!(matches!(
            staged.put(&store, "p", "big", Some(vec![0; 64]), 16),
            Err(KvError::QuotaExceeded { .. })
        ));
        apply(&store, "p", staged.take(), 1 << 20)
            .await
            .expect("apply");
        assert!(!staged.is_on());
        assert_eq!(store.get("p", "new").expect("get"), Some(b"3".to_vec()));
        assert_eq!(store.get("p", "gone").expect("get"), None);
    }
}
