//! The kv and cache writes of a version being readied, kept apart from the
//! live version's until it takes over.
//!
//! A new version's start code and `on-load` run while the old version
//! still serves. Should the new one be refused, nothing it wrote may stay:
//! its writes go here, its reads see them over the live data, and they are
//! applied to the store only when it takes over ([`Staged::take`]).
//!
//! A write is addressed as the store addresses it: a namespace, the host's
//! prefix (empty for kv, the cache namespace for the cache) and the
//! plugin's own key.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use crate::services::kv::{KvError, KvStore, MAX_KEY_LEN};

/// Where a staged write goes in the store.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Slot {
    pub namespace: String,
    pub prefix: String,
    pub key: String,
}

impl Slot {
    pub fn new(namespace: &str, prefix: &str, key: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            prefix: prefix.to_owned(),
            key: key.to_owned(),
        }
    }

    /// Bytes the store counts for this key holding `value`.
    fn counted(&self, value: &[u8]) -> u64 {
        (self.prefix.len() + self.key.len() + value.len()) as u64
    }
}

/// What the live store holds, as staging needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Live {
    /// For a delete: whether the key exists.
    Exists(bool),
    /// For a value: the namespace's bytes in use.
    Usage(u64),
}

/// A slot's staged state: a value, or deleted.
type Writes = BTreeMap<Slot, Option<Vec<u8>>>;

#[derive(Debug, Default)]
pub struct Staged {
    /// `None` when nothing is staged (a running version writes through).
    writes: Mutex<Option<Writes>>,
    /// Increments of keys it did not otherwise write, kept as what they
    /// add (for a store other nodes write too: replayed as increments, they
    /// lose none of theirs).
    deltas: Mutex<BTreeMap<Slot, i64>>,
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

    /// Ends staging and returns what was written, in slot order.
    pub fn take(&self) -> Vec<(Slot, Option<Vec<u8>>)> {
        self.lock().take().unwrap_or_default().into_iter().collect()
    }

