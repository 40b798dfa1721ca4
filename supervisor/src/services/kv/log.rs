//! The kv store's two log files, which take turns so that a checkpoint
//! (a durable redb commit, tens of milliseconds for a second of busy
//! writes) never stops the writes.
//!
//! Writes are appended to the *active* file. A checkpoint begins by
//! *switching*: the other file is started over with the next generation
//! and becomes active, and the changes logged in the file just left are
//! committed to redb on another thread while new writes go on being
//! logged. The next switch may only come once that commit is done, since it
//! starts that file over.
//!
//! So the two files hold two consecutive periods of the store's history:
//! generation `g` (being checkpointed, or already in redb) and `g + 1`
//! (not yet in redb). After a crash both are replayed, the older first.
//! Replaying a period redb already holds is harmless: the records are
//! effects (the value a key came to hold), and the periods are replayed in
//! order up to the last acknowledged write, so every key ends at its last
//! value. A file whose generation is not the other's predecessor holds a
//! period older than the last checkpoint and is never replayed: replaying
//! it after a gap could bring back a value a later checkpoint replaced.

use std::path::{Path, PathBuf};

use super::wal::{AppendError, Effect, Wal};

/// The pair of log files beside one database.
#[derive(Debug)]
pub struct Log {
    files: [Wal; 2],
    /// Index of the file records go to.
    active: usize,
}

impl Log {
    /// The files of the store at `db_path`: `<db>.wal` and `<db>.wal2`.
    pub fn paths(db_path: &Path) -> [PathBuf; 2] {
        [
            db_path.with_extension("wal"),
            db_path.with_extension("wal2"),
        ]
    }

    /// Opens (or creates) both files and reads the effects to replay, in
    /// order. The caller applies them, makes them durable in redb, then
    /// calls [`Log::clear`] before appending.
    pub fn open(db_path: &Path) -> std::io::Result<(Self, Vec<Effect>)> {
        let [first, second] = Self::paths(db_path);
        let (first, first_effects) = Wal::open(&first)?;
        let (second, second_effects) = Wal::open(&second)?;
        let effects = match (first.generation(), second.generation()) {
            (Some(a), Some(b)) if b == a.wrapping_add(1) => {
                [first_effects, second_effects].concat()
            }
            (Some(a), Some(b)) if a == b.wrapping_add(1) => {
                [second_effects, first_effects].concat()
            }
            (Some(a), Some(b)) => {
                // Not consecutive: only the newer period counts. Which is
                // newer is the one the other cannot precede by a switch;
                // generations only grow, so the larger one (modulo wrap).
                if b.wrapping_sub(a) < u64::MAX / 2 {
                    second_effects
                } else {
                    first_effects
                }
            }
            (Some(_), None) => first_effects,
            (None, Some(_)) => second_effects,
            (None, None) => Vec::new(),
        };
        let log = Self {
            files: [first, second],
            active: 0,
        };
        Ok((log, effects))
    }

    /// Appends the effects of one batch to the active file and syncs.
    pub fn append(&mut self, effects: &[Effect]) -> Result<(), AppendError> {
        self.files[self.active].append(effects)
    }

    /// Bytes of records in the active file.
    pub fn len(&self) -> u64 {
        self.files[self.active].len()
    }

    /// The active file, for messages.
    pub fn path(&self) -> &Path {
        self.files[self.active].path()
    }

    fn next_generation(&self) -> u64 {
        let newest = self
            .files
            .iter()
            .filter_map(Wal::generation)
            .reduce(|a, b| {
                if b.wrapping_sub(a) < u64::MAX / 2 {
                    b
                } else {
                    a
                }
            });
        newest.map_or_else(|| fastrand::u64(..), |g| g.wrapping_add(1))
    }

    /// Starts the other file over as the next generation and makes it
    /// active. The caller must know that everything the other file held
    /// is already in redb (the checkpoint of its period is done).
    pub fn switch(&mut self) -> std::io::Result<()> {
        let next = self.next_generation();
        let other = 1 - self.active;
        self.files[other].reset(next)?;
        self.active = other;
        Ok(())
    }

