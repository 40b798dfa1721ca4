//! The plugins' key-value store: one redb database, one namespace per
//! plugin.
//!
//! The namespace is the first half of a tuple key and comes from the
//! plugin's identity (the link its call arrived on), never from the key the
//! plugin sends: no key string, with separators, NUL bytes or anything
//! else, can reach another namespace. Each namespace's bytes (keys plus
//! values) are counted by the one thread that writes, so the quota holds
//! exactly.
//!
//! Writes go through that writer thread. It takes every write waiting,
//! works out what each changes, makes the whole batch durable with one
//! sync of the write-ahead log ([`super::wal`]), publishes the changes to
//! an in-memory *overlay* that readers consult before redb, then answers
//! each: a write is acknowledged, and visible, only once it is on disk, and
//! many concurrent writers share the cost of the sync. Once a second (or
//! when the log fills) the overlay is *sealed* and written to redb in one
//! durable commit on a thread of its own, while new writes go on into a
//! fresh overlay and the other of the two log files ([`log`]). Committing
//! every batch to redb instead costs more than the log's sync (B-tree pages
//! rewritten per batch) and halved the write rate; committing on the
//! writer's thread stopped every writer for the length of the commit.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redb::{Database, ReadableDatabase, TableDefinition};
use tokio::sync::oneshot;

mod db;
mod log;
mod wal;
mod writer;

pub use db::{Db, latched};
use log::Log;
use wal::Effect;
use writer::{Batch, checkpoint_now, writer};

const KV: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("kv");
const USAGE: TableDefinition<&str, u64> = TableDefinition::new("kv_usage");

/// Longest key accepted: keys are names, not data; this keeps the index
/// small and any one key's cost obvious. It is the limit on the key the
/// *plugin* gives, on every interface: a prefix the host adds itself (the
/// cache's namespace and separator, see the `*_under` functions) does not
/// count against it.
pub const MAX_KEY_LEN: usize = 1024;
/// Longest prefix the host may put before a plugin's key (the cache puts
/// `<namespace>\u{1f}`, at most 65 bytes). Stored keys are at most
/// `MAX_KEY_PREFIX_LEN + MAX_KEY_LEN` bytes.
pub const MAX_KEY_PREFIX_LEN: usize = 128;
/// How long opening waits for a lock held by a store closing in-process.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// Most writes committed in one transaction.
const MAX_BATCH: usize = 512;
/// How long a batch waits for writers it expects (see [`writer`]).
const LINGER: Duration = Duration::from_micros(50);
/// How often the log is folded into a durable redb commit.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    #[error("key of {0} bytes is longer than the {MAX_KEY_LEN}-byte maximum")]
    KeyTooLong(usize),
    #[error(
        "over quota: {needed} bytes needed, {used} of {quota} in use (max_kv_storage_kb); nothing was written"
    )]
    QuotaExceeded { needed: u64, used: u64, quota: u64 },
    #[error("the value at {key:?} is not a number")]
    NotANumber { key: String },
    #[error("the counter at {key:?} would overflow")]
    Overflow { key: String },
    #[error("storage failed: {0}")]
    Storage(String),
    #[error("storage failed: writing the kv log {0}")]
    LogFailed(String),
    /// The log could not take the write (a full disk): nothing was
    /// written, and writes work again once the disk has room.
    #[error(
        "storage refused the write: the kv log {0}; nothing was written, and writes work again once the disk has room (reads go on meanwhile)"
    )]
    LogRefused(String),
}

fn storage(e: impl std::fmt::Display) -> KvError {
    KvError::Storage(e.to_string())
}

enum Op {
    Set {
        key: String,
        value: Vec<u8>,
        quota: u64,
    },
    Delete {
        key: String,
    },
    Increment {
        key: String,
        delta: i64,
        quota: u64,
    },
}

enum Done {
    Unit,
    Bool(bool),
    Count(i64),
}

struct Write {
    namespace: String,
    op: Op,
    reply: oneshot::Sender<Result<Done, KvError>>,
}