    fn deltas(&self) -> std::sync::MutexGuard<'_, BTreeMap<Slot, i64>> {
        self.deltas.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends staging of increments and returns them (after [`Self::take`]'s
    /// writes, they are applied as increments).
    pub fn take_deltas(&self) -> Vec<(Slot, i64)> {
        std::mem::take(&mut *self.deltas()).into_iter().collect()
    }

    /// What the readied version added to `slot` by increments alone.
    pub fn delta(&self, slot: &Slot) -> Option<i64> {
        self.deltas().get(slot).copied()
    }

    /// Adds `delta` to what the readied version added to `slot`; returns
    /// the sum. Each key counts against `quota` (its bytes and 20 for the
    /// number), so the map stays bounded.
    pub fn add_delta(&self, slot: Slot, delta: i64, quota: u64) -> Result<i64, KvError> {
        if slot.key.len() > MAX_KEY_LEN {
            return Err(KvError::KeyTooLong(slot.key.len()));
        }
        let mut deltas = self.deltas();
        if !deltas.contains_key(&slot) {
            let used: u64 = deltas.keys().map(|s| s.counted(&[0; 20])).sum();
            let needed = slot.counted(&[0; 20]);
            if used.saturating_add(needed) > quota {
                return Err(KvError::QuotaExceeded {
                    needed,
                    used,
                    quota,
                });
            }
        }
        let sum = deltas.entry(slot.clone()).or_default();
        *sum = sum.checked_add(delta).ok_or_else(|| KvError::Overflow {
            key: slot.key.clone(),
        })?;
        Ok(*sum)
    }

    /// `slot`'s value as the readied version sees it.
    pub fn get(&self, store: &KvStore, slot: &Slot) -> Result<Option<Vec<u8>>, KvError> {
        match self.lock().as_ref().and_then(|w| w.get(slot)) {
            Some(staged) => Ok(staged.clone()),
            None => store.get_under(&slot.namespace, &slot.prefix, &slot.key),
        }
    }

    /// Stages a value (`None`: a delete), within `quota` bytes of the
    /// slot's namespace, counted as the store counts them (stored keys and
    /// values) over the live usage; a value replacing one staged for the
    /// same slot is counted once.
    ///
    /// A delete is kept only for a key the store holds: deleting what
    /// exists nowhere stages nothing, so a readied version cannot grow the
    /// supervisor's memory with deletes of made-up keys (its values are
    /// bounded by the quota, its deletes by what the store already holds).
    pub fn put(
        &self,
        store: &KvStore,
        slot: Slot,
        value: Option<Vec<u8>>,
        quota: u64,
    ) -> Result<(), KvError> {
        if slot.key.len() > MAX_KEY_LEN {
            return Err(KvError::KeyTooLong(slot.key.len()));
        }
        let live = match &value {
            None => Live::Exists(
                store
                    .get_under(&slot.namespace, &slot.prefix, &slot.key)?
                    .is_some(),
            ),
            Some(_) => Live::Usage(store.usage(&slot.namespace)?),
        };
        self.stage(slot, value, live, quota)
    }

    /// [`Self::put`] with what the store holds already said by the caller
    /// (a store that is not the embedded one): for a delete, whether the
    /// key exists; for a value, the namespace's bytes in use.
    pub fn stage(
        &self,
        slot: Slot,
        value: Option<Vec<u8>>,
        live: Live,
        quota: u64,
    ) -> Result<(), KvError> {
        if slot.key.len() > MAX_KEY_LEN {
            return Err(KvError::KeyTooLong(slot.key.len()));
        }
        let mut guard = self.lock();
        let writes = guard.get_or_insert_with(Writes::new);
        let (value, live) = match (value, live) {
            (Some(value), Live::Usage(live)) => (value, live),
            (None, Live::Exists(exists)) => {
                // A delete staged over increments replaces them.
                self.deltas().remove(&slot);
                if exists {
                    writes.insert(slot, None);
                } else {
                    writes.remove(&slot);
                }
                return Ok(());
            }
            _ => {
                return Err(KvError::Storage(
                    "staging a value needs the usage, a delete whether the key exists".into(),
                ));
            }
        };
        let staged: u64 = writes
            .iter()
            .filter(|(s, _)| s.namespace == slot.namespace && **s != slot)
            .filter_map(|(s, v)| v.as_ref().map(|v| s.counted(v)))
            .sum();
        let new = slot.counted(&value);
        if live.saturating_add(staged).saturating_add(new) > quota {
            return Err(KvError::QuotaExceeded {
                needed: new,
                used: live.saturating_add(staged),
                quota,
            });
        }
        // A value staged over increments replaces them (once accepted).
        self.deltas().remove(&slot);
        writes.insert(slot, Some(value));
        Ok(())
    }

    /// What is staged at `slot`: `Some(None)` for a staged delete, `None`
    /// when nothing is (the live value stands).
    pub fn peek(&self, slot: &Slot) -> Option<Option<Vec<u8>>> {
        self.lock().as_ref().and_then(|w| w.get(slot).cloned())
    }

    /// `live` keys (the plugin's, under `start`) as the readied version
    /// sees them, with what it staged.
    pub fn merge_keys(
        &self,
        namespace: &str,
        prefix: &str,
        start: &str,
        live: Vec<String>,
    ) -> Vec<String> {
        let mut keys: BTreeSet<String> = live.into_iter().collect();
        // A counter it created by increments alone exists for it too.
        for slot in self.deltas().keys() {
            if slot.namespace == namespace && slot.prefix == prefix && slot.key.starts_with(start) {
                keys.insert(slot.key.clone());
            }
        }
        if let Some(writes) = self.lock().as_ref() {
            for (slot, value) in writes.range(Slot::new(namespace, prefix, start)..) {
                if slot.namespace != namespace
                    || slot.prefix != prefix
                    || !slot.key.starts_with(start)
                {
                    break;
                }
                match value {
                    Some(_) => keys.insert(slot.key.clone()),
                    None => keys.remove(&slot.key),
                };
            }
        }
        keys.into_iter().collect()
    }

    /// The plugin's keys under `prefix` + `start` in `namespace`, as the
    /// readied version sees them (without the host's prefix).
    pub fn list(
        &self,
        store: &KvStore,
        namespace: &str,
        prefix: &str,
        start: &str,
    ) -> Result<Vec<String>, KvError> {
        let live = store
            .list_keys(namespace, &[prefix, start].concat())?
            .into_iter()
            .filter_map(|stored| stored.strip_prefix(prefix).map(str::to_owned))
            .collect();
        Ok(self.merge_keys(namespace, prefix, start, live))
    }
}

/// Applies what a readied version staged to the store, now that it takes
/// over: sets and deletes, each durable before this returns.
pub async fn apply(
    store: &KvStore,
    writes: Vec<(Slot, Option<Vec<u8>>)>,
    quota: u64,
) -> Result<(), KvError> {
    for (slot, value) in writes {
        let Slot {
            namespace,
            prefix,
            key,
        } = &slot;
        match value {
            Some(value) => {
                store
                    .set_under(namespace, prefix, key, value, quota)
                    .await?
            }
            None => {
                store.delete_under(namespace, prefix, key).await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOM: u64 = 1 << 20;

    fn kv(key: &str) -> Slot {
        Slot::new("p", "", key)
    }

    #[test]
    fn increments_are_kept_as_what_they_add_until_a_write_replaces_them() {
        let staged = Staged::default();
        staged.begin();
        assert_eq!(staged.add_delta(kv("n"), 2, 1 << 20), Ok(2));
        assert_eq!(staged.add_delta(kv("n"), 3, 1 << 20), Ok(5));
        assert_eq!(staged.delta(&kv("n")), Some(5));
        // A counter made by increments alone is listed.
        assert_eq!(staged.merge_keys("p", "", "", vec!["a".into()]), ["a", "n"]);
        // A write refused for the quota leaves the increments; one taken
        // replaces them.
        let big = Some(vec![0; 100]);
        assert!(staged.stage(kv("n"), big, Live::Usage(0), 10).is_err());
        assert_eq!(staged.delta(&kv("n")), Some(5));
        staged
            .stage(kv("n"), Some(b"7".to_vec()), Live::Usage(0), 1 << 20)
            .unwrap();
        assert_eq!(staged.delta(&kv("n")), None);
        assert_eq!(staged.add_delta(kv("m"), i64::MAX, 1 << 20), Ok(i64::MAX));
        assert!(staged.add_delta(kv("m"), 1, 1 << 20).is_err(), "overflow");
        // The map of increments is held to the quota.
        assert!(matches!(
            staged.add_delta(kv("x"), 1, 10),
            Err(KvError::QuotaExceeded { .. })
        ));
        assert_eq!(staged.take_deltas(), vec![(kv("m"), i64::MAX)]);
        assert!(staged.take_deltas().is_empty());
    }

    #[tokio::test]
    async fn staged_writes_are_seen_by_their_version_and_reach_the_store_only_when_applied() {
        let store = KvStore::in_memory().expect("store");
        store
            .set("p", "live", b"1".to_vec(), ROOM)
            .await
            .expect("set");
        store
            .set("p", "gone", b"2".to_vec(), ROOM)
            .await
            .expect("set");
        let staged = Staged::default();
        staged.begin();
        staged
            .put(&store, kv("new"), Some(b"3".to_vec()), ROOM)
            .expect("stage");
        staged.put(&store, kv("gone"), None, ROOM).expect("stage");
        // The readied version sees its own writes over the live data...
        assert_eq!(
            staged.get(&store, &kv("new")).expect("get"),
            Some(b"3".to_vec())
        );
        assert_eq!(staged.get(&store, &kv("gone")).expect("get"), None);
        assert_eq!(
            staged.get(&store, &kv("live")).expect("get"),
            Some(b"1".to_vec())
        );
        assert_eq!(
            staged.list(&store, "p", "", "").expect("list"),
            ["live", "new"]
        );
        // ...the live version does not...
        assert_eq!(store.get("p", "new").expect("get"), None);
        assert_eq!(store.get("p", "gone").expect("get"), Some(b"2".to_vec()));
        // ...and the quota counts both.
        assert!(matches!(
            staged.put(&store, kv("big"), Some(vec![0; 64]), 16),
            Err(KvError::QuotaExceeded { .. })
        ));
        apply(&store, staged.take(), ROOM).await.expect("apply");
        assert!(!staged.is_on());
        assert_eq!(store.get("p", "new").expect("get"), Some(b"3".to_vec()));
        assert_eq!(store.get("p", "gone").expect("get"), None);
    }

    #[tokio::test]
    async fn prefixed_writes_stay_under_their_prefix_and_namespace() {
        let store = KvStore::in_memory().expect("store");
        store
            .set_under("c", "a\u{1f}", "old", b"1".to_vec(), ROOM)
            .await
            .expect("set");
        let staged = Staged::default();
        staged.begin();
        let slot = Slot::new("c", "a\u{1f}", "k");
        staged
            .put(&store, slot.clone(), Some(b"v".to_vec()), ROOM)
            .expect("stage");
        staged
            .put(
                &store,
                Slot::new("c", "b\u{1f}", "k"),
                Some(b"w".to_vec()),
                ROOM,
            )
            .expect("stage");
        staged
            .put(&store, Slot::new("c", "a\u{1f}", "old"), None, ROOM)
            .expect("stage");
        // Listed without the host's prefix, one prefix at a time.
        assert_eq!(
            staged.list(&store, "c", "a\u{1f}", "").expect("list"),
            ["k"]
        );
        assert_eq!(
            staged.list(&store, "c", "b\u{1f}", "").expect("list"),
            ["k"]
        );
        // The same key in another namespace or under no prefix is another key.
        assert_eq!(staged.get(&store, &kv("k")).expect("get"), None);
        assert_eq!(store.get_under("c", "a\u{1f}", "k").expect("get"), None);
        apply(&store, staged.take(), ROOM).await.expect("apply");
        assert_eq!(
            store.get_under("c", "a\u{1f}", "k").expect("get"),
            Some(b"v".to_vec())
        );
        assert_eq!(store.get_under("c", "a\u{1f}", "old").expect("get"), None);
    }

    #[tokio::test]
    async fn deletes_of_keys_the_store_lacks_stage_nothing_and_a_rewrite_counts_once() {
        let store = KvStore::in_memory().expect("store");
        store
            .set("p", "live", b"1".to_vec(), ROOM)
            .await
            .expect("set");
        let staged = Staged::default();
        staged.begin();
        // A flood of deletes of made-up keys leaves no trace in memory.
        for i in 0..1000 {
            staged
                .put(&store, kv(&format!("nothing-{i}")), None, ROOM)
                .expect("stage");
        }
        // A value staged then deleted is simply gone again.
        staged
            .put(&store, kv("new"), Some(b"3".to_vec()), ROOM)
            .expect("stage");
        staged.put(&store, kv("new"), None, ROOM).expect("stage");
        assert_eq!(staged.get(&store, &kv("new")).expect("get"), None);
        // A delete of a live key is kept.
        staged.put(&store, kv("live"), None, ROOM).expect("stage");
        // "k" + 4 bytes fit in the 5 bytes left over the live key's 5;
        // writing it again replaces it rather than counting it twice.
        let quota = 10;
        staged
            .put(&store, kv("k"), Some(b"abcd".to_vec()), quota)
            .expect("fits");
        staged
            .put(&store, kv("k"), Some(b"wxyz".to_vec()), quota)
            .expect("still fits");
        let writes = staged.take();
        assert_eq!(
            writes,
            [(kv("k"), Some(b"wxyz".to_vec())), (kv("live"), None)]
        );
    }
}
