//! Building the engine and turning bytes into a component.
//!
//! The engine settings come from the supervisor ([`EngineSettings`]) because
//! they shape the compiled code and so are part of the compile cache key.

use std::fs::File;
use std::num::NonZeroUsize;
use std::os::unix::fs::FileExt;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use nix::sys::mman::{MapFlags, ProtFlags, mmap, mprotect, munmap};
use prx_ipc::{CodeSource, EngineSettings};
use wasmtime::component::Component;
use wasmtime::{Config, CustomCodeMemory, Engine, OptLevel};

/// How often the epoch advances. A deadline of N ms is armed as
/// `ceil(N / tick) + 1` ticks, so it fires between N and N + one tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Builds the engine every plugin runs on: Cranelift, the component model,
/// fuel, epoch interruption, and a bounded memory reservation (so the address
/// space of a worker can be limited).
pub fn build_engine(settings: &EngineSettings) -> wasmtime::Result<Engine> {
    Engine::new(&config(settings))
}

fn config(settings: &EngineSettings) -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .consume_fuel(true)
        .epoch_interruption(true)
        .cranelift_opt_level(OptLevel::Speed)
        .memory_reservation(settings.memory_reservation)
        .memory_guard_size(settings.memory_guard)
        .memory_reservation_for_growth(0)
        .parallel_compilation(true);
    config
}

/// Ticks the thread keeps going after the last call ends before it parks:
/// calls that follow one another closely (a busy plugin) then never pay
/// for waking it, and a worker left alone parks within 100 ms.
const LINGER_TICKS: u32 = 20;

/// The thread that advances the engine's epoch, only while a guest runs.
///
/// An idle worker must cost nothing: a thread that woke every tick for the
/// whole life of the worker cost 100 idle workers a third of a core. So the
/// thread parks whenever no guest code is running, and [`Ticker::running`]
/// wakes it (one `futex` wake, only when it was parked) when a call starts.
/// Deadlines are armed relative to the epoch at the start of a call, so
/// time spent parked never counts against a call.
#[derive(Clone, Debug)]
pub struct Ticker {
    shared: Arc<TickerShared>,
}

#[derive(Debug)]
struct TickerShared {
    /// Guest runs in progress (a worker has at most one; the count keeps
    /// the type honest for any caller).
    running: std::sync::atomic::AtomicUsize,
    /// Set by the thread just before it parks.
    parked: std::sync::atomic::AtomicBool,
    thread: std::thread::Thread,
}

/// Held while guest code may run; the ticker ticks until the last one
/// is dropped.
#[derive(Debug)]
pub struct Running {
    shared: Arc<TickerShared>,
}

