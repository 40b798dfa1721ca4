//! The compile cache: artifacts compiled by workers, kept in the
//! supervisor's state directory.
//!
//! Keys are a SHA-256 over the plugin's name, the component bytes, the
//! engine settings and the worker build. An artifact is machine code that a
//! compile worker sent back, so it is trusted no further than that worker's
//! plugin: it is only ever handed to a worker of the same plugin, never to
//! another plugin with the same bytes (which compiles its own). Files carry a checksum of their body, are
//! written to a temporary name and renamed, and are read only from this
//! directory: nothing from the plugins directory is ever deserialized, and
//! the plugins directory is never written.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use prx_ipc::EngineSettings;
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"PRXCWSM2";
/// The body starts one page in: a worker maps the file and runs the code
/// where it lies, which needs the body page-aligned. The header is the
/// magic, the SHA-256 of the body, and zeros.
pub const BODY_OFFSET: u64 = 4096;
const CHECKSUM: std::ops::Range<usize> = MAGIC.len()..MAGIC.len() + 32;

/// A stored artifact, open for a worker to map: `len` bytes from
/// `offset`. The file is opened read-only and close-on-exec; the spawner
/// hands a worker its own copy of the descriptor.
#[derive(Debug)]
pub struct CachedArtifact {
    pub file: std::fs::File,
    pub offset: u64,
    pub len: u64,
}

impl CachedArtifact {
    /// The artifact in an anonymous file sealed against every change, at
    /// the same offset a cache file holds it.
    pub fn sealed(artifact: &[u8]) -> std::io::Result<Self> {
        use nix::fcntl::{FcntlArg, SealFlag, fcntl};
        use nix::sys::memfd::{MFdFlags, memfd_create};
        use std::os::unix::fs::FileExt;
        let fd = memfd_create(
            c"prx-artifact",
            MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
        )?;
        let file = std::fs::File::from(fd);
        file.write_all_at(artifact, BODY_OFFSET)?;
        let seals = SealFlag::F_SEAL_SEAL
            | SealFlag::F_SEAL_SHRINK
            | SealFlag::F_SEAL_GROW
            | SealFlag::F_SEAL_WRITE;
        fcntl(&file, FcntlArg::F_ADD_SEALS(seals))?;
        Ok(Self {
            file,
            offset: BODY_OFFSET,
            len: artifact.len() as u64,
        })
    }
}

#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
    /// Identifies the worker build (version, size and mtime of the binary).
    worker_build: String,
    /// Entries whose checksum was checked, and the file it was checked in.
    verified: Arc<Mutex<HashMap<String, FileStamp>>>,
}

/// A file as it was when checked: inode, length, mtime (s, ns).
type FileStamp = (u64, u64, i64, i64);

impl CompileCache {
    pub fn open(dir: PathBuf, worker_binary: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let meta = std::fs::metadata(worker_binary)?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        Ok(Self {
            dir,
            worker_build: format!("{}:{}:{mtime}", env!("CARGO_PKG_VERSION"), meta.len()),
            verified: Arc::default(),
        })
    }

    /// The cache key of a plugin's component under given engine settings.
    pub fn key(&self, plugin: &str, wasm: &[u8], engine: &EngineSettings) -> String {
        let mut h = Sha256::new();
        h.update(b"prx-compile-cache\0");
        h.update(self.worker_build.as_bytes());
        h.update([0]);
        h.update(plugin.as_bytes());
        h.update([0]);
        h.update(engine.memory_reservation.to_le_bytes());
        h.update(engine.memory_guard.to_le_bytes());
        h.update(Sha256::digest(wasm));
        hex(&h.finalize())
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.cwasm"))
    }

    /// The artifact for `key`, if a whole and unaltered one is stored.
    ///
    /// The checksum is checked the first time this cache opens a file;
    /// later opens of the same file (same inode, length and modification
    /// time: entries are only ever renamed into place, never rewritten)
    /// skip it. A compiled Python component is 45 MB: a worker restart
    /// neither hashes nor reads it here, the worker maps it.
    pub fn get(&self, key: &str) -> Option<CachedArtifact> {
        use std::io::Read;
        use std::os::unix::fs::MetadataExt;
        let mut file = std::fs::File::open(self.path(key)).ok()?;
        let meta = file.metadata().ok()?;
        if !meta.is_file() || meta.len() <= BODY_OFFSET {
            return None;
        }
        let mut header = [0u8; BODY_OFFSET as usize];
        file.read_exact(&mut header).ok()?;
        if &header[..MAGIC.len()] != MAGIC {
            return None;
        }
        let stamp = (meta.ino(), meta.len(), meta.mtime(), meta.mtime_nsec());
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.get(key) != Some(&stamp) {
            let mut hasher = Sha256::new();
            std::io::copy(&mut &file, &mut hasher).ok()?;
            if hasher.finalize().as_slice() != &header[CHECKSUM] {
                tracing::warn!(key, "compile cache entry is corrupt; ignoring it");
                return None;
            }
            verified.insert(key.to_owned(), stamp);
        }
        Some(CachedArtifact {
            file,
            offset: BODY_OFFSET,
            len: meta.len() - BODY_OFFSET,
        })
    }

    /// Stores an artifact atomically.
    pub fn put(&self, key: &str, artifact: &[u8]) -> std::io::Result<()> {
        let mut header = [0u8; BODY_OFFSET as usize];
        header[..MAGIC.len()].copy_from_slice(MAGIC);
        header[CHECKSUM].copy_from_slice(&Sha256::digest(artifact));
        let mut tmp = tempfile_in(&self.dir)?;
        tmp.1.write_all(&header)?;
        tmp.1.write_all(artifact)?;
        tmp.1.sync_all()?;
        std::fs::rename(&tmp.0, self.path(key))
    }

