//! The kv store's one writer thread: it takes writes in batches, applies
//! each to the overlay under the namespace's quota, makes the batch durable
//! in the write-ahead log with one sync, then answers. Now and then it
//! seals the overlay and switches log files, and the checkpoint thread
//! folds the sealed layer into redb in one commit while writes go on.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use redb::{Database, Durability};

use super::db::{Db, latched};

use super::log::Log;
use super::wal::{AppendError, CHECKPOINT_BYTES, Effect};
use super::{
    Done, KV, KvError, LINGER, Layer, MAX_BATCH, Op, Shared, USAGE, Write, db_get, db_usage, read,
    storage,
};

impl Effect {
    /// The write that redoes this effect (quota already admitted it).
    pub(super) fn into_op(self) -> (String, Op) {
        match self {
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
        }
    }
}

/// The changes of one batch, seen on top of the overlay and redb, kept
/// apart until the batch is durable.
pub(super) struct Batch<'a> {
    db: &'a Db,
    overlay: &'a Shared,
    entries: BTreeMap<(String, String), Option<Vec<u8>>>,
    usage: HashMap<String, u64>,
    effects: Vec<Effect>,
}

impl<'a> Batch<'a> {
    pub(super) fn new(db: &'a Db, overlay: &'a Shared) -> Self {
        Self {
            db,
            overlay,
            entries: BTreeMap::new(),
            usage: HashMap::new(),
            effects: Vec::new(),
        }
    }

    fn get(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let k = (ns.to_owned(), key.to_owned());
        if let Some(v) = self.entries.get(&k) {
            return Ok(v.clone());
        }
        if let Some(v) = read(self.overlay).entry(&k) {
            return Ok(v.clone());
        }
        db_get(self.db, ns, key)
    }

    fn used(&self, ns: &str) -> Result<u64, KvError> {
        if let Some(used) = self.usage.get(ns) {
            return Ok(*used);
        }
        if let Some(used) = read(self.overlay).usage(ns) {
            return Ok(used);
        }
        db_usage(self.db, ns)
    }