/// Durable changes of one period, not yet checkpointed into redb.
#[derive(Debug, Default)]
struct Layer {
    /// `None`: deleted.
    entries: BTreeMap<(String, String), Option<Vec<u8>>>,
    usage: HashMap<String, u64>,
}

impl Layer {
    fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.usage.is_empty()
    }
}

/// What readers consult before redb: the changes since the last
/// checkpoint began, over those the running checkpoint is committing.
#[derive(Debug, Default)]
struct Overlay {
    active: Layer,
    /// Empty when no checkpoint is running (or one failed and waits to be
    /// tried again, then not empty). Shared with the checkpoint thread,
    /// which commits it without holding the lock.
    sealed: Arc<Layer>,
}

impl Overlay {
    /// The newest pending change to a key: `Some(None)` is a delete.
    fn entry(&self, at: &(String, String)) -> Option<&Option<Vec<u8>>> {
        self.active
            .entries
            .get(at)
            .or_else(|| self.sealed.entries.get(at))
    }

    fn usage(&self, namespace: &str) -> Option<u64> {
        let layers = [&self.active, &*self.sealed];
        layers.iter().find_map(|l| l.usage.get(namespace).copied())
    }

    /// Pending changes to the keys of `namespace` that start with
    /// `prefix`, oldest first: `true` where the key is present.
    fn changes_under(&self, namespace: &str, prefix: &str) -> Vec<(String, bool)> {
        let layers = [&*self.sealed, &self.active];
        layers
            .iter()
            .flat_map(|layer| {
                layer
                    .entries
                    .range((namespace.to_owned(), prefix.to_owned())..)
                    .take_while(|((ns, k), _)| ns == namespace && k.starts_with(prefix))
                    .map(|((_, k), v)| (k.clone(), v.is_some()))
            })
            .collect()
    }
}

type Shared = Arc<RwLock<Overlay>>;

fn read(overlay: &Shared) -> std::sync::RwLockReadGuard<'_, Overlay> {
    overlay.read().unwrap_or_else(|p| p.into_inner())
}

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct KvStore {
    db: Arc<Db>,
    overlay: Shared,
    writes: mpsc::Sender<Write>,
}

impl std::fmt::Debug for KvStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvStore").finish_non_exhaustive()
    }
}

impl KvStore {
    /// Opens (or creates) the database file and its log (`<path>.wal`),
    /// replaying what the log holds. redb locks the file: a second
    /// supervisor on the same state directory is refused.
    ///
    /// A store being closed in this same process (a supervisor stopped and
    /// started again) releases the lock when its writer thread has drained;
    /// opening waits up to [`LOCK_WAIT`] for that.
    pub fn open(path: &Path) -> Result<Self, KvError> {
        Self::open_checkpointing(path, CHECKPOINT_EVERY)
    }

    fn open_checkpointing(path: &Path, every: Duration) -> Result<Self, KvError> {
        let started = std::time::Instant::now();
        loop {
            match Database::create(path) {
                Ok(db) => {
                    let log = Log::open(path).map_err(storage)?;
                    return Self::start(Db::new(db, Some(path.to_owned())), Some(log), every);
                }
                Err(redb::DatabaseError::DatabaseAlreadyOpen) if started.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => return Err(storage(e)),
            }
        }
    }

