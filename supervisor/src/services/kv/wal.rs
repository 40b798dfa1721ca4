//! The kv store's write-ahead log: what makes a write durable before redb
//! has made it so.
//!
//! A durable redb commit rewrites every B-tree page a batch touched and
//! then syncs the file: about 0.5 ms for eight small writes on the machine
//! we measure on, which caps eight concurrent writers near 9,000 writes/s.
//! Appending the same changes to a log and syncing that costs about a
//! third of it. So a batch is appended here and synced, then committed to
//! redb without a sync ([`redb::Durability::None`]); every second (or
//! every [`CHECKPOINT_BYTES`]) one durable redb commit makes all of those
//! permanent and the log starts over.
//!
//! The file is written in place, never grown on the hot path: it is
//! filled with zeros up to [`PREALLOCATED`] once, so syncing a batch
//! flushes data only, not the file's size (on ext4 that saves the
//! journal commit, a third of the sync). Starting over does not truncate
//! either: a header at the start holds a *generation*, and every record's
//! CRC covers the generation, so records of earlier generations still in
//! the file read as garbage. This module is one such file; the store keeps
//! two and takes turns ([`super::log`]), so that a checkpoint never stops
//! the writes.
//!
//! Header: `b"PRXKVWAL" | generation: u64 | crc32: u32 | 0u32` (24 bytes,
//! little-endian). Record: `len: u32 | crc32(generation, body): u32 | body`.
//! Bodies are *effects*, not requests: an increment is logged as the value
//! it produced, so replaying a record twice changes nothing. Replay stops
//! at the first torn or foreign record: a record is synced before its
//! write is acknowledged, so whatever follows was never acknowledged. The
//! log is started over right after every replay, so such a tail is never
//! read again.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Bytes of zeros the log is given once; a checkpoint comes before the
/// records fill it (a large batch may still grow the file).
pub const PREALLOCATED: u64 = 4 << 20;
/// Start a new log once this many bytes of records are in it.
pub const CHECKPOINT_BYTES: u64 = PREALLOCATED - 64 * 1024;
/// Largest body accepted when reading: a key, a namespace and a value,
/// none of which can come near it.
const MAX_BODY: u32 = 64 << 20;
const MAGIC: &[u8; 8] = b"PRXKVWAL";
const HEADER_LEN: u64 = 24;

/// One change to the store, as replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Set {
        namespace: String,
        key: String,
        value: Vec<u8>,
    },
    Delete {
        namespace: String,
        key: String,
    },
}

const SET: u8 = 1;
const DELETE: u8 = 2;

impl Effect {
    fn encode(&self, out: &mut Vec<u8>) {
        let field = |out: &mut Vec<u8>, bytes: &[u8]| {
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        };
        match self {
            Self::Set {
                namespace,
                key,
                value,
            } => {
                out.push(SET);
                field(out, namespace.as_bytes());
                field(out, key.as_bytes());
                field(out, value);
            }
            Self::Delete { namespace, key } => {
                out.push(DELETE);
                field(out, namespace.as_bytes());
                field(out, key.as_bytes());
            }
        }
    }

    fn decode(body: &[u8]) -> Option<Self> {
        let (&kind, mut rest) = body.split_first()?;
        let mut field = || -> Option<Vec<u8>> {
            let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            let bytes = rest.get(4..4 + len)?.to_vec();
            rest = &rest[4 + len..];
            Some(bytes)
        };
        let namespace = String::from_utf8(field()?).ok()?;
        let key = String::from_utf8(field()?).ok()?;
        let effect = match kind {
            SET => Self::Set {
                namespace,
                key,
                value: field()?,
            },
            DELETE => Self::Delete { namespace, key },
            _ => return None,
        };
        rest.is_empty().then_some(effect)
    }
}

fn record_crc(generation: u64, body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&generation.to_le_bytes());
    hasher.update(body);
    hasher.finalize()
}

