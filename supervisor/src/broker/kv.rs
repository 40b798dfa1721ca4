//! The plugins' key-value store: one redb database, one namespace per
//! plugin.
//!
//! The namespace is the first half of a tuple key and comes from the
//! plugin's identity (the link its call arrived on), never from the key the
//! plugin sends: no key string, with separators, NUL bytes or anything
//! else, can reach another namespace. Each namespace's bytes (keys plus
//! values) are counted in the same transaction as every write, so the
//! quota holds exactly.
//!
//! Writes go through one writer thread that takes every write waiting,
//! applies them in one transaction, makes the batch durable with one sync
//! of the write-ahead log ([`super::wal`]), commits it, then answers each:
//! a write is acknowledged only once it is on disk, and many concurrent
//! writers share the cost of the sync. Once a second the log's effects are
//! made durable in redb itself and the log starts over.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use super::wal::{CHECKPOINT_BYTES, Effect, Wal};

const KV: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("kv");
const USAGE: TableDefinition<&str, u64> = TableDefinition::new("kv_usage");

/// Longest key accepted: keys are names, not data; this keeps the index
/// small and any one key's cost obvious.
pub const MAX_KEY_LEN: usize = 1024;
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

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct KvStore {
    db: Arc<Database>,
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
                    let (mut wal, effects) =
                        Wal::open(&path.with_extension("wal")).map_err(storage)?;
                    replay(&db, &mut wal, effects)?;
                    return Self::start(db, Some(wal), every);
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
        Self::start(db, None, CHECKPOINT_EVERY)
    }

    /// Without a log (in memory) every batch commits durably in redb.
    fn start(db: Database, wal: Option<Wal>, every: Duration) -> Result<Self, KvError> {
        let db = Arc::new(db);
        let txn = db.begin_write().map_err(storage)?;
        txn.open_table(KV).map_err(storage)?;
        txn.open_table(USAGE).map_err(storage)?;
        txn.commit().map_err(storage)?;
        let (writes, queue) = mpsc::channel();
        let writer_db = db.clone();
        std::thread::Builder::new()
            .name("prx-kv-writer".into())
            .spawn(move || writer(writer_db, wal, every, queue))
            .map_err(storage)?;
        Ok(Self { db, writes })
    }

    /// The database, for the other stores that share its file.
    pub fn database(&self) -> Arc<Database> {
        self.db.clone()
    }

    pub fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        if key.len() > MAX_KEY_LEN {
            return Ok(None);
        }
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(KV).map_err(storage)?;
        let value = table.get((namespace, key)).map_err(storage)?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// Keys of `namespace` starting with `prefix`, in order.
    pub fn list_keys(&self, namespace: &str, prefix: &str) -> Result<Vec<String>, KvError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(KV).map_err(storage)?;
        let mut keys = Vec::new();
        for entry in table.range((namespace, prefix)..).map_err(storage)? {
            let (key, _) = entry.map_err(storage)?;
            let (ns, k) = key.value();
            if ns != namespace || !k.starts_with(prefix) {
                break;
            }
            keys.push(k.to_owned());
        }
        Ok(keys)
    }

    /// Bytes (keys plus values) used by `namespace`.
    pub fn usage(&self, namespace: &str) -> Result<u64, KvError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(USAGE).map_err(storage)?;
        let used = table.get(namespace).map_err(storage)?;
        Ok(used.map(|u| u.value()).unwrap_or(0))
    }

    /// Stores a value; returns once it is durable.
    pub async fn set(
        &self,
        namespace: &str,
        key: &str,
        value: Vec<u8>,
        quota: u64,
    ) -> Result<(), KvError> {
        check_key(key)?;
        let op = Op::Set {
            key: key.into(),
            value,
            quota,
        };
        self.write(namespace, op).await.map(|_| ())
    }

    /// Removes a key; true when it existed. Returns once durable.
    pub async fn delete(&self, namespace: &str, key: &str) -> Result<bool, KvError> {
        if key.len() > MAX_KEY_LEN {
            return Ok(false);
        }
        match self
            .write(namespace, Op::Delete { key: key.into() })
            .await?
        {
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
        check_key(key)?;
        match self
            .write(
                namespace,
                Op::Increment {
                    key: key.into(),
                    delta,
                    quota,
                },
            )
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

fn check_key(key: &str) -> Result<(), KvError> {
    if key.len() > MAX_KEY_LEN {
        return Err(KvError::KeyTooLong(key.len()));
    }
    Ok(())
}

/// Applies what a log left behind (a crash after acknowledged writes
/// and before their checkpoint) in one durable commit, then starts the log
/// over.
fn replay(db: &Database, wal: &mut Wal, effects: Vec<Effect>) -> Result<(), KvError> {
    if effects.is_empty() {
        return wal.reset().map_err(storage);
    }
    let count = effects.len();
    create_tables(db)?;
    let mut txn = db.begin_write().map_err(storage)?;
    txn.set_durability(Durability::Immediate).map_err(storage)?;
    {
        let mut kv = txn.open_table(KV).map_err(storage)?;
        let mut usage = txn.open_table(USAGE).map_err(storage)?;
        for effect in effects {
            let (namespace, op) = match effect {
                Effect::Set {
                    namespace,
                    key,
                    value,
                } => (
                    namespace,
                    Op::Set {
                        key,
                        value,
                        quota: u64::MAX,
                    },
                ),
                Effect::Delete { namespace, key } => (namespace, Op::Delete { key }),
            };
            apply(&mut kv, &mut usage, &namespace, &op)?;
        }
    }
    txn.commit().map_err(storage)?;
    wal.reset().map_err(storage)?;
    tracing::info!(path = %wal.path().display(), count, "kv writes replayed from the log");
    Ok(())
}

fn create_tables(db: &Database) -> Result<(), KvError> {
    let txn = db.begin_write().map_err(storage)?;
    txn.open_table(KV).map_err(storage)?;
    txn.open_table(USAGE).map_err(storage)?;
    txn.commit().map_err(storage)
}

/// Takes every write waiting, applies them in one transaction, makes them
/// durable once, then answers them all. Checkpoints the log once a second
/// (and when it grows large). Ends, with a last checkpoint, when every
/// handle is gone.
///
/// Writers that wait for their answer before writing again would split
/// into two cohorts that take turns (one syncing while the other queues),
/// each batch half full. So a batch smaller than the last one waits up to
/// [`LINGER`] for the writers that have just been answered; a lone writer
/// never waits, and a batch that waited in vain lowers the expectation.
fn writer(db: Arc<Database>, mut wal: Option<Wal>, every: Duration, queue: mpsc::Receiver<Write>) {
    let mut last_checkpoint = Instant::now();
    let mut expected = 1;
    loop {
        let wait = every.saturating_sub(last_checkpoint.elapsed());
        let first = match queue.recv_timeout(wait) {
            Ok(first) => Some(first),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        if let Some(first) = first {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            let linger_until = Instant::now() + LINGER;
            while batch.len() < expected.min(MAX_BATCH) {
                let left = linger_until.saturating_duration_since(Instant::now());
                match queue.recv_timeout(left) {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            expected = batch.len();
            let results = commit_batch(&db, wal.as_mut(), &batch);
            for (write, result) in batch.into_iter().zip(results) {
                let _ = write.reply.send(result);
            }
        }
        if let Some(wal) = wal.as_mut()
            && (wal.len() >= CHECKPOINT_BYTES
                || (!wal.is_empty() && last_checkpoint.elapsed() >= every))
        {
            checkpoint(&db, wal);
        }
        if last_checkpoint.elapsed() >= every {
            last_checkpoint = Instant::now();
        }
    }
    if let Some(wal) = wal.as_mut() {
        checkpoint(&db, wal);
    }
}

/// One durable redb commit makes every logged batch permanent; then the
/// log can start over. On failure the log is kept (it is still the truth)
/// and the next checkpoint tries again.
fn checkpoint(db: &Database, wal: &mut Wal) {
    if wal.is_empty() {
        return;
    }
    let durable = db.begin_write().map_err(storage).and_then(|mut txn| {
        txn.set_durability(Durability::Immediate).map_err(storage)?;
        txn.commit().map_err(storage)
    });
    match durable.and_then(|()| wal.reset().map_err(storage)) {
        Ok(()) => {}
        Err(e) => {
            tracing::error!(path = %wal.path().display(), "kv checkpoint failed (the log keeps the writes): {e}")
        }
    }
}

fn commit_batch(
    db: &Database,
    wal: Option<&mut Wal>,
    batch: &[Write],
) -> Vec<Result<Done, KvError>> {
    let fail_all = |e: KvError| batch.iter().map(|_| Err(e.clone())).collect();
    let mut txn = match db.begin_write() {
        Ok(txn) => txn,
        Err(e) => return fail_all(storage(e)),
    };
    // With a log, the log's sync is the durable step.
    let durability = match wal {
        Some(_) => Durability::None,
        None => Durability::Immediate,
    };
    if let Err(e) = txn.set_durability(durability) {
        return fail_all(storage(e));
    }
    let mut effects = Vec::new();
    let results = {
        let (mut kv, mut usage) = match (txn.open_table(KV), txn.open_table(USAGE)) {
            (Ok(kv), Ok(usage)) => (kv, usage),
            (Err(e), _) | (_, Err(e)) => return fail_all(storage(e)),
        };
        batch
            .iter()
            .map(|w| {
                let done = apply(&mut kv, &mut usage, &w.namespace, &w.op)?;
                effects.extend(effect_of(&w.namespace, &w.op, &done));
                Ok(done)
            })
            .collect::<Vec<_>>()
    };
    let Some(wal) = wal else {
        return match txn.commit() {
            Ok(()) => results,
            Err(e) => fail_all(storage(e)),
        };
    };
    let before = wal.len();
    if let Err(e) = wal.append(&effects) {
        // Dropping the transaction aborts it: nothing changed.
        drop(txn);
        return fail_all(storage(format!("writing the kv log: {e}")));
    }
    match txn.commit() {
        Ok(()) => results,
        Err(e) => {
            if let Err(undo) = wal.undo(before) {
                tracing::error!(path = %wal.path().display(), "a failed kv batch could not be taken out of the log: {undo}");
            }
            fail_all(storage(e))
        }
    }
}

/// What an applied write changed, as the log records it: the value an
/// increment produced rather than the increment, so replay is idempotent.
/// `None` when nothing changed (a delete of a missing key).
fn effect_of(namespace: &str, op: &Op, done: &Done) -> Option<Effect> {
    let namespace = namespace.to_owned();
    match (op, done) {
        (Op::Set { key, value, .. }, _) => Some(Effect::Set {
            namespace,
            key: key.clone(),
            value: value.clone(),
        }),
        (Op::Increment { key, .. }, Done::Count(n)) => Some(Effect::Set {
            namespace,
            key: key.clone(),
            value: n.to_string().into_bytes(),
        }),
        (Op::Delete { key }, Done::Bool(true)) => Some(Effect::Delete {
            namespace,
            key: key.clone(),
        }),
        _ => None,
    }
}

type KvTable<'t> = redb::Table<'t, (&'static str, &'static str), &'static [u8]>;
type UsageTable<'t> = redb::Table<'t, &'static str, u64>;

/// One write inside the batch's transaction: checks first, then writes,
/// so a refused write changes nothing.
fn apply(
    kv: &mut KvTable<'_>,
    usage: &mut UsageTable<'_>,
    ns: &str,
    op: &Op,
) -> Result<Done, KvError> {
    let used = usage
        .get(ns)
        .map_err(storage)?
        .map(|u| u.value())
        .unwrap_or(0);
    let key_of = |op: &Op| match op {
        Op::Set { key, .. } | Op::Delete { key } | Op::Increment { key, .. } => key.clone(),
    };
    let key = key_of(op);
    let old = kv
        .get((ns, key.as_str()))
        .map_err(storage)?
        .map(|v| v.value().to_vec());
    let old_size = old
        .as_ref()
        .map(|v| (key.len() + v.len()) as u64)
        .unwrap_or(0);
    let (new_value, quota, done) = match op {
        Op::Delete { .. } => {
            if old.is_some() {
                kv.remove((ns, key.as_str())).map_err(storage)?;
                usage
                    .insert(ns, used - old_size.min(used))
                    .map_err(storage)?;
            }
            return Ok(Done::Bool(old.is_some()));
        }
        Op::Set { value, quota, .. } => (value.clone(), *quota, Done::Unit),
        Op::Increment { delta, quota, .. } => {
            let current = match &old {
                None => 0,
                Some(bytes) => std::str::from_utf8(bytes)
                    .ok()
                    .and_then(|t| t.trim().parse::<i64>().ok())
                    .ok_or_else(|| KvError::NotANumber { key: key.clone() })?,
            };
            let next = current
                .checked_add(*delta)
                .ok_or_else(|| KvError::Overflow { key: key.clone() })?;
            (next.to_string().into_bytes(), *quota, Done::Count(next))
        }
    };
    let new_size = (key.len() + new_value.len()) as u64;
    let after = used - old_size.min(used) + new_size;
    if after > quota && new_size > old_size {
        return Err(KvError::QuotaExceeded {
            needed: new_size,
            used,
            quota,
        });
    }
    kv.insert((ns, key.as_str()), new_value.as_slice())
        .map_err(storage)?;
    usage.insert(ns, after).map_err(storage)?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let wal = path.with_extension("wal");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !Wal::open(&wal).unwrap().1.is_empty() {
            assert!(Instant::now() < deadline, "the log was never emptied");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The files as a crash would leave them: the writer never gets to
    /// checkpoint, and the copies are taken while it still runs.
    fn crashed_copy(from: &Path, to: &Path, with_log: bool) {
        std::fs::create_dir_all(to).unwrap();
        std::fs::copy(from.join("kv.redb"), to.join("kv.redb")).unwrap();
        if with_log {
            std::fs::copy(from.join("kv.wal"), to.join("kv.wal")).unwrap();
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
            std::fs::copy(live.join("kv.wal"), copy.join("kv.wal")).unwrap();
        }
        drop(kv);
    }
}
