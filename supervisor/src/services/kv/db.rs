//! The redb database the kv and memory stores share, and its way back from
//! a disk error. After one failed write or sync (a full disk, an I/O error)
//! redb refuses every later operation, reads included, until the file is
//! opened again. So the database is held here, and whoever meets such a
//! failure hands the failed instance back: once nobody else uses it, the
//! file is closed and opened again (and, while that fails, again at most
//! every [`RETRY`] on the next use). What redb had committed is on disk;
//! what the kv store acknowledged since is in its log and its overlay, and
//! its next checkpoint commits it again.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use redb::Database;

/// How long a reopening waits for the failed instance's last users (read
/// transactions of a few milliseconds) to let go of the file's lock.
const LET_GO_WAIT: Duration = Duration::from_secs(2);
/// How often a closed database is tried again.
const RETRY: Duration = Duration::from_millis(500);

pub struct Db {
    /// The file, or `None` for a database in memory (which has no disk to
    /// fail and is never reopened).
    path: Option<PathBuf>,
    state: RwLock<State>,
}

struct State {
    /// `None` while closed after a failure.
    db: Option<Arc<Database>>,
    /// Why the last opening failed.
    error: String,
    tried: Instant,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.path).finish()
    }
}

/// Whether `e` left redb refusing everything until it is opened again.
pub fn latched(e: &redb::Error) -> bool {
    matches!(e, redb::Error::Io(_) | redb::Error::PreviousIo)
}

impl Db {
    pub fn new(db: Database, path: Option<PathBuf>) -> Arc<Self> {
        Arc::new(Self {
            path,
            state: RwLock::new(State {
                db: Some(Arc::new(db)),
                error: String::new(),
                tried: Instant::now(),
            }),
        })
    }

    /// The database as it is now, or why it is closed. Hold it for one
    /// operation only: a reopening waits for every holder of a failed
    /// instance.
    pub fn current(&self) -> Result<Arc<Database>, String> {
        if let Some(db) = &self.state.read().unwrap_or_else(|p| p.into_inner()).db {
            return Ok(db.clone());
        }
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        if state.db.is_none() && state.tried.elapsed() >= RETRY {
            // One try, not a wait: callers may be on the async threads.
            self.open(&mut state, Duration::ZERO);
        }
        state.db.clone().ok_or_else(|| {
            format!(
                "the kv database is closed after a disk error ({}); it opens again by itself once the disk allows (free space on it, or mend it)",
                state.error
            )
        })
    }

    /// `failed` met a disk error that latched: closes it (once its other
    /// users let go) and opens the file again, unless that has already
    /// happened.
    pub fn reopen(&self, failed: Arc<Database>) {
        let Some(path) = &self.path else {
            return;
        };
        // Let go of it before waiting for the lock: two that met the same
        // failure must not each wait for the other's reference.
        let failed_at = Arc::as_ptr(&failed);
        drop(failed);
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        match &state.db {
            // The slot still holds it, so the address is still its own.
            Some(db) if Arc::as_ptr(db) == failed_at => {}
            _ => return,
        }
        // New users wait on the lock meanwhile.
        let began = Instant::now();
        while state
            .db
            .as_ref()
            .is_some_and(|db| Arc::strong_count(db) > 1)
        {
            if began.elapsed() > LET_GO_WAIT {
                tracing::error!(path = %path.display(), "kv database not reopened: the failed instance is still in use");
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        state.db = None;
        self.open(&mut state, LET_GO_WAIT);
    }

    /// Opens the file, waiting up to `patience` for a closed instance's
    /// last transaction to let go of its lock.
    fn open(&self, state: &mut State, patience: Duration) {
        let Some(path) = &self.path else {
            return;
        };
        state.tried = Instant::now();
        loop {
            match Database::create(path) {
                Ok(db) => {
                    state.db = Some(Arc::new(db));
                    tracing::warn!(path = %path.display(), "kv database opened again after a disk error");
                    return;
                }
                // The last user of the closed instance is still letting go.
                Err(redb::DatabaseError::DatabaseAlreadyOpen)
                    if state.tried.elapsed() < patience =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => {
                    state.error = e.to_string();
                    tracing::error!(path = %path.display(), "kv database not opened again yet: {e}");
                    return;
                }
            }
        }
    }
}