    /// Retires both periods once everything logged is in redb: nothing
    /// left in either file is ever replayed.
    pub fn clear(&mut self) -> std::io::Result<()> {
        self.switch()?;
        self.switch()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(key: &str, value: &str) -> Effect {
        Effect::Set {
            namespace: "ns".into(),
            key: key.into(),
            value: value.as_bytes().to_vec(),
        }
    }

    /// The file records are not going to.
    fn idle_file(log: &Log, db: &Path) -> PathBuf {
        let [first, second] = Log::paths(db);
        if log.path() == first { second } else { first }
    }

    #[test]
    fn both_periods_are_replayed_in_order_after_a_crash_mid_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("kv.redb");
        let (mut log, replay) = Log::open(&db).unwrap();
        assert!(replay.is_empty());
        log.clear().unwrap();
        log.append(&[set("k", "1"), set("a", "x")]).unwrap();
        // A checkpoint begins: later writes go to the other file.
        log.switch().unwrap();
        log.append(&[set("k", "2")]).unwrap();
        drop(log);
        let (_, replay) = Log::open(&db).unwrap();
        assert_eq!(replay, [set("k", "1"), set("a", "x"), set("k", "2")]);
        // The same, with the files' roles the other way round.
        let (mut log, _) = Log::open(&db).unwrap();
        log.clear().unwrap();
        log.switch().unwrap();
        log.append(&[set("k", "3")]).unwrap();
        log.switch().unwrap();
        log.append(&[set("k", "4")]).unwrap();
        drop(log);
        assert_eq!(Log::open(&db).unwrap().1, [set("k", "3"), set("k", "4")]);
    }

    #[test]
    fn a_period_older_than_the_last_checkpoint_is_never_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("kv.redb");
        let (mut log, _) = Log::open(&db).unwrap();
        log.clear().unwrap();
        log.append(&[set("k", "old")]).unwrap();
        log.switch().unwrap();
        log.append(&[set("k", "mid")]).unwrap();
        // The second switch starts the first file over: "old" is gone,
        // "mid" is the older period, "new" the newer.
        log.switch().unwrap();
        log.append(&[set("k", "new")]).unwrap();
        drop(log);
        assert_eq!(
            Log::open(&db).unwrap().1,
            [set("k", "mid"), set("k", "new")]
        );
        // A stale file beside a newer one with a gap between them (a copy
        // put back by hand, say) is left out.
        let stale = std::fs::read(&Log::paths(&db)[1]).unwrap();
        let (mut log, _) = Log::open(&db).unwrap();
        log.clear().unwrap();
        log.append(&[set("k", "latest")]).unwrap();
        let other = idle_file(&log, &db);
        drop(log);
        std::fs::write(other, &stale).unwrap();
        assert_eq!(Log::open(&db).unwrap().1, [set("k", "latest")]);
    }

    #[test]
    fn a_switch_torn_before_its_header_landed_keeps_the_older_period() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("kv.redb");
        let (mut log, _) = Log::open(&db).unwrap();
        log.clear().unwrap();
        log.append(&[set("k", "1")]).unwrap();
        let other = idle_file(&log, &db);
        drop(log);
        // The other file's header half written: no intact header at all.
        let mut bytes = std::fs::read(&other).unwrap();
        bytes[..24].fill(0xAB);
        std::fs::write(&other, &bytes).unwrap();
        assert_eq!(Log::open(&db).unwrap().1, [set("k", "1")]);
    }

    #[test]
    fn generations_compare_across_the_wrap() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("kv.redb");
        let (mut log, _) = Log::open(&db).unwrap();
        log.files[0].reset(u64::MAX).unwrap();
        log.active = 0;
        log.append(&[set("k", "before")]).unwrap();
        log.switch().unwrap();
        log.append(&[set("k", "after")]).unwrap();
        assert_eq!(log.files[1].generation(), Some(0));
        drop(log);
        assert_eq!(
            Log::open(&db).unwrap().1,
            [set("k", "before"), set("k", "after")]
        );
    }
}