    /// One write: checks first, then records the change, so a refused
    /// write changes nothing.
    pub(super) fn apply(&mut self, ns: &str, op: &Op) -> Result<Done, KvError> {
        let key = match op {
            Op::Set { key, .. } | Op::Delete { key } | Op::Increment { key, .. } => key,
        };
        let used = self.used(ns)?;
        let old = self.get(ns, key)?;
        let old_size = old
            .as_ref()
            .map(|v| (key.len() + v.len()) as u64)
            .unwrap_or(0);
        let (new_value, quota, done) = match op {
            Op::Delete { .. } => {
                if old.is_some() {
                    self.record(ns, key, None, used - old_size.min(used));
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
        let after = (used - old_size.min(used)).saturating_add(new_size);
        if after > quota && new_size > old_size {
            return Err(KvError::QuotaExceeded {
                needed: new_size,
                used,
                quota,
            });
        }
        self.record(ns, key, Some(new_value), after);
        Ok(done)
    }

    /// Records a change and the effect the log will hold: the value an
    /// increment produced rather than the increment, so replay is
    /// idempotent.
    fn record(&mut self, ns: &str, key: &str, value: Option<Vec<u8>>, used: u64) {
        self.effects.push(match &value {
            Some(value) => Effect::Set {
                namespace: ns.to_owned(),
                key: key.to_owned(),
                value: value.clone(),
            },
            None => Effect::Delete {
                namespace: ns.to_owned(),
                key: key.to_owned(),
            },
        });
        self.entries.insert((ns.to_owned(), key.to_owned()), value);
        self.usage.insert(ns.to_owned(), used);
    }

    /// Makes the batch's changes visible (once they are durable).
    pub(super) fn publish(self) {
        let mut overlay = self.overlay.write().unwrap_or_else(|p| p.into_inner());
        overlay.active.entries.extend(self.entries);
        overlay.active.usage.extend(self.usage);
    }
}

/// Takes every write waiting, works the batch out, makes it durable with
/// one sync of the log, publishes it, then answers every write. Begins a
/// checkpoint once per `every` (and when the log fills). Ends, with a last
/// checkpoint, when every handle is gone.
///
/// Writers that wait for their answer before writing again would split
/// into two cohorts that take turns (one syncing while the other queues),
/// each batch half full. So a batch smaller than the last one waits up to
/// [`LINGER`] for the writers that have just been answered; a lone writer
/// never waits, and a batch that waited in vain lowers the expectation.
pub(super) fn writer(
    db: Arc<Db>,
    overlay: Shared,
    mut log: Option<Log>,
    every: Duration,
    queue: mpsc::Receiver<Write>,
) {
    let log_path = log.as_ref().map(|l| l.path().to_owned());
    let mut checkpoints = Checkpoints::start(db.clone(), overlay.clone(), log_path);
    let mut last_checkpoint = Instant::now();
    let mut expected = 1;
    // Set by a failed sync of the log: after an fsync error Linux does not
    // promise that earlier writes reached the disk, so the store refuses
    // every write until the supervisor is restarted (and replays the log).
    let mut poisoned: Option<KvError> = None;
    loop {
        // Never zero: while a checkpoint runs past its period this waits
        // for writes instead of spinning.
        let wait = every
            .saturating_sub(last_checkpoint.elapsed())
            .max(Duration::from_millis(5));
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
            let results = match &poisoned {
                Some(e) => batch.iter().map(|_| Err(e.clone())).collect(),
                None => commit_batch(&db, &overlay, log.as_mut(), &batch),
            };
            if poisoned.is_none()
                && let Some(Err(KvError::LogFailed(e))) = results.first()
            {
                tracing::error!("kv log sync failed; refusing writes until restart: {e}");
                poisoned = Some(KvError::Storage(format!(
                    "the kv store refuses writes since its log failed ({e}); restart the supervisor"
                )));
            }
            for (write, result) in batch.into_iter().zip(results) {
                let _ = write.reply.send(result);
            }
        }
        let full = log.as_ref().is_some_and(|l| l.len() >= CHECKPOINT_BYTES);
        if full || last_checkpoint.elapsed() >= every {
            // A full log cannot take the next period's records until the
            // running checkpoint frees the other file: wait for it.
            if full {
                checkpoints.wait();
            }
            // A sealed layer left after its checkpoint ended is one whose
            // commit failed (a full disk): tried again once a period, not
            // once a batch, since each try costs the disk more.
            if !checkpoints.running() {
                let failed = !read(&overlay).sealed.is_empty();
                if !failed || last_checkpoint.elapsed() >= every {
                    begin_checkpoint(&overlay, log.as_mut(), &mut checkpoints);
                    last_checkpoint = Instant::now();
                }
            }
        }
    }
    checkpoints.stop();
    if let Err(e) = checkpoint_now(&db, &overlay, log.as_mut()) {
        tracing::error!("kv checkpoint at close failed (the log keeps the writes): {e}");
    }
}

/// Seals the active layer and switches log files, so that the sealed
/// layer is exactly what the file just left holds, then hands it to the
/// checkpoint thread. A sealed layer still there (its commit failed) is
/// handed over again instead, without a switch: the other file still
/// holds it.
fn begin_checkpoint(overlay: &Shared, log: Option<&mut Log>, checkpoints: &mut Checkpoints) {
    let retry = !read(overlay).sealed.is_empty();
    if !retry {
        if read(overlay).active.is_empty() {
            return;
        }
        if let Some(log) = log
            && let Err(e) = log.switch()
        {
            tracing::error!("kv checkpoint not begun: starting the other log file failed: {e}");
            return;
        }
        let mut overlay = overlay.write().unwrap_or_else(|p| p.into_inner());
        overlay.sealed = Arc::new(std::mem::take(&mut overlay.active));
    }
    checkpoints.begin();
}

/// The checkpoint thread, from the writer's side.
struct Checkpoints {
    jobs: Option<mpsc::Sender<()>>,
    done: mpsc::Receiver<()>,
    running: bool,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpoints {
    /// `log` (a file of the store's log, none in memory) names the store
    /// in messages.
    fn start(db: Arc<Db>, overlay: Shared, log: Option<std::path::PathBuf>) -> Self {
        let (jobs, work) = mpsc::channel::<()>();
        let (finished, done) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("prx-kv-checkpoint".into())
            .spawn(move || {
                for () in work {
                    // Tests of a checkpoint in progress hold it with a
                    // file beside the store.
                    #[cfg(test)]
                    while log
                        .as_ref()
                        .is_some_and(|l| l.with_file_name("hold-checkpoint").exists())
                    {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    commit_sealed(&db, &overlay, log.as_deref());
                    if finished.send(()).is_err() {
                        break;
                    }
                }
            });
        let thread = spawned
            .map_err(|e| {
                // Without the thread, checkpoints happen at close (and the
                // log keeps everything until then).
                tracing::error!("kv checkpoint thread not started: {e}");
            })
            .ok();
        Self {
            jobs: thread.is_some().then_some(jobs),
            done,
            running: false,
            thread,
        }
    }

    fn running(&mut self) -> bool {
        if self.running && self.done.try_recv().is_ok() {
            self.running = false;
        }
        self.running
    }

    fn begin(&mut self) {
        if let Some(jobs) = &self.jobs {
            self.running = jobs.send(()).is_ok();
        }
    }

    fn wait(&mut self) {
        if self.running {
            let _ = self.done.recv();
            self.running = false;
        }
    }

    /// Lets a running checkpoint finish, then ends the thread (and its
    /// hold on the database).
    fn stop(&mut self) {
        self.wait();
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Commits the sealed layer and drops it from the overlay. On failure it
/// stays (it is still the truth, and its log file is kept) and the writer
/// hands it over again at the next checkpoint.
fn commit_sealed(db: &Db, overlay: &Shared, log: Option<&std::path::Path>) {
    let sealed = read(overlay).sealed.clone();
    let log = log.map(|l| l.display().to_string());
    let log = log.as_deref().unwrap_or("memory");
    let current = match db.current() {
        Ok(current) => current,
        Err(e) => {
            tracing::error!("kv checkpoint not made (the log {log} keeps the writes): {e}");
            return;
        }
    };
    match commit(&current, &sealed) {
        Ok(()) => {
            overlay.write().unwrap_or_else(|p| p.into_inner()).sealed = Arc::default();
        }
        Err(e) => {
            tracing::error!(
                "kv checkpoint failed (the log {log} keeps the writes; retrying in a second): {e}"
            );
            if latched(&e) {
                db.reopen(current);
            }
        }
    }
}

/// A checkpoint on the calling thread, of everything pending: at open
/// (after a replay) and at close, when no checkpoint thread runs. Each
/// layer leaves the overlay only once redb holds it; then the log is
/// cleared.
pub(super) fn checkpoint_now(
    db: &Db,
    overlay: &Shared,
    log: Option<&mut Log>,
) -> Result<(), KvError> {
    let current = db.current().map_err(KvError::Storage)?;
    let sealed = read(overlay).sealed.clone();
    commit(&current, &sealed).map_err(storage)?;
    overlay.write().unwrap_or_else(|p| p.into_inner()).sealed = Arc::default();
    commit(&current, &read(overlay).active).map_err(storage)?;
    overlay.write().unwrap_or_else(|p| p.into_inner()).active = Layer::default();
    match log {
        Some(log) => log.clear().map_err(storage),
        None => Ok(()),
    }
}

/// Writes a layer's changes into redb in one durable commit.
fn commit(db: &Database, layer: &Layer) -> Result<(), redb::Error> {
    if layer.is_empty() {
        return Ok(());
    }
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    {
        let mut kv = txn.open_table(KV)?;
        for ((ns, key), value) in &layer.entries {
            match value {
                Some(value) => kv.insert((ns.as_str(), key.as_str()), value.as_slice()),
                None => kv.remove((ns.as_str(), key.as_str())),
            }?;
        }
        let mut usage = txn.open_table(USAGE)?;
        for (ns, used) in &layer.usage {
            usage.insert(ns.as_str(), *used)?;
        }
    }
    Ok(txn.commit()?)
}

fn commit_batch(
    db: &Db,
    overlay: &Shared,
    log: Option<&mut Log>,
    writes: &[Write],
) -> Vec<Result<Done, KvError>> {
    let mut batch = Batch::new(db, overlay);
    let results: Vec<_> = writes
        .iter()
        .map(|w| batch.apply(&w.namespace, &w.op))
        .collect();
    if let Some(log) = log
        && let Err(e) = log.append(&batch.effects)
    {
        // Nothing was published: the batch never happened.
        let at = log.path().display();
        let e = match e {
            AppendError::Refused(e) => KvError::LogRefused(format!("{at}: {e}")),
            AppendError::Broken(e) => KvError::LogFailed(format!("{at}: {e}")),
        };
        return writes.iter().map(|_| Err(e.clone())).collect();
    }
    batch.publish();
    results
}