    /// A store that lives in memory only (tests, `--ephemeral`).
    pub fn in_memory() -> Result<Self, KvError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(storage)?;
        Self::start(Db::new(db, None), None, CHECKPOINT_EVERY)
    }

    /// Replays what the log holds (a crash after acknowledged writes and
    /// before their checkpoint) and starts the writer. In memory there is
    /// no log: the overlay is all there is between checkpoints.
    fn start(
        db: Arc<Db>,
        log: Option<(Log, Vec<Effect>)>,
        every: Duration,
    ) -> Result<Self, KvError> {
        let current = db.current().map_err(KvError::Storage)?;
        let txn = current.begin_write().map_err(storage)?;
        txn.open_table(KV).map_err(storage)?;
        txn.open_table(USAGE).map_err(storage)?;
        txn.commit().map_err(storage)?;
        drop(current);
        let overlay = Shared::default();
        let log = match log {
            Some((mut log, effects)) => {
                let count = effects.len();
                let mut batch = Batch::new(&db, &overlay);
                for effect in effects {
                    let (namespace, op) = effect.into_op();
                    batch.apply(&namespace, &op)?;
                }
                batch.publish();
                // Even with nothing to replay, the log is cleared: new
                // generations retire whatever a crash left after the last
                // intact record.
                checkpoint_now(&db, &overlay, Some(&mut log))?;
                if count > 0 {
                    tracing::info!(path = %log.path().display(), count, "kv writes replayed from the log");
                }
                Some(log)
            }
            None => None,
        };
        let (writes, queue) = mpsc::channel();
        let (writer_db, writer_overlay) = (db.clone(), overlay.clone());
        std::thread::Builder::new()
            .name("prx-kv-writer".into())
            .spawn(move || writer(writer_db, writer_overlay, log, every, queue))
            .map_err(storage)?;
        Ok(Self {
            db,
            overlay,
            writes,
        })
    }

    /// The database, for the other stores that share its file.
    pub fn database(&self) -> Arc<Db> {
        self.db.clone()
    }

    // Readers look at the overlay first, then open redb. A sealed layer is
    // dropped only after the checkpoint that holds its entries is
    // committed, so a reader that missed an entry in the overlay finds it
    // in redb.

    pub fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.get_under(namespace, "", key)
    }

    /// [`Self::get`] of `prefix` + `key`, where the host chose `prefix`
    /// and the plugin `key`: only `key` is held to [`MAX_KEY_LEN`].
    pub fn get_under(
        &self,
        namespace: &str,
        prefix: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, KvError> {
        let Ok(stored) = stored_key(prefix, key) else {
            return Ok(None);
        };
        let at = (namespace.to_owned(), stored);
        if let Some(pending) = read(&self.overlay).entry(&at) {
            return Ok(pending.clone());
        }
        db_get(&self.db, namespace, &at.1)
    }

    /// Keys of `namespace` starting with `prefix`, in order.
    pub fn list_keys(&self, namespace: &str, prefix: &str) -> Result<Vec<String>, KvError> {
        let pending = read(&self.overlay).changes_under(namespace, prefix);
        let mut keys = with_db(&self.db, |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(KV)?;
            let mut keys = BTreeSet::new();
            for entry in table.range((namespace, prefix)..)? {
                let (key, _) = entry?;
                let (ns, k) = key.value();
                if ns != namespace || !k.starts_with(prefix) {
                    break;
                }
                keys.insert(k.to_owned());
            }
            Ok(keys)
        })?;
        for (key, present) in pending {
            if present {
                keys.insert(key);
            } else {
                keys.remove(&key);
            }
        }
        Ok(keys.into_iter().collect())
    }

    /// Bytes (keys plus values) used by `namespace`.
    pub fn usage(&self, namespace: &str) -> Result<u64, KvError> {
        if let Some(used) = read(&self.overlay).usage(namespace) {
            return Ok(used);
        }
        db_usage(&self.db, namespace)
    }

    /// Stores a value; returns once it is durable.
    pub async fn set(
        &self,
        namespace: &str,
        key: &str,
        value: Vec<u8>,
        quota: u64,
    ) -> Result<(), KvError> {
        self.set_under(namespace, "", key, value, quota).await
    }

    /// [`Self::set`] of `prefix` + `key` (see [`Self::get_under`]). The
    /// quota counts the stored key, prefix included.
    pub async fn set_under(
        &self,
        namespace: &str,
        prefix: &str,
        key: &str,
        value: Vec<u8>,
        quota: u64,
    ) -> Result<(), KvError> {
        let op = Op::Set {
            key: stored_key(prefix, key)?,
            value,
            quota,
        };
        self.write(namespace, op).await.map(|_| ())
    }

    /// Removes a key; true when it existed. Returns once durable.
    pub async fn delete(&self, namespace: &str, key: &str) -> Result<bool, KvError> {
        self.delete_under(namespace, "", key).await
    }

    /// [`Self::delete`] of `prefix` + `key` (see [`Self::get_under`]).
    pub async fn delete_under(
        &self,
        namespace: &str,
        prefix: &str,
        key: &str,
    ) -> Result<bool, KvError> {
        let Ok(stored) = stored_key(prefix, key) else {
            return Ok(false);
        };
        match self.write(namespace, Op::Delete { key: stored }).await? {
            Done::Bool(existed) => Ok(existed),
            _ => Err(storage("unexpected answer from the writer")),
        }
    }

    /// Adds `delta` to a decimal counter atomically; returns the new value.
    pub async fn increment(
        &self,
        namespace: &str,
        key: &str,
        delta: i64,
        quota: u64,
    ) -> Result<i64, KvError> {
        let key = stored_key("", key)?;
        match self
            .write(namespace, Op::Increment { key, delta, quota })
            .await?
        {
            Done::Count(n) => Ok(n),
            _ => Err(storage("unexpected answer from the writer")),
        }
    }

    async fn write(&self, namespace: &str, op: Op) -> Result<Done, KvError> {
        let (reply, answer) = oneshot::channel();
        self.writes
            .send(Write {
                namespace: namespace.into(),
                op,
                reply,
            })
            .map_err(|_| storage("the writer thread is gone"))?;
        answer
            .await
            .map_err(|_| storage("the writer thread dropped a write"))?
    }
}