fn header(generation: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0; HEADER_LEN as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..16].copy_from_slice(&generation.to_le_bytes());
    let crc = crc32fast::hash(&h[..16]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The generation in an intact header.
fn read_header(bytes: &[u8]) -> Option<u64> {
    let h = bytes.get(..HEADER_LEN as usize)?;
    let crc = u32::from_le_bytes(h[16..20].try_into().ok()?);
    (&h[..8] == MAGIC && crc32fast::hash(&h[..16]) == crc)
        .then(|| u64::from_le_bytes(h[8..16].try_into().unwrap_or_default()))
}

/// The open log.
#[derive(Debug)]
pub struct Wal {
    file: File,
    path: PathBuf,
    /// `None` until the file has an intact header.
    generation: Option<u64>,
    /// Where the next record goes.
    end: u64,
    /// The file's length: what an append that failed must not grow it past.
    size: u64,
    buffer: Vec<u8>,
}

/// Why an append failed.
#[derive(Debug)]
pub enum AppendError {
    /// The bytes could not be written (a full disk, a quota): the file is
    /// as it was, and a later append may work.
    Refused(std::io::Error),
    /// A sync failed, or the file could not be put back as it was: what
    /// reached the disk is unknown.
    Broken(std::io::Error),
}

impl std::fmt::Display for AppendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(e) | Self::Broken(e) => e.fmt(f),
        }
    }
}

