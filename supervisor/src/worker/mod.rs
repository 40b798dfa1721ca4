//! One worker process as the supervisor sees it: spawn, handshake,
//! invocations with deadlines, host calls, exit.
//!
//! Trust: everything read from the worker is untrusted. Replies are matched
//! only to request ids this module issued; a reply to any other id, a frame
//! of the wrong kind for the phase, or a malformed frame kills the worker.
//! The plugin's identity is the [`Worker`] value created for this process,
//! never anything a frame says.

pub mod cgroup;
mod link;
mod liveness;
mod spawn;
pub mod verify;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prx_ipc::{
    CHUNK_LEN, Call, Chunk, CodeSource, ComponentSource, EngineSettings, FromWorker, GuestError,
    HostCallMsg, HostReplyMsg, Invoke, LayerReport, LayerStatus, Limits, LoadStage, LogLevel,
    MIN_PROTOCOL_VERSION, Output, PROTOCOL_VERSION, SandboxReport, SandboxSettings, ToWorker,
    Welcome, negotiate,
};
use tokio::sync::{Mutex as AsyncMutex, oneshot, watch};

pub use link::LinkError;
use link::{FrameReader, FrameWriter};
pub use liveness::Liveness;
use liveness::heartbeat;
pub use spawn::spawn_worker;

use crate::broker::PluginBroker;
use crate::cache::CachedArtifact;
use crate::text::untrusted_text;
use crate::topics::Chain;

/// Largest compiled artifact accepted from a worker: a Python component
/// compiles to about 40 MB; this leaves room without being unbounded.
pub const MAX_ARTIFACT_LEN: u64 = 512 << 20;

/// Compiled code is a few times the size of its component (about 2.2x for
/// a Python component, under 5x for the Rust guests here); an artifact
/// beyond this multiple plus some slack is not one this worker should have
/// produced, and is refused before it is received.
const ARTIFACT_GROWTH: u64 = 16;
const ARTIFACT_SLACK: u64 = 16 << 20;

/// The largest artifact accepted for a component of `component_len` bytes.
pub fn artifact_limit(component_len: u64) -> u64 {
    component_len
        .saturating_mul(ARTIFACT_GROWTH)
        .saturating_add(ARTIFACT_SLACK)
        .min(MAX_ARTIFACT_LEN)
}

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

/// Why a worker could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot start the worker binary {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the worker speaks protocol {min}..={max}; this supervisor speaks {MIN_PROTOCOL_VERSION}..={PROTOCOL_VERSION}"
    )]
    Protocol { min: u16, max: u16 },
    #[error("{} failed: {message}", stage_name(*.stage))]
    Load { stage: LoadStage, message: String },
    /// A start was asked of a component that was not compiled first.
    #[error("the plugin is started from a compiled artifact only (compile it first)")]
    NotCompiled,
    #[error("loading did not finish within {0:?} (compile timeout)")]
    Timeout(Duration),
    #[error("the worker broke the protocol during start-up: {0}")]
    Violation(String),
    #[error("the worker exited during start-up ({0})")]
    Exited(String),
    #[error(transparent)]
    Sandbox(#[from] verify::SandboxRefusal),
}

impl StartError {
    /// True when a cached artifact was refused and compiling from the wasm
    /// may work.
    pub fn is_stale_artifact(&self) -> bool {
        matches!(
            self,
            Self::Load {
                stage: LoadStage::Deserialize,
                ..
            }
        )
    }

    /// True when the worker lied or broke the protocol while starting: a
    /// security event (the plugin is quarantined), not a failure to retry.
    pub fn is_security_event(&self) -> bool {
        matches!(
            self,
            Self::Violation(_) | Self::Sandbox(verify::SandboxRefusal::Contradicted { .. })
        )
    }

    /// The error as the plugin's status and the operator read it: a
    /// security event says so first.
    pub fn reason(&self) -> String {
        if self.is_security_event() {
            format!("security event: {self}")
        } else {
            self.to_string()
        }
    }
}

/// Why an invocation did not return a value.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InvokeError {
    #[error("{}", .0.message)]
    Guest(GuestError),
    #[error("no answer within {0:?}; the worker was killed")]
    Timeout(Duration),
    #[error("the worker died ({0})")]
    Died(String),
    /// The reply's type is not one the call can return: a protocol
    /// violation; the worker was killed.
    #[error("a reply of the wrong type; the worker was killed")]
    BadReply,
    /// Too many calls wait for the worker already, or this one waited its
    /// whole deadline for its turn; the worker is not blamed.
    #[error("busy: {0}")]
    Busy(String),
}