/// The key as stored: the host's `prefix`, then the plugin's `key`. The
/// limit applies to `key` alone, so a plugin gets the documented
/// [`MAX_KEY_LEN`] bytes on every interface whatever the host prepends.
fn stored_key(prefix: &str, key: &str) -> Result<String, KvError> {
    if key.len() > MAX_KEY_LEN {
        return Err(KvError::KeyTooLong(key.len()));
    }
    if prefix.len() > MAX_KEY_PREFIX_LEN {
        return Err(storage(format!(
            "a host key prefix of {} bytes is longer than the {MAX_KEY_PREFIX_LEN}-byte maximum",
            prefix.len()
        )));
    }
    Ok([prefix, key].concat())
}

/// Runs `op` on the database; after a disk error that left redb refusing
/// everything, opens it again and runs `op` once more.
fn with_db<T>(db: &Db, op: impl Fn(&Database) -> Result<T, redb::Error>) -> Result<T, KvError> {
    let current = db.current().map_err(KvError::Storage)?;
    match op(&current) {
        Ok(value) => Ok(value),
        Err(e) if db::latched(&e) => {
            tracing::error!("kv database failed ({e}); opening it again");
            db.reopen(current);
            let again = db.current().map_err(KvError::Storage)?;
            op(&again).map_err(storage)
        }
        Err(e) => Err(storage(e)),
    }
}

fn db_get(db: &Db, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
    with_db(db, |db| {
        let txn = db.begin_read()?;
        let table = txn.open_table(KV)?;
        let value = table.get((namespace, key))?;
        Ok(value.map(|v| v.value().to_vec()))
    })
}