impl Drop for TickerShared {
    /// The last handle is gone: the thread wakes, finds nothing and ends.
    fn drop(&mut self) {
        self.thread.unpark();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shared.running.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Ticker {
    /// Marks guest code as running until the guard is dropped, waking the
    /// thread if it was parked.
    pub fn running(&self) -> Running {
        self.shared.running.fetch_add(1, Ordering::SeqCst);
        if self.shared.parked.load(Ordering::SeqCst) {
            self.shared.thread.unpark();
        }
        Running {
            shared: self.shared.clone(),
        }
    }
}

/// Starts the thread that advances the engine's epoch while a
/// [`Ticker::running`] guard is held. It holds only a weak reference to
/// the engine, and ends once the engine and every [`Ticker`] are gone.
pub fn start_epoch_ticker(engine: &Engine) -> Ticker {
    let weak = engine.weak();
    let (handle_tx, handle_rx) = std::sync::mpsc::channel::<Arc<TickerShared>>();
    let thread = std::thread::Builder::new()
        .name("epoch".into())
        .spawn(move || {
            let Ok(shared) = handle_rx.recv() else { return };
            let shared = Arc::downgrade(&shared);
            let mut idle_ticks = 0u32;
            loop {
                let Some(state) = shared.upgrade() else {
                    return;
                };
                if state.running.load(Ordering::SeqCst) > 0 {
                    idle_ticks = 0;
                } else if idle_ticks < LINGER_TICKS {
                    idle_ticks += 1;
                } else {
                    state.parked.store(true, Ordering::SeqCst);
                    // Checked again after saying so: a call that started
                    // in between either saw `parked` (and unparks) or is
                    // seen here.
                    let idle = state.running.load(Ordering::SeqCst) == 0;
                    drop(state);
                    if idle {
                        std::thread::park();
                    }
                    if let Some(state) = shared.upgrade() {
                        state.parked.store(false, Ordering::SeqCst);
                    }
                    idle_ticks = 0;
                    continue;
                }
                drop(state);
                std::thread::sleep(EPOCH_TICK);
                let Some(engine) = weak.upgrade() else { return };
                engine.increment_epoch();
            }
        })
        .unwrap_or_else(|e| panic!("cannot start the epoch thread: {e}"));
    let shared = Arc::new(TickerShared {
        running: std::sync::atomic::AtomicUsize::new(0),
        parked: std::sync::atomic::AtomicBool::new(false),
        thread: thread.thread().clone(),
    });
    // The thread waits for this before its first look; it cannot fail
    // while the thread is alive.
    let _ = handle_tx.send(shared.clone());
    Ticker { shared }
}

/// Compiles component bytes (validation included) to an artifact, without
/// loading it: none of its code becomes executable in this process, so a
/// compile worker runs under a seccomp filter that allows no executable
/// memory at all.
pub fn precompile(engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Vec<u8>> {
    engine.precompile_component(wasm)
}

/// Compiles component bytes and loads them (the in-process baseline of the
/// benchmarks; a worker never does both).
pub fn compile(engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Component> {
    Component::new(engine, wasm)
}

/// Loads an artifact that this system's own compiler produced.
///
/// # Safety
/// `artifact` must come from [`Component::serialize`] of a worker of the same
/// build with the same [`EngineSettings`]; the supervisor only sends
/// artifacts it stored itself, keyed by those. wasmtime still checks the
/// version and settings recorded in the artifact.
pub unsafe fn deserialize(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: forwarded to the caller: the bytes are a serialized component
    // made by this build with these settings.
    unsafe { Component::deserialize(engine, artifact) }
}

/// Checks that `file` is a regular file holding `len` bytes at `offset`.
/// A worker calls it before seccomp's loading stage too, which answers a
/// descriptor's metadata only by `fstat` (the C library asks the kernel
/// by a path-taking call the filter refuses).
pub fn check_artifact(file: &File, offset: u64, len: u64) -> wasmtime::Result<()> {
    let meta = file.metadata()?;
    let end = offset.checked_add(len);
    if !meta.is_file() || len == 0 || end.is_none_or(|end| end > meta.len()) {
        wasmtime::bail!(
            "the artifact descriptor does not hold {len} bytes at offset {offset} (a {} of {} bytes)",
            if meta.is_file() { "file" } else { "non-file" },
            meta.len()
        );
    }
    Ok(())
}

/// The artifact's file offset and the addresses its code is published at
/// must be multiples of this; the compile cache stores bodies 4 KiB in.
const ARTIFACT_ALIGN: usize = 4096;

/// Loads an artifact from the compile cache: `len` bytes at `offset` in
/// `file`, a read-only descriptor the supervisor passed. The bytes are
/// mapped private and read-only, and only the code section is made
/// executable, in place; nothing is copied, and pages come from the page
/// cache as they are touched. When the mapping cannot be made executable
/// the bytes are read and deserialized the usual way instead (slower, same
/// result), and the caller is told which happened.
///
/// The mapping is never unmapped: the component lives as long as the
/// worker. `file` is closed on return either way.
///
/// The caller checks the descriptor with [`check_artifact`] first.
///
/// # Safety
/// The file must hold, at `offset`, an artifact that [`Component::serialize`]
/// of a worker of this build produced with these settings (the supervisor
/// checks its checksum and keys it by both), and must not change while the
/// worker runs (cache entries are only ever renamed into place).
pub unsafe fn load_artifact(
    settings: &EngineSettings,
    file: File,
    offset: u64,
    len: u64,
) -> wasmtime::Result<(Engine, Component, CodeSource)> {
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(0) as usize;
    if page == ARTIFACT_ALIGN && offset.is_multiple_of(ARTIFACT_ALIGN as u64) {
        let mut config = config(settings);
        config.with_custom_code_memory(Some(Arc::new(PublishInPlace)));
        let engine = Engine::new(&config)?;
        // SAFETY: forwarded to the caller.
        if let Ok(component) = unsafe { map_in_place(&engine, &file, offset, len) } {
            return Ok((engine, component, CodeSource::Mapped));
        }
    }
    let mut bytes = vec![0; usize::try_from(len)?];
    file.read_exact_at(&mut bytes, offset)?;
    drop(file);
    let engine = build_engine(settings)?;
    // SAFETY: forwarded to the caller.
    let component = unsafe { deserialize(&engine, &bytes) }?;
    Ok((engine, component, CodeSource::Copied))
}

/// Maps the artifact and deserializes it where it lies; unmaps it again
/// if that fails.
///
/// # Safety
/// As [`load_artifact`]; `engine` publishes code with [`PublishInPlace`].
unsafe fn map_in_place(
    engine: &Engine,
    file: &File,
    offset: u64,
    len: u64,
) -> wasmtime::Result<Component> {
    let size =
        NonZeroUsize::new(usize::try_from(len)?).ok_or_else(|| wasmtime::format_err!("empty"))?;
    // SAFETY: a fresh private read-only mapping of a file this process
    // only reads; no existing memory is affected.
    let base = unsafe {
        mmap(
            None,
            size,
            ProtFlags::PROT_READ,
            MapFlags::MAP_PRIVATE,
            file,
            i64::try_from(offset)?,
        )
    }?;
    let memory = NonNull::slice_from_raw_parts(base.cast::<u8>(), size.get());
    // SAFETY: the memory is the artifact (caller's contract), stays mapped
    // for the life of the process on success, and nothing writes to it.
    match unsafe { Component::deserialize_raw(engine, memory) } {
        Ok(component) => Ok(component),
        Err(e) => {
            // SAFETY: the failed deserialize dropped everything that
            // referred to the mapping.
            let _ = unsafe { munmap(base, size.get()) };
            Err(e)
        }
    }
}

/// Publishes code with `mprotect`: the code section of a mapped artifact
/// goes from read-only to read-execute, never writable and executable at
/// once. wasmtime does this itself for memory it allocated; memory it is
/// handed (`deserialize_raw`) needs this hook. On x86-64 no instruction
/// cache maintenance is needed, and on other architectures the kernel
/// keeps file pages mapped executable coherent.
struct PublishInPlace;

impl PublishInPlace {
    fn protect(ptr: *const u8, len: usize, prot: ProtFlags) -> wasmtime::Result<()> {
        let Some(addr) = NonNull::new(ptr.cast_mut().cast()) else {
            wasmtime::bail!("null code address");
        };
        // SAFETY: wasmtime hands the text section of a code memory it owns
        // or was given, page-aligned as `required_alignment` asks.
        unsafe { mprotect(addr, len, prot) }
            .map_err(|e| wasmtime::format_err!("cannot change the protection of code memory: {e}"))
    }
}

impl CustomCodeMemory for PublishInPlace {
    fn required_alignment(&self) -> usize {
        ARTIFACT_ALIGN
    }

    fn publish_executable(&self, ptr: *const u8, len: usize) -> wasmtime::Result<()> {
        Self::protect(ptr, len, ProtFlags::PROT_READ | ProtFlags::PROT_EXEC)
    }

    fn unpublish_executable(&self, ptr: *const u8, len: usize) -> wasmtime::Result<()> {
        Self::protect(ptr, len, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// The smallest component: the preamble and no sections.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    fn settings() -> EngineSettings {
        EngineSettings {
            memory_reservation: 16 << 20,
            memory_guard: 64 << 10,
        }
    }

    /// A compiled artifact written `offset` bytes into a file.
    fn artifact_file(offset: usize) -> (File, u64) {
        let engine = build_engine(&settings()).expect("engine");
        let artifact = compile(&engine, EMPTY_COMPONENT)
            .expect("compile")
            .serialize()
            .expect("serialize");
        let mut file = tempfile::tempfile().expect("tmp");
        file.write_all(&vec![0; offset]).expect("pad");
        file.write_all(&artifact).expect("write");
        (file, artifact.len() as u64)
    }

    fn load(file: File, offset: u64, len: u64) -> wasmtime::Result<CodeSource> {
        check_artifact(&file, offset, len)?;
        // SAFETY: the files here hold artifacts this build made, or are
        // refused before anything is deserialized.
        unsafe { load_artifact(&settings(), file, offset, len) }.map(|(_, _, code)| code)
    }

    #[test]
    fn a_page_aligned_artifact_is_mapped_in_place() {
        let (file, len) = artifact_file(4096);
        assert_eq!(load(file, 4096, len).expect("load"), CodeSource::Mapped);
    }

    #[test]
    fn an_unaligned_artifact_is_copied_instead() {
        let (file, len) = artifact_file(40);
        assert_eq!(load(file, 40, len).expect("load"), CodeSource::Copied);
    }

    #[test]
    fn a_short_file_or_a_pipe_is_refused_with_what_it_holds() {
        let (file, len) = artifact_file(4096);
        let err = load(file, 4096, len + 1).expect_err("short");
        assert!(err.to_string().contains("does not hold"), "{err}");
        let (file, len) = artifact_file(4096);
        assert!(load(file, u64::MAX, len).is_err(), "offset overflow");
        let (file, _) = artifact_file(4096);
        assert!(load(file, 4096, 0).is_err(), "empty");
        let (read, _write) = nix::unistd::pipe().expect("pipe");
        let err = load(File::from(read), 0, 100).expect_err("pipe");
        assert!(err.to_string().contains("non-file"), "{err}");
    }

    #[test]
    fn bytes_that_are_not_an_artifact_are_refused_not_run() {
        let mut file = tempfile::tempfile().expect("tmp");
        file.write_all(&[0x90; 8192]).expect("write");
        assert!(load(file, 4096, 4096).is_err());
    }
}