/// What a finished start-up reports.
#[derive(Debug)]
pub struct Started {
    pub worker: Arc<Worker>,
    /// How long mapping and deserialising the artifact took.
    pub compile: Duration,
}

type Reply = oneshot::Sender<Result<Output, InvokeError>>;

/// How long a worker whose link closed has to exit before it is killed.
const EXIT_AFTER_CLOSE: Duration = Duration::from_millis(500);

/// A call waiting for its reply.
struct Waiting {
    reply: Reply,
}

/// Calls that may wait for their turn at one worker; more are refused as
/// busy at once (`GET /v1/modules` from any number of clients, say).
pub const MAX_QUEUED_CALLS: usize = 64;

/// In-flight calls; `closed` once the worker is gone, so no call can be
/// added that nobody will answer.
#[derive(Default)]
struct Pending {
    /// By id: the worker runs them in the order they were sent, which is
    /// id order (ids are taken while the link is held for writing).
    calls: BTreeMap<u64, Waiting>,
    /// Ids whose caller gave up (deadline); a late reply to one is dropped,
    /// not mistaken for a forged id.
    abandoned: HashSet<u64>,
    closed: Option<String>,
}

/// A running worker.
pub struct Worker {
    plugin: Arc<str>,
    broker: Arc<PluginBroker>,
    pid: u32,
    exports: Vec<String>,
    /// Interfaces the component imports, as the worker reported at load.
    imports: Vec<String>,
    sandbox: SandboxReport,
    started_at: Instant,
    writer: AsyncMutex<FrameWriter>,
    pending: Mutex<Pending>,
    next_id: AtomicU64,
    kill: Mutex<Option<oneshot::Sender<()>>>,
    exit: watch::Receiver<Option<ExitCause>>,
    /// Why the supervisor killed it, when it did.
    kill_reason: Mutex<Option<String>>,
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

    /// Compiles the component in a worker that never runs it: the worker's
    /// whole sandbox, seccomp included, is in place before it reads the
    /// component's bytes (and is checked against `/proc` before the
    /// artifact is taken), and no code becomes executable there. Returns the artifact, which only a worker
    /// of the same plugin may ever map.
    pub async fn compile(spec: &WorkerSpec) -> Result<CompiledArtifact, StartError> {
        let mut launch = Launch::spawn(spec, None).await?;
        let compiled = tokio::time::timeout(spec.load_timeout, async {
            let settings = greet(spec, &mut launch.reader, &mut launch.writer).await?;
            compile_phase(spec, &settings, &mut launch).await
        })
        .await;
        match compiled {
            Ok(Ok(compiled)) => {
                // Done with it: it exits when told, or is killed.
                let shutdown = launch.writer.write(&ToWorker::Shutdown(()));
                let _ = tokio::time::timeout(Duration::from_secs(1), shutdown).await;
                launch.finish(Duration::from_secs(1)).await;
                Ok(compiled)
            }
            Ok(Err(e)) => Err(launch.abort(e).await),
            Err(_) => Err(launch.abort(StartError::Timeout(spec.load_timeout)).await),
        }
    }

    /// Starts a worker on a compiled artifact (`spec.source`) and walks it
    /// through the handshake and the load.
    pub async fn start(spec: WorkerSpec) -> Result<Started, StartError> {
        let Some(artifact) = spec.source.artifact() else {
            return Err(StartError::NotCompiled);
        };
        let mut launch = Launch::spawn(&spec, Some(artifact)).await?;
        let handshake = tokio::time::timeout(spec.load_timeout, async {
            let settings = greet(&spec, &mut launch.reader, &mut launch.writer).await?;
            load_phase(&spec, &settings, &mut launch).await
        })
        .await;
        let done = match handshake {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => return Err(launch.abort(e).await),
            Err(_) => {
                return Err(launch.abort(StartError::Timeout(spec.load_timeout)).await);
            }
        };
        let Launch {
            reader,
            writer,
            kill_tx,
            exit_rx,
            ..
        } = launch;
        let worker = Arc::new(Worker {
            plugin: spec.plugin.clone(),
            broker: spec.broker.clone(),
            pid: done.pid,
            exports: done.exports,
            imports: done.imports,
            sandbox: done.sandbox,
            started_at: Instant::now(),
            writer: AsyncMutex::new(writer),
            pending: Mutex::new(Pending::default()),
            next_id: AtomicU64::new(1),
            kill: Mutex::new(Some(kill_tx)),
            exit: exit_rx,
            kill_reason: Mutex::new(None),
            violation: Mutex::new(None),
            ping: Mutex::new(None),
            turn: tokio::sync::Semaphore::new(1),
            queued: std::sync::atomic::AtomicUsize::new(0),
            write_timeout: spec.liveness.timeout,
            max_fuel: spec.limits.max_fuel,
            code: done.code,
        });
        tokio::spawn(serve(worker.clone(), reader, spec.broker.clone()));
        tokio::spawn(heartbeat(worker.clone(), spec.liveness));
        tokio::spawn(fail_pending_on_exit(worker.clone()));
        Ok(Started {
            worker,
            compile: done.compile,
        })
    }