    /// Stores an artifact and opens it for a worker; when the cache cannot
    /// (a full or read-only disk), the artifact goes into a sealed memfd
    /// instead, laid out like a cache file, so the start still works.
    pub fn put_and_open(&self, key: &str, artifact: &[u8]) -> std::io::Result<CachedArtifact> {
        match self.put(key, artifact).map(|()| self.get(key)) {
            Ok(Some(stored)) => Ok(stored),
            Ok(None) => CachedArtifact::sealed(artifact),
            Err(e) => {
                tracing::warn!(
                    key,
                    "cannot store the compiled artifact ({e}); keeping it in memory"
                );
                CachedArtifact::sealed(artifact)
            }
        }
    }

    /// Drops an entry a worker refused (e.g. made by another wasmtime).
    pub fn remove(&self, key: &str) {
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        let _ = std::fs::remove_file(self.path(key));
    }
}

fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!(".tmp-{}-{n}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    Ok((path, file))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> EngineSettings {
        EngineSettings {
            memory_reservation: 16 << 20,
            memory_guard: 64 << 10,
        }
    }

    /// The body of the stored artifact, read the way a worker maps it.
    fn body(cache: &CompileCache, key: &str) -> Option<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let artifact = cache.get(key)?;
        assert_eq!(artifact.offset % 4096, 0, "page-aligned");
        let mut bytes = vec![0; artifact.len as usize];
        artifact
            .file
            .read_exact_at(&mut bytes, artifact.offset)
            .expect("read");
        Some(bytes)
    }

    fn cache(dir: &Path) -> CompileCache {
        let bin = dir.join("bin");
        std::fs::write(&bin, b"worker").expect("write");
        CompileCache::open(dir.join("cache"), &bin).expect("open")
    }

    #[test]
    fn round_trip_and_keys_depend_on_inputs() {
        let dir = tempfile::tempdir().expect("tmp");
        let cache = cache(dir.path());
        let key = cache.key("echo", b"wasm", &settings());
        assert_eq!(key, cache.key("echo", b"wasm", &settings()));
        assert_ne!(key, cache.key("echo", b"wasm2", &settings()));
        let mut other = settings();
        other.memory_reservation *= 2;
        assert_ne!(key, cache.key("echo", b"wasm", &other));
        assert!(cache.get(&key).is_none());
        cache.put(&key, b"artifact").expect("put");
        assert_eq!(body(&cache, &key).as_deref(), Some(&b"artifact"[..]));
    }

    #[test]
    fn another_plugin_with_the_same_bytes_never_gets_an_artifact_it_did_not_compile() {
        let dir = tempfile::tempdir().expect("tmp");
        let cache = cache(dir.path());
        let evil = cache.key("evil", b"wasm", &settings());
        cache.put(&evil, b"bytes of its choosing").expect("put");
        let victim = cache.key("victim", b"wasm", &settings());
        assert_ne!(evil, victim);
        assert!(cache.get(&victim).is_none());
    }

    #[test]
    fn an_artifact_the_cache_cannot_store_is_sealed_in_memory() {
        use std::os::unix::fs::FileExt;
        let artifact = CachedArtifact::sealed(b"artifact").expect("memfd");
        let mut bytes = vec![0; artifact.len as usize];
        artifact
            .file
            .read_exact_at(&mut bytes, artifact.offset)
            .expect("read");
        assert_eq!(bytes, b"artifact");
        // Sealed: not even its owner can change it.
        assert!(artifact.file.write_all_at(b"x", artifact.offset).is_err());
        assert!(artifact.file.set_len(1).is_err());
    }

    #[test]
    fn corrupt_or_foreign_files_are_ignored() {
        let dir = tempfile::tempdir().expect("tmp");
        let cache = cache(dir.path());
        let key = cache.key("echo", b"wasm", &settings());
        cache.put(&key, b"artifact").expect("put");
        let path = cache.path(&key);
        let mut bytes = std::fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).expect("write");
        assert!(cache.get(&key).is_none());
        std::fs::write(&path, b"not ours").expect("write");
        assert!(cache.get(&key).is_none());
        // A file of an earlier layout (body right after a 40-byte header).
        let mut old = b"PRXCWSM1".to_vec();
        old.extend_from_slice(&Sha256::digest(b"artifact"));
        old.extend_from_slice(b"artifact");
        std::fs::write(&path, &old).expect("write");
        assert!(cache.get(&key).is_none());
    }

    #[test]
    fn a_checked_entry_is_checked_again_once_its_file_changes() {
        let dir = tempfile::tempdir().expect("tmp");
        let cache = cache(dir.path());
        let key = cache.key("echo", b"wasm", &settings());
        cache.put(&key, b"artifact").expect("put");
        assert_eq!(body(&cache, &key).as_deref(), Some(&b"artifact"[..]));
        assert_eq!(body(&cache, &key).as_deref(), Some(&b"artifact"[..]));
        // Another file renamed over it, with a body that does not match
        // its checksum: a new inode, so it is checked, and refused.
        let path = cache.path(&key);
        let mut bytes = std::fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let replacement = dir.path().join("replacement");
        std::fs::write(&replacement, &bytes).expect("write");
        std::fs::rename(&replacement, &path).expect("rename");
        assert!(cache.get(&key).is_none());
    }
}