impl Wal {
    /// Opens (or creates) the file and reads the effects of every intact
    /// record of its generation. Nothing is appended before a
    /// [`Wal::reset`] names the generation (which also retires a torn
    /// tail).
    pub fn open(path: &Path) -> std::io::Result<(Self, Vec<Effect>)> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        // No intact header: a new file, or a crash while the header was
        // rewritten, before any record of the new generation existed.
        let generation = read_header(&bytes);
        let (effects, end) = match generation {
            Some(generation) => read_records(&bytes[HEADER_LEN as usize..], generation),
            None => (Vec::new(), 0),
        };
        let end = HEADER_LEN + end as u64;
        if (bytes.len() as u64) < PREALLOCATED {
            let zeros = vec![0; (PREALLOCATED - bytes.len() as u64) as usize];
            file.write_all_at(&zeros, bytes.len() as u64)?;
            file.sync_all()?;
        }
        let size = PREALLOCATED.max(bytes.len() as u64);
        // The log's directory entry must outlive a crash too.
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        let wal = Self {
            file,
            path: path.to_owned(),
            generation,
            end,
            size,
            buffer: Vec::new(),
        };
        Ok((wal, effects))
    }

    /// Appends the effects of one batch and syncs: when this returns Ok,
    /// they survive a crash.
    pub fn append(&mut self, effects: &[Effect]) -> Result<(), AppendError> {
        if effects.is_empty() {
            return Ok(());
        }
        let generation = self.generation.ok_or_else(|| {
            AppendError::Broken(std::io::Error::other(
                "the log was appended to before it was started",
            ))
        })?;
        // Tests of the failure paths name their directory so.
        #[cfg(test)]
        if self.path.to_string_lossy().contains("inject-sync-failure") {
            return Err(AppendError::Broken(std::io::Error::other(
                "injected sync failure",
            )));
        }
        self.buffer.clear();
        let mut body = Vec::new();
        for effect in effects {
            body.clear();
            effect.encode(&mut body);
            self.buffer
                .extend_from_slice(&(body.len() as u32).to_le_bytes());
            self.buffer
                .extend_from_slice(&record_crc(generation, &body).to_le_bytes());
            self.buffer.extend_from_slice(&body);
        }
        let to = self.end + self.buffer.len() as u64;
        if let Err(e) = self.file.write_all_at(&self.buffer, self.end) {
            // Whatever part reached the file must not be replayed, and a
            // file that grew must shrink back (that never needs space).
            return match self.take_back(to) {
                Ok(()) => Err(AppendError::Refused(e)),
                Err(e) => Err(AppendError::Broken(e)),
            };
        }
        if let Err(e) = self.file.sync_data() {
            let _ = self.erase(self.end, to);
            return Err(AppendError::Broken(e));
        }
        self.end = to;
        self.size = self.size.max(to);
        Ok(())
    }

    /// Undoes a write of `end..to` that failed: zeros the part inside the
    /// file's old length (blocks it already had), cuts off what it grew
    /// by, and syncs.
    fn take_back(&mut self, to: u64) -> std::io::Result<()> {
        let inside = to.min(self.size);
        if inside > self.end {
            self.file
                .write_all_at(&vec![0; (inside - self.end) as usize], self.end)?;
        }
        if self.file.metadata()?.len() > self.size {
            self.file.set_len(self.size)?;
        }
        self.file.sync_data()
    }

    /// Bytes of records in the log.
    pub fn len(&self) -> u64 {
        self.end - HEADER_LEN
    }

    /// The generation of the intact header, if there is one.
    pub fn generation(&self) -> Option<u64> {
        self.generation
    }

    /// Starts the file over as `generation`: every record in it is now
    /// foreign. Returns once the header is on disk.
    pub fn reset(&mut self, generation: u64) -> std::io::Result<()> {
        self.file.write_all_at(&header(generation), 0)?;
        self.file.sync_data()?;
        self.generation = Some(generation);
        self.end = HEADER_LEN;
        Ok(())
    }

    /// Zeros `from..to` and syncs: a zeroed record never reads as intact.
    fn erase(&mut self, from: u64, to: u64) -> std::io::Result<()> {
        if to > from {
            self.file
                .write_all_at(&vec![0; (to - from) as usize], from)?;
            self.file.sync_data()?;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The effects of the intact records of `generation`, and how many bytes
/// they span.
fn read_records(bytes: &[u8], generation: u64) -> (Vec<Effect>, usize) {
    let mut effects = Vec::new();
    let mut at = 0;
    while let Some(head) = bytes.get(at..at + 8) {
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len > MAX_BODY {
            break;
        }
        let Some(body) = bytes.get(at + 8..at + 8 + len as usize) else {
            break;
        };
        if record_crc(generation, body) != crc {
            break;
        }
        let Some(effect) = Effect::decode(body) else {
            break;
        };
        effects.push(effect);
        at += 8 + len as usize;
    }
    (effects, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(key: &str, value: &[u8]) -> Effect {
        Effect::Set {
            namespace: "ns".into(),
            key: key.into(),
            value: value.to_vec(),
        }
    }

    #[test]
    fn effects_round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.wal");
        let effects = vec![
            set("", b""),
            set("k\0with nul", &[0, 1, 2]),
            Effect::Delete {
                namespace: "other".into(),
                key: "k".into(),
            },
        ];
        {
            let (mut wal, replay) = Wal::open(&path).unwrap();
            assert!(replay.is_empty());
            wal.reset(1).unwrap();
            assert_eq!(wal.len(), 0);
            wal.append(&effects[..2]).unwrap();
            wal.append(&effects[2..]).unwrap();
        }
        let (wal, replay) = Wal::open(&path).unwrap();
        assert_eq!(replay, effects);
        assert_ne!(wal.len(), 0);
        // Written in place: the file never grew past its zeros.
        assert_eq!(std::fs::metadata(&path).unwrap().len(), PREALLOCATED);
    }

    #[test]
    fn a_torn_or_corrupt_tail_is_cut_and_what_precedes_it_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.wal");
        let (mut wal, _) = Wal::open(&path).unwrap();
        wal.reset(2).unwrap();
        wal.append(&[set("a", b"1")]).unwrap();
        let good = (HEADER_LEN + wal.len()) as usize;
        wal.append(&[set("b", b"2")]).unwrap();
        let end = (HEADER_LEN + wal.len()) as usize;
        drop(wal);
        let full = std::fs::read(&path).unwrap();
        // Every cut inside the second record (the rest zeros, as a crash
        // during the write leaves it), and a flipped bit in it.
        for cut in good..end {
            let mut torn = full.clone();
            torn[cut..end].fill(0);
            std::fs::write(&path, &torn).unwrap();
            let (_, replay) = Wal::open(&path).unwrap();
            assert_eq!(replay, [set("a", b"1")], "cut at {cut}");
        }
        let mut flipped = full.clone();
        flipped[end - 1] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        let (_, replay) = Wal::open(&path).unwrap();
        assert_eq!(replay, [set("a", b"1")]);
    }

    #[test]
    fn records_of_an_earlier_generation_are_never_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.wal");
        let (mut wal, _) = Wal::open(&path).unwrap();
        wal.reset(3).unwrap();
        wal.append(&[set("old", b"1"), set("older", b"2")]).unwrap();
        // A checkpoint: the records are now in redb; the log starts over
        // in place, the old bytes still there.
        wal.reset(4).unwrap();
        wal.append(&[set("new", b"3")]).unwrap();
        drop(wal);
        let (mut wal, replay) = Wal::open(&path).unwrap();
        assert_eq!(replay, [set("new", b"3")]);
        wal.reset(5).unwrap();
        drop(wal);
        assert!(Wal::open(&path).unwrap().1.is_empty());
    }

    #[test]
    fn garbage_is_never_replayed() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..2000 {
            let len = rng.usize(0..64);
            let bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            let (effects, at) = read_records(&bytes, rng.u64(..));
            assert!(effects.is_empty() && at == 0);
            assert_eq!(read_header(&bytes), None);
        }
    }
}