    /// Calls into the plugin. The worker enforces the limits itself; this
    /// deadline is the backstop for a worker that stops answering.
    ///
    /// `chain` is the causal chain of the call (the plugins whose event
    /// handlers led to it); the plugin's host calls during it carry it.
    pub async fn invoke(
        &self,
        call: Call,
        deadline: Duration,
        chain: Chain,
    ) -> Result<Output, InvokeError> {
        // One call at a time at the worker, which runs them one after
        // another anyway; the others wait here, where waiting is not the
        // worker's fault: its deadline starts when its turn does.
        let _turn = self.take_turn(deadline).await?;
        let started = Instant::now();
        let (tx, rx) = oneshot::channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut pending = self.lock_pending();
            if let Some(cause) = &pending.closed {
                return Err(InvokeError::Died(cause.clone()));
            }
            self.broker.begin_invocation(chain);
            pending.calls.insert(id, Waiting { reply: tx });
        }
        let frame = ToWorker::Invoke(Invoke { id, call });
        if let Err(e) = self.send(&frame, deadline).await {
            self.lock_pending().calls.remove(&id);
            return Err(InvokeError::Died(e));
        }
        let ToWorker::Invoke(Invoke { call, .. }) = frame else {
            unreachable!("built above as an Invoke");
        };
        let full = deadline;
        let deadline = deadline.saturating_sub(started.elapsed());
        match tokio::time::timeout(deadline, rx).await {
            // A reply of a type the function cannot return is a lie about
            // the component, like a reply to an id never issued.
            Ok(Ok(Ok(output))) if !call.accepts(&output) => {
                self.violation(&format!(
                    "a reply of the wrong type to a call of {}",
                    call.export()
                ));
                Err(InvokeError::BadReply)
            }
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(InvokeError::Died("the worker went away".into())),
            Err(_) => {
                {
                    let mut pending = self.lock_pending();
                    pending.calls.remove(&id);
                    pending.abandoned.insert(id);
                }
                tracing::warn!(plugin = %self.plugin, pid = self.pid, ?deadline,
                    "worker did not answer in time; killing it");
                self.kill_because(format!(
                    "killed by the supervisor: no answer within {} ms",
                    full.as_millis()
                ));
                Err(InvokeError::Timeout(full))
            }
        }
    }

    /// Waits for this call's turn at the worker: at most `wait`, behind at
    /// most [`MAX_QUEUED_CALLS`] others; past either the caller is told
    /// the plugin is busy, and the worker is not blamed.
    async fn take_turn(
        &self,
        wait: Duration,
    ) -> Result<tokio::sync::SemaphorePermit<'_>, InvokeError> {
        if let Ok(turn) = self.turn.try_acquire() {
            return Ok(turn);
        }
        if self.queued.fetch_add(1, Ordering::SeqCst) >= MAX_QUEUED_CALLS {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(InvokeError::Busy(format!(
                "{MAX_QUEUED_CALLS} calls are already waiting for it"
            )));
        }
        let turn = tokio::time::timeout(wait, self.turn.acquire()).await;
        self.queued.fetch_sub(1, Ordering::SeqCst);
        match turn {
            Ok(Ok(turn)) => Ok(turn),
            Ok(Err(_)) => Err(InvokeError::Died("the worker is gone".into())),
            Err(_) => Err(InvokeError::Busy(format!(
                "the calls before this one kept it busy for {} ms",
                wait.as_millis()
            ))),
        }
    }

    /// Writes one frame within `within`. A worker that does not drain its
    /// link in that time (it stopped reading, or floods host calls and
    /// never takes the answers) is killed like one that does not answer:
    /// no write can wait on it for ever, nor hold the link from others.
    async fn send(&self, frame: &ToWorker, within: Duration) -> Result<(), String> {
        let sent = tokio::time::timeout(within, async {
            self.writer.lock().await.write(frame).await
        })
        .await;
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("link write failed: {e}")),
            Err(_) => {
                let why = format!(
                    "killed by the supervisor: it did not read its link within {} ms",
                    within.as_millis()
                );
                tracing::warn!(plugin = %self.plugin, pid = self.pid, "{why}");
                self.kill_because(why.clone());
                Err(why)
            }
        }
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

    /// Why the supervisor killed this worker, if it did.
    pub fn kill_reason(&self) -> Option<String> {
        lock(&self.kill_reason).clone()
    }

    /// The protocol violation this worker committed, if any.
    pub fn violation_seen(&self) -> Option<String> {
        lock(&self.violation).clone()
    }

    /// Calls in flight right now.
    pub fn in_flight(&self) -> usize {
        self.lock_pending().calls.len()
    }

    /// The link closed: the worker is exiting. It is given a moment to be
    /// reaped on its own, so its exit says how it died (a seccomp kill
    /// reaches the supervisor through the process it started, a moment
    /// after the link closes), and killed after that.
    async fn reap_or_kill(&self) {
        if tokio::time::timeout(EXIT_AFTER_CLOSE, self.exited())
            .await
            .is_err()
        {
            self.kill();
        }
    }

    /// SIGKILL. The waiter task reaps the process.
    pub fn kill(&self) {
        if let Some(kill) = self.kill.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = kill.send(());
        }
    }

    /// Resolves when the process has exited and been reaped; returns how.
    pub async fn exited(&self) -> ExitCause {
        let mut exit = self.exit.clone();
        match exit.wait_for(Option::is_some).await {
            Ok(cause) => cause.clone().unwrap_or_else(ExitCause::unknown),
            Err(_) => ExitCause::unknown(),
        }
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fails every in-flight call and refuses new ones.
    fn close(&self, cause: &str) {
        let calls = {
            let mut pending = self.lock_pending();
            pending.closed.get_or_insert_with(|| cause.to_owned());
            std::mem::take(&mut pending.calls)
        };
        for (_, Waiting { reply, .. }) in calls {
            let _ = reply.send(Err(InvokeError::Died(cause.to_owned())));
        }
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

/// A spawned worker process during start-up: its link, and what kills and
/// reaps it.
struct Launch {
    /// The process the supervisor started (with a PID namespace, the
    /// parent of the one that runs the plugin).
    pid: u32,
    reader: FrameReader,
    writer: FrameWriter,
    kill_tx: oneshot::Sender<()>,
    exit_rx: watch::Receiver<Option<ExitCause>>,
    waiter: tokio::task::JoinHandle<()>,
    /// The supervisor's own layer, reported after the worker's.
    cgroup: LayerStatus,
}

impl Launch {
    /// Spawns the worker binary and places it in its cgroup before it is
    /// sent anything to run.
    async fn spawn(
        spec: &WorkerSpec,
        artifact: Option<Arc<CachedArtifact>>,
    ) -> Result<Self, StartError> {
        let spawned = spawn_worker(spec.binary.clone(), spec.extra_args.clone(), artifact)
            .await
            .map_err(|source| StartError::Spawn {
                binary: spec.binary.clone(),
                source,
            })?;
        let pid = spawned.child.id().unwrap_or(0);
        let cgroup = if spec.sandbox.enabled.contains(&verify::Layer::Cgroup) {
            let limit = spec.sandbox.memory_limit(spec.limits.max_memory_bytes);
            Some(
                spec.cgroups
                    .place(&spec.plugin, pid, limit, spec.sandbox.max_tasks),
            )
        } else {
            None
        };
        let cgroup_status = match &cgroup {
            None => LayerStatus::Disabled,
            Some(Ok(_)) => LayerStatus::Applied,
            Some(Err(why)) => LayerStatus::Unavailable(why.clone()),
        };
        let cgroup = cgroup.and_then(Result::ok);
        let stream = tokio::net::UnixStream::from_std(spawned.socket).map_err(|source| {
            StartError::Spawn {
                binary: spec.binary.clone(),
                source,
            }
        })?;
        let (read_half, write_half) = stream.into_split();
        let (kill_tx, kill_rx) = oneshot::channel();
        let (exit_tx, exit_rx) = watch::channel(None);
        let waiter = tokio::spawn(wait_for_exit(spawned.child, kill_rx, exit_tx, cgroup));
        Ok(Self {
            pid,
            reader: FrameReader::new(read_half),
            writer: FrameWriter::new(write_half),
            kill_tx,
            exit_rx,
            waiter,
            cgroup: cgroup_status,
        })
    }

    /// Kills and reaps a worker whose start failed; a worker that died on
    /// its own says how (a signal, the cgroup's memory limit), which is of
    /// more use than "link closed".
    async fn abort(self, e: StartError) -> StartError {
        if let StartError::Exited(_) = &e {
            let mut exit = self.exit_rx.clone();
            let _ = tokio::time::timeout(EXIT_AFTER_CLOSE, exit.wait_for(Option::is_some)).await;
        }
        let _ = self.kill_tx.send(());
        let _ = self.waiter.await;
        if let StartError::Exited(what) = &e
            && let Some(cause) = self.exit_rx.borrow().clone()
        {
            let cause = cause.to_string();
            return StartError::Exited(format!("{what}; {cause}"));
        }
        e
    }

    /// Waits up to `grace` for the worker to exit, then kills it.
    async fn finish(self, grace: Duration) {
        let mut exit = self.exit_rx.clone();
        if tokio::time::timeout(grace, exit.wait_for(Option::is_some))
            .await
            .is_err()
        {
            let _ = self.kill_tx.send(());
        }
        let _ = self.waiter.await;
    }
}

/// A compiled artifact, as a compile worker sent it.
#[derive(Debug)]
pub struct CompiledArtifact {
    pub bytes: Vec<u8>,
    pub compile: Duration,
}

struct Handshake {
    /// The process that runs the plugin.
    pid: u32,
    sandbox: SandboxReport,
    exports: Vec<String>,
    imports: Vec<String>,
    compile: Duration,
    code: CodeSource,
}

/// Hello, Welcome and the component's chunks (none for an artifact).
/// Returns the sandbox settings the worker was told to apply.
async fn greet(
    spec: &WorkerSpec,
    reader: &mut FrameReader,
    writer: &mut FrameWriter,
) -> Result<SandboxSettings, StartError> {
    let hello = match reader.read().await.map_err(link_err)? {
        FromWorker::Hello(hello) => hello,
        FromWorker::Fatal(message) => return Err(StartError::Exited(message.escaped())),
        other => {
            return Err(StartError::Violation(format!(
                "expected Hello, got kind {}",
                prx_ipc::Message::kind(&other)
            )));
        }
    };
    let Some(protocol) = negotiate(hello.min_protocol, hello.max_protocol) else {
        return Err(StartError::Protocol {
            min: hello.min_protocol,
            max: hello.max_protocol,
        });
    };
    let (component, chunks, len) = match &spec.source {
        SourceKind::Wasm => {
            let len = spec.component.len() as u64;
            (ComponentSource::Wasm { len }, &spec.component[..], len)
        }
        SourceKind::Artifact(artifact) => {
            let source = ComponentSource::Artifact {
                offset: artifact.offset,
                len: artifact.len,
            };
            (source, &[][..], artifact.len)
        }
    };
    let settings = spec.sandbox.settings(
        spec.engine.memory_reservation,
        spec.engine.memory_guard,
        len,
    );
    writer
        .write(&ToWorker::Welcome(Welcome {
            protocol,
            plugin: spec.plugin.to_string(),
            limits: spec.limits,
            engine: spec.engine,
            component,
            log_level: plugin_log_level(),
            sandbox: settings,
        }))
        .await
        .map_err(send_err)?;
    for piece in chunks.chunks(CHUNK_LEN) {
        writer
            .write(&ToWorker::Chunk(Chunk {
                bytes: piece.to_vec(),
            }))
            .await
            .map_err(send_err)?;
    }
    Ok(settings)
}

fn link_err(e: LinkError) -> StartError {
    match e {
        LinkError::Closed => StartError::Exited("link closed".into()),
        other => StartError::Violation(other.to_string()),
    }
}

fn send_err(e: LinkError) -> StartError {
    StartError::Exited(format!("sending the plugin failed: {e}"))
}

/// A start-up frame other than the one expected: a load failure or a fatal
/// error as the worker says it, anything else a protocol violation (`when`
/// says why it was not allowed).
fn not_expected(frame: FromWorker, when: &str) -> StartError {
    match frame {
        FromWorker::LoadFailed(failed) => StartError::Load {
            stage: failed.stage,
            message: failed.message.escaped(),
        },
        FromWorker::Fatal(message) => StartError::Exited(message.escaped()),
        other => StartError::Violation(format!(
            "frame kind {} {when}",
            prx_ipc::Message::kind(&other)
        )),
    }
}

/// A compile worker's answer: its sandbox report (checked before a byte
/// of the artifact is taken), then the artifact. It runs no plugin code,
/// so it has nothing to log and no host call to make.
async fn compile_phase(
    spec: &WorkerSpec,
    settings: &SandboxSettings,
    launch: &mut Launch,
) -> Result<CompiledArtifact, StartError> {
    let compiled = match launch.reader.read().await.map_err(link_err)? {
        FromWorker::Compiled(compiled) => compiled,
        other => {
            return Err(not_expected(
                other,
                "from a compile worker, which runs no plugin code",
            ));
        }
    };
    confirm_sandbox(spec, settings, launch, compiled.sandbox)?;
    let len = compiled.artifact_len;
    if len == 0 || len > artifact_limit(spec.component.len() as u64) {
        return Err(StartError::Violation(format!(
            "an artifact of {len} bytes for a component of {} bytes",
            spec.component.len()
        )));
    }
    let bytes = receive_artifact(&mut launch.reader, len).await?;
    Ok(CompiledArtifact {
        bytes,
        compile: Duration::from_micros(compiled.compile_us),
    })
}

/// A worker that runs the plugin: `Confined` first (every layer in place,
/// checked against `/proc` before any host call is answered), then the
/// start code's host calls and log lines, then `Loaded`.
async fn load_phase(
    spec: &WorkerSpec,
    settings: &SandboxSettings,
    launch: &mut Launch,
) -> Result<Handshake, StartError> {
    let (pid, sandbox) = match launch.reader.read().await.map_err(link_err)? {
        FromWorker::Confined(report) => confirm_sandbox(spec, settings, launch, report)?,
        other => {
            return Err(not_expected(
                other,
                "before the worker reported its sandbox",
            ));
        }
    };
    // Instantiation runs guest code (start functions), which may make host
    // calls and log before the worker reports. Its imports are not known
    // yet, so these calls get the permission checks but not the imports
    // check that `serve` adds afterwards.
    let (reader, writer) = (&mut launch.reader, &mut launch.writer);
    let loaded = loop {
        match reader.read().await.map_err(link_err)? {
            FromWorker::Loaded(loaded) => break loaded,
            FromWorker::LoadFailed(failed) => {
                return Err(StartError::Load {
                    stage: failed.stage,
                    message: failed.message.escaped(),
                });
            }
            FromWorker::Log(line) => spec.broker.log(line.level, &line.message),
            FromWorker::HostCall(HostCallMsg { id, call }) => {
                let reply = spec.broker.answer(call).await;
                writer
                    .write(&ToWorker::HostReply(HostReplyMsg { id, reply }))
                    .await
                    .map_err(send_err)?;
            }
            FromWorker::Fatal(message) => return Err(StartError::Exited(message.escaped())),
            other => {
                return Err(StartError::Violation(format!(
                    "unexpected frame kind {} while loading",
                    prx_ipc::Message::kind(&other)
                )));
            }
        }
    };
    if loaded.code == CodeSource::Compiled {
        return Err(StartError::Violation(
            "the worker says it compiled code it was sent compiled".into(),
        ));
    }
    Ok(Handshake {
        pid,
        sandbox,
        exports: loaded.exports,
        imports: loaded.imports,
        compile: Duration::from_micros(loaded.compile_us),
        code: loaded.code,
    })
}

/// Checks a worker's sandbox report against the policy and against what
/// the kernel shows of the process that runs (or compiles) the plugin.
/// Returns that process's pid and the report as operators read it.
fn confirm_sandbox(
    spec: &WorkerSpec,
    settings: &SandboxSettings,
    launch: &Launch,
    mut report: SandboxReport,
) -> Result<(u32, SandboxReport), StartError> {
    // The worker's words are kept, logged and shown to operators.
    for layer in &mut report.layers {
        layer.layer = untrusted_text(std::mem::take(&mut layer.layer));
        if let LayerStatus::Unavailable(why) = &mut layer.status {
            *why = untrusted_text(std::mem::take(why));
        }
    }
    report.layers.push(LayerReport {
        layer: verify::Layer::Cgroup.as_str().into(),
        status: launch.cgroup.clone(),
    });
    let pid = verify::check(&spec.sandbox, settings, &report, launch.pid)?;
    for layer in &report.layers {
        if let LayerStatus::Unavailable(why) = &layer.status {
            tracing::warn!(plugin = %spec.plugin, pid, layer = %layer.layer,
                "sandbox layer not applied (not required): {why}");
        }
    }
    Ok((pid, report))
}

async fn receive_artifact(reader: &mut FrameReader, len: u64) -> Result<Vec<u8>, StartError> {
    let len = len as usize;
    let mut artifact = Vec::with_capacity(len);
    while artifact.len() < len {
        match reader.read().await {
            Ok(FromWorker::Chunk(Chunk { bytes })) if artifact.len() + bytes.len() <= len => {
                artifact.extend_from_slice(&bytes);
            }
            Ok(_) => {
                return Err(StartError::Violation(
                    "artifact chunks do not add up to the announced length".into(),
                ));
            }
            Err(e) => return Err(StartError::Violation(e.to_string())),
        }
    }
    Ok(artifact)
}

/// The most verbose plugin log level the supervisor's log keeps.
fn plugin_log_level() -> LogLevel {
    use tracing::Level;
    if tracing::enabled!(target: "plugin", Level::TRACE) {
        LogLevel::Trace
    } else if tracing::enabled!(target: "plugin", Level::DEBUG) {
        LogLevel::Debug
    } else if tracing::enabled!(target: "plugin", Level::INFO) {
        LogLevel::Info
    } else if tracing::enabled!(target: "plugin", Level::WARN) {
        LogLevel::Warn
    } else {
        LogLevel::Error
    }
}

fn stage_name(stage: LoadStage) -> &'static str {
    match stage {
        LoadStage::Receive => "receiving the component",
        LoadStage::Compile => "compiling",
        LoadStage::Deserialize => "deserializing the cached artifact",
        LoadStage::Link => "linking (the component imports something the host does not provide)",
        LoadStage::Instantiate => "instantiating",
    }
}

/// Reads frames after the handshake until the link closes or lies.
async fn serve(worker: Arc<Worker>, mut reader: FrameReader, broker: Arc<PluginBroker>) {
    loop {
        let frame = match reader.read().await {
            Ok(frame) => frame,
            // The link only breaks when the worker exits (or is broken
            // beyond use): make sure it is gone; its exit cause then fails
            // the calls in flight.
            Err(LinkError::Closed | LinkError::Io(_)) => {
                worker.reap_or_kill().await;
                return;
            }
            Err(e @ LinkError::Malformed(_)) => {
                worker.violation(&e.to_string());
                return;
            }
        };
        match frame {
            FromWorker::InvokeReply(reply) => {
                let (waiting, abandoned) = {
                    let mut pending = worker.lock_pending();
                    let abandoned = pending.abandoned.remove(&reply.id);
                    let waiting = pending.calls.remove(&reply.id);
                    (waiting, abandoned)
                };
                if waiting.is_some() || abandoned {
                    broker.stats().add_fuel(reply.fuel_used, worker.max_fuel);
                }
                match waiting {
                    Some(Waiting { reply: tx }) => {
                        // Host calls from here on belong to no invocation
                        // until the next one is sent.
                        broker.end_invocation();
                        let outcome = reply.outcome.map_err(InvokeError::Guest);
                        let _ = tx.send(outcome);
                    }
                    None if abandoned => {}
                    // An id we never issued, or one answered twice.
                    None => {
                        worker.violation(&format!("reply to unknown request id {}", reply.id));
                        return;
                    }
                }
            }
            FromWorker::HostCall(HostCallMsg { id, call }) => {
                if !worker.imports.iter().any(|i| i == call.interface()) {
                    worker.violation(&format!(
                        "host call {} to {}, which the component does not import",
                        call.function(),
                        call.interface()
                    ));
                    return;
                }
                let reply = broker.answer(call).await;
                let frame = ToWorker::HostReply(HostReplyMsg { id, reply });
                if let Err(e) = worker.send(&frame, worker.write_timeout).await {
                    worker.close(&e);
                    return;
                }
            }
            FromWorker::Log(line) => broker.log(line.level, &line.message),
            FromWorker::Pong(nonce) => {
                let waiting = lock(&worker.ping).take_if(|(n, _)| *n == nonce);
                match waiting {
                    Some((_, tx)) => {
                        let _ = tx.send(());
                    }
                    None => {
                        worker.violation(&format!("pong {nonce} to no ping"));
                        return;
                    }
                }
            }
            // Under the plugin's log rate like any line: a worker can send
            // these at socket speed.
            FromWorker::Fatal(message) => broker.log(
                LogLevel::Error,
                &prx_ipc::WorkerText::new(format!("the worker reported a fatal error: {message}")),
            ),
            other => {
                worker.violation(&format!(
                    "frame kind {} after start-up",
                    prx_ipc::Message::kind(&other)
                ));
                return;
            }
        }
    }
}

/// Owns the child: reaps it, or kills then reaps it when asked.
async fn wait_for_exit(
    mut child: tokio::process::Child,
    kill: oneshot::Receiver<()>,
    exit: watch::Sender<Option<ExitCause>>,
    cgroup: Option<cgroup::WorkerCgroup>,
) {
    let status = tokio::select! {
        status = child.wait() => status,
        _ = kill => {
            let _ = child.start_kill();
            child.wait().await
        }
    };
    let mut cause = match status {
        Ok(status) => ExitCause::of(status),
        Err(e) => ExitCause {
            how: ExitHow::WaitFailed(e.to_string()),
            out_of_memory: false,
        },
    };
    cause.out_of_memory = cgroup
        .as_ref()
        .is_some_and(cgroup::WorkerCgroup::oom_killed);
    // The process is gone: its cgroup can be removed (on drop).
    drop(cgroup);
    let _ = exit.send(Some(cause));
}

async fn fail_pending_on_exit(worker: Arc<Worker>) {
    let cause = worker.exited().await;
    worker.close(&cause.to_string());
}

/// How a worker process ended. Decisions match on this; its text (`signal
/// SIGKILL`, `exit code 3`) is for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitCause {
    pub how: ExitHow,
    /// Its cgroup recorded an out-of-memory kill.
    pub out_of_memory: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitHow {
    Code(i32),
    Signal(i32),
    WaitFailed(String),
    Unknown,
}

impl ExitCause {
    pub fn of(status: std::process::ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        let how = match (status.code(), status.signal()) {
            (Some(code), _) => ExitHow::Code(code),
            (None, Some(signal)) => ExitHow::Signal(signal),
            _ => ExitHow::Unknown,
        };
        Self {
            how,
            out_of_memory: false,
        }
    }

    fn unknown() -> Self {
        Self {
            how: ExitHow::Unknown,
            out_of_memory: false,
        }
    }

    /// Killed by the seccomp filter: a forbidden system call.
    pub fn is_seccomp_kill(&self) -> bool {
        self.how == ExitHow::Signal(nix::libc::SIGSYS)
    }
}

impl std::fmt::Display for ExitCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.how {
            ExitHow::Code(code) => write!(f, "exit code {code}")?,
            ExitHow::Signal(signal) => match nix::sys::signal::Signal::try_from(*signal) {
                Ok(sig) => write!(f, "signal {}", sig.as_str())?,
                Err(_) => write!(f, "signal {signal}")?,
            },
            ExitHow::WaitFailed(e) => write!(f, "wait failed: {e}")?,
            ExitHow::Unknown => f.write_str("unknown exit")?,
        }
        if self.out_of_memory {
            f.write_str(" (out of memory: over its cgroup's memory limit)")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifacts_are_bounded_by_the_component_size() {
        assert_eq!(artifact_limit(0), 16 << 20);
        assert_eq!(artifact_limit(1 << 20), 32 << 20);
        assert_eq!(artifact_limit(18 << 20), (18 * 16 + 16) << 20);
        assert_eq!(artifact_limit(u64::MAX), MAX_ARTIFACT_LEN);
    }
}