fn db_usage(db: &Db, namespace: &str) -> Result<u64, KvError> {
    with_db(db, |db| {
        let txn = db.begin_read()?;
        let table = txn.open_table(USAGE)?;
        let used = table.get(namespace)?;
        Ok(used.map(|u| u.value()).unwrap_or(0))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test]
    async fn namespaces_never_meet_whatever_the_key() {
        let kv = KvStore::in_memory().unwrap();
        let keys = [
            "",
            "k",
            "a/../b",
            "b\0c",
            "ns\0k",
            &"x".repeat(MAX_KEY_LEN),
            "other:k",
            "\u{10FFFF}",
        ];
        for key in keys {
            kv.set("one", key, b"1".to_vec(), 1 << 20).await.unwrap();
            kv.set("two", key, b"2".to_vec(), 1 << 20).await.unwrap();
        }
        for key in keys {
            assert_eq!(
                kv.get("one", key).unwrap().as_deref(),
                Some(&b"1"[..]),
                "{key:?}"
            );
            assert_eq!(
                kv.get("two", key).unwrap().as_deref(),
                Some(&b"2"[..]),
                "{key:?}"
            );
        }
        // A key that spells another namespace stays in its own.
        kv.set("one", "two", b"mine".to_vec(), 1 << 20)
            .await
            .unwrap();
        assert_eq!(kv.get("two", "two").unwrap(), None);
        assert_eq!(kv.list_keys("one", "").unwrap().len(), keys.len() + 1);
        assert_eq!(kv.list_keys("two", "").unwrap().len(), keys.len());
        assert_eq!(
            kv.set("one", &"x".repeat(MAX_KEY_LEN + 1), vec![], 1 << 20)
                .await,
            Err(KvError::KeyTooLong(MAX_KEY_LEN + 1))
        );
    }

    #[tokio::test]
    async fn prefix_listing_stays_in_the_namespace() {
        let kv = KvStore::in_memory().unwrap();
        for (ns, key) in [
            ("a", "user:1"),
            ("a", "user:2"),
            ("a", "zz"),
            ("b", "user:3"),
            ("ab", "user:4"),
        ] {
            kv.set(ns, key, vec![0], 1 << 20).await.unwrap();
        }
        assert_eq!(kv.list_keys("a", "user:").unwrap(), ["user:1", "user:2"]);
        assert_eq!(kv.list_keys("a", "").unwrap(), ["user:1", "user:2", "zz"]);
        assert!(kv.list_keys("c", "").unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_quota_counts_keys_and_values_and_a_refused_write_changes_nothing() {
        let kv = KvStore::in_memory().unwrap();
        kv.set("p", "aa", vec![0; 8], 20).await.unwrap();
        assert_eq!(kv.usage("p").unwrap(), 10);
        let err = kv.set("p", "bb", vec![0; 9], 20).await.unwrap_err();
        assert_eq!(
            err,
            KvError::QuotaExceeded {
                needed: 11,
                used: 10,
                quota: 20
            }
        );
        assert_eq!(kv.get("p", "bb").unwrap(), None);
        assert_eq!(kv.usage("p").unwrap(), 10);
        // Replacing a value counts the difference; deleting frees it.
        kv.set("p", "aa", vec![0; 18], 20).await.unwrap();
        assert_eq!(kv.usage("p").unwrap(), 20);
        assert!(kv.delete("p", "aa").await.unwrap());
        assert!(!kv.delete("p", "aa").await.unwrap());
        assert_eq!(kv.usage("p").unwrap(), 0);
    }

    #[tokio::test]
    async fn counters_are_atomic_and_readable_as_text() {
        let kv = KvStore::in_memory().unwrap();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let kv = kv.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..50 {
                    kv.increment("p", "n", 1, 1 << 20).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(kv.get("p", "n").unwrap().as_deref(), Some(&b"400"[..]));
        assert_eq!(kv.increment("p", "n", -401, 1 << 20).await.unwrap(), -1);
        kv.set("p", "s", b"text".to_vec(), 1 << 20).await.unwrap();
        assert!(matches!(
            kv.increment("p", "s", 1, 1 << 20).await,
            Err(KvError::NotANumber { .. })
        ));
        kv.set("p", "max", i64::MAX.to_string().into_bytes(), 1 << 20)
            .await
            .unwrap();
        assert!(matches!(
            kv.increment("p", "max", 1, 1 << 20).await,
            Err(KvError::Overflow { .. })
        ));
    }

    #[tokio::test]
    async fn data_survives_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.redb");
        {
            let kv = KvStore::open(&path).unwrap();
            kv.set("p", "k", b"v".to_vec(), 1 << 20).await.unwrap();
        }
        // The writer thread holds the database until its queue closes;
        // opening waits for that.
        let kv = KvStore::open(&path).unwrap();
        assert_eq!(kv.get("p", "k").unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(kv.usage("p").unwrap(), 2);
        kv.set("p", "k2", b"v".to_vec(), 1 << 20).await.unwrap();
        // A clean close checkpoints: the log is emptied once the writer
        // has drained.
        drop(kv);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !Log::open(&path).unwrap().1.is_empty() {
            assert!(Instant::now() < deadline, "the log was never emptied");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for the checkpoints to have moved everything into redb.
    async fn settle(kv: &KvStore) {
        let settled = || {
            let overlay = read(&kv.overlay);
            overlay.active.is_empty() && overlay.sealed.is_empty()
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !settled() {
            assert!(Instant::now() < deadline, "the checkpoints never caught up");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn reads_merge_the_overlay_with_redb_across_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.redb");
        let kv = KvStore::open_checkpointing(&path, Duration::from_millis(5)).unwrap();
        for key in ["a", "b", "c"] {
            kv.set("p", key, b"1".to_vec(), 1 << 20).await.unwrap();
        }
        // Let a checkpoint move them into redb, then change them in the
        // overlay: a delete hides a redb key, a set replaces one.
        settle(&kv).await;
        let never = Duration::from_secs(365 * 86_400);
        drop(kv);
        let kv = KvStore::open_checkpointing(&path, never).unwrap();
        assert!(kv.delete("p", "b").await.unwrap());
        kv.set("p", "a", b"22".to_vec(), 1 << 20).await.unwrap();
        kv.set("p", "d", b"1".to_vec(), 1 << 20).await.unwrap();
        assert_eq!(kv.list_keys("p", "").unwrap(), ["a", "c", "d"]);
        assert_eq!(kv.get("p", "a").unwrap().as_deref(), Some(&b"22"[..]));
        assert_eq!(kv.get("p", "b").unwrap(), None);
        assert_eq!(kv.get("p", "c").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(kv.usage("p").unwrap(), 3 + 2 + 2);
        // The quota sees the overlay too.
        assert!(matches!(
            kv.set("p", "e", vec![0; 10], 10).await,
            Err(KvError::QuotaExceeded { used: 7, .. })
        ));
        drop(kv);
        let kv = KvStore::open(&path).unwrap();
        assert_eq!(kv.list_keys("p", "").unwrap(), ["a", "c", "d"]);
        assert_eq!(kv.usage("p").unwrap(), 7);
    }

    #[tokio::test]
    async fn a_failed_log_sync_fails_the_batch_and_refuses_writes_until_restart() {
        let dir = tempfile::tempdir().unwrap();
        let broken = dir.path().join("inject-sync-failure");
        std::fs::create_dir(&broken).unwrap();
        let kv = KvStore::open(&broken.join("kv.redb")).unwrap();
        let first = kv.set("p", "k", b"v".to_vec(), 1 << 20).await.unwrap_err();
        assert!(
            first.to_string().contains("writing the kv log")
                && first.to_string().contains("injected"),
            "{first}"
        );
        assert_eq!(
            kv.get("p", "k").unwrap(),
            None,
            "a failed write became visible"
        );
        let next = kv.increment("p", "n", 1, 1 << 20).await.unwrap_err();
        assert!(
            next.to_string().contains("restart the supervisor"),
            "{next}"
        );
        // Reads go on working.
        assert!(kv.list_keys("p", "").unwrap().is_empty());
    }

    /// The files as a crash would leave them: the writer never gets to
    /// checkpoint, and the copies are taken while it still runs.
    fn crashed_copy(from: &Path, to: &Path, with_log: bool) {
        std::fs::create_dir_all(to).unwrap();
        std::fs::copy(from.join("kv.redb"), to.join("kv.redb")).unwrap();
        if with_log {
            copy_log(from, to);
        }
    }

    fn copy_log(from: &Path, to: &Path) {
        let [from, to] = [from, to].map(|dir| Log::paths(&dir.join("kv.redb")));
        for (from, to) in from.iter().zip(&to) {
            std::fs::copy(from, to).unwrap();
        }
    }

    #[tokio::test]
    async fn acknowledged_writes_are_in_the_log_until_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("live");
        std::fs::create_dir(&live).unwrap();
        let never = Duration::from_secs(365 * 86_400);
        let kv = KvStore::open_checkpointing(&live.join("kv.redb"), never).unwrap();
        kv.set("p", "gone", b"x".to_vec(), 1 << 20).await.unwrap();
        kv.delete("p", "gone").await.unwrap();
        kv.set("p", "k", b"v".to_vec(), 1 << 20).await.unwrap();
        for _ in 0..3 {
            kv.increment("p", "n", 2, 1 << 20).await.unwrap();
        }
        // Without the log, the database alone is at its last durable
        // commit: none of the acknowledged writes are there.
        crashed_copy(&live, &dir.path().join("no-log"), false);
        let bare = KvStore::open(&dir.path().join("no-log/kv.redb")).unwrap();
        assert_eq!(bare.get("p", "k").unwrap(), None);
        drop(bare);
        // With it, every one is, and replaying is idempotent: an increment
        // was logged as the value it produced.
        let copy = dir.path().join("crashed");
        crashed_copy(&live, &copy, true);
        for _ in 0..2 {
            let kv = KvStore::open_checkpointing(&copy.join("kv.redb"), never).unwrap();
            assert_eq!(kv.get("p", "k").unwrap().as_deref(), Some(&b"v"[..]));
            assert_eq!(kv.get("p", "n").unwrap().as_deref(), Some(&b"6"[..]));
            assert_eq!(kv.get("p", "gone").unwrap(), None);
            assert_eq!(kv.usage("p").unwrap(), 2 + 2);
            drop(kv);
            // Next round: the same log replayed over the replayed state.
            copy_log(&live, &copy);
        }
        drop(kv);
    }

    #[tokio::test]
    async fn writes_go_on_while_a_checkpoint_runs_and_a_crash_then_loses_none() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("live");
        std::fs::create_dir(&live).unwrap();
        let hold = live.join("hold-checkpoint");
        std::fs::write(&hold, b"").unwrap();
        let kv =
            KvStore::open_checkpointing(&live.join("kv.redb"), Duration::from_millis(5)).unwrap();
        kv.set("p", "a", b"1".to_vec(), 1 << 20).await.unwrap();
        kv.set("p", "b", b"1".to_vec(), 1 << 20).await.unwrap();
        // The checkpoint of the first period begins and is held.
        let deadline = Instant::now() + Duration::from_secs(10);
        while read(&kv.overlay).sealed.is_empty() {
            assert!(Instant::now() < deadline, "no checkpoint began");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Writes are acknowledged while it runs, and reads see both
        // periods.
        for i in 0..20 {
            kv.increment("p", "n", 1, 1 << 20).await.unwrap();
            kv.set("p", &format!("k{i}"), b"v".to_vec(), 1 << 20)
                .await
                .unwrap();
        }
        assert!(kv.delete("p", "a").await.unwrap());
        assert!(
            !read(&kv.overlay).sealed.is_empty(),
            "the checkpoint ended early"
        );
        assert_eq!(kv.get("p", "b").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(kv.get("p", "a").unwrap(), None);
        assert_eq!(kv.list_keys("p", "").unwrap().len(), 1 + 1 + 20);
        // A crash now: redb has neither period, the two log files have both.
        let copy = dir.path().join("crashed");
        crashed_copy(&live, &copy, true);
        let never = Duration::from_secs(365 * 86_400);
        let crashed = KvStore::open_checkpointing(&copy.join("kv.redb"), never).unwrap();
        assert_eq!(crashed.get("p", "a").unwrap(), None);
        assert_eq!(crashed.get("p", "b").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(crashed.get("p", "n").unwrap().as_deref(), Some(&b"20"[..]));
        assert_eq!(crashed.list_keys("p", "").unwrap().len(), 1 + 1 + 20);
        assert_eq!(crashed.usage("p").unwrap(), kv.usage("p").unwrap());
        drop(crashed);
        // Released, the checkpoint finishes and the next ones follow.
        std::fs::remove_file(&hold).unwrap();
        settle(&kv).await;
        assert_eq!(kv.get("p", "n").unwrap().as_deref(), Some(&b"20"[..]));
        assert_eq!(kv.get("p", "a").unwrap(), None);
    }
}
