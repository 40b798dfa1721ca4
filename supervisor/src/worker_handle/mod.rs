//! One worker process as the supervisor sees it: spawn, handshake,
//! invocations with deadlines, host calls, exit.
//!
//! Trust: everything read from the worker is untrusted. Replies are matched
//! only to request ids this module issued; a reply to any other id, a frame
//! of the wrong kind for the phase, or a malformed frame kills the worker.
//! The plugin's identity is the [`Worker`] value created for this process,
//! never anything a frame says.

mod calls;
pub mod cgroup;
mod errors;
mod exit;
mod frames;
mod handshake;
mod liveness;
mod serve;
mod spawn;
pub mod verify;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prx_ipc::{CodeSource, EngineSettings, Interface, Limits, SandboxReport, ToWorker};
use tokio::sync::{Mutex as AsyncMutex, oneshot, watch};

use calls::Pending;
pub use errors::{InvokeError, StartError};
pub use exit::{ExitCause, ExitHow};
use frames::FrameWriter;
pub use frames::LinkError;
pub use liveness::Liveness;
pub use spawn::spawn_worker;

use crate::broker::PluginBroker;
use crate::cache::CachedArtifact;

/// What to run in a new worker.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    pub plugin: Arc<str>,
    pub binary: PathBuf,
    pub limits: Limits,
    pub engine: EngineSettings,
    /// The component's bytes: sent when compiling, and the measure of the
    /// artifact a worker may send back.
    pub component: Arc<Vec<u8>>,
    pub source: SourceKind,
    /// Compiling and instantiating must finish within this.
    pub load_timeout: Duration,
    pub broker: Arc<PluginBroker>,
    pub liveness: Liveness,
    /// Extra worker arguments (test hooks).
    pub extra_args: Vec<String>,
    pub sandbox: verify::SandboxPolicy,
    /// Where this supervisor's workers get their cgroups.
    pub cgroups: Arc<cgroup::Cgroups>,
}

#[derive(Debug, Clone)]
pub enum SourceKind {
    /// Compile the wasm in a worker that never runs it
    /// ([`Worker::compile`]).
    Wasm,
    /// Run an artifact a compile worker of this plugin produced: the worker
    /// inherits a read-only descriptor (a compile cache entry, or a sealed
    /// memfd) and maps the code in place ([`Worker::start`]).
    Artifact(Arc<CachedArtifact>),
}

impl SourceKind {
    fn artifact(&self) -> Option<Arc<CachedArtifact>> {
        match self {
            Self::Wasm => None,
            Self::Artifact(artifact) => Some(artifact.clone()),
        }
    }
}

/// What a finished start-up reports.
#[derive(Debug)]
pub struct Started {
    pub worker: Arc<Worker>,
    /// How long mapping and deserialising the artifact took.
    pub compile: Duration,
}

/// A running worker.
pub struct Worker {
    plugin: Arc<str>,
    broker: Arc<PluginBroker>,
    pid: u32,
    exports: Vec<String>,
    /// The host interfaces the component imports, from the names the
    /// worker reported at load (WASI and unknown names are not host calls).
    imports: BTreeSet<Interface>,
    sandbox: SandboxReport,
    started_at: Instant,
    writer: AsyncMutex<FrameWriter>,
    /// The ring from the worker, watched briefly for an answer (never
    /// read here: the serve loop owns the reading end).
    watch: frames::Watch,
    pending: Mutex<Pending>,
    next_id: AtomicU64,
    kill: Mutex<Option<oneshot::Sender<()>>>,
    exit: watch::Receiver<Option<ExitCause>>,
    /// Why the supervisor killed it, when it did.
    kill_reason: Mutex<Option<String>>,
    /// The plugin stopped it on purpose (idle): its exit is no crash.
    on_purpose: std::sync::atomic::AtomicBool,
    /// Set when the worker broke the protocol: a security event.
    violation: Mutex<Option<String>>,
    /// The outstanding heartbeat: its nonce and who waits for the pong.
    ping: Mutex<Option<(u64, oneshot::Sender<()>)>>,
    /// One call at the worker at a time.
    turn: tokio::sync::Semaphore,
    /// Calls waiting for their turn.
    queued: std::sync::atomic::AtomicUsize,
    /// How long a frame to the worker may take to be written.
    write_timeout: Duration,
    /// The plugin's fuel limit: fuel a reply reports is clamped to it.
    max_fuel: u64,
    /// How its code was obtained: compiled, or mapped from the cache.
    code: CodeSource,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("plugin", &self.plugin)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

impl Worker {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn exports(&self) -> &[String] {
        &self.exports
    }

    pub fn sandbox(&self) -> &SandboxReport {
        &self.sandbox
    }

    /// How the worker obtained the plugin's code.
    pub fn code(&self) -> CodeSource {
        self.code
    }

    /// True once the worker is dead or being killed: no call can use it.
    pub fn is_closed(&self) -> bool {
        self.lock_pending().closed.is_some()
    }

    pub fn uptime(&self) -> Duration {
        self.started_at.elapsed()
    }

    /// Asks the worker to exit; kills it if it has not after `grace`.
    pub async fn stop(&self, grace: Duration) {
        let _ = self.send(&ToWorker::Shutdown(()), grace).await;
        if tokio::time::timeout(grace, self.exited()).await.is_err() {
            self.kill();
            self.exited().await;
        }
    }

    /// Closes the worker to new calls, then SIGKILL, remembering why.
    pub fn kill_because(&self, reason: String) {
        self.close(&reason);
        lock(&self.kill_reason).get_or_insert(reason);
        self.kill();
    }

    /// Marks the worker as stopped by the plugin's own choice, before it
    /// is stopped: its exit is then not a crash.
    pub fn stop_on_purpose(&self) {
        self.on_purpose
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn stopped_on_purpose(&self) -> bool {
        self.on_purpose.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Why the supervisor killed this worker, if it did.
    pub fn kill_reason(&self) -> Option<String> {
        lock(&self.kill_reason).clone()
    }

    /// The protocol violation this worker committed, if any.
    pub fn violation_seen(&self) -> Option<String> {
        lock(&self.violation).clone()
    }

    /// A frame the protocol does not allow: the worker is compromised or
    /// broken. Kill it and keep the evidence in the log.
    fn violation(&self, what: &str) {
        tracing::error!(plugin = %self.plugin, pid = self.pid, evidence = what,
            "security: protocol violation by worker; killing it");
        lock(&self.violation).get_or_insert_with(|| what.to_owned());
        self.kill_because(format!("protocol violation: {what}"));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
