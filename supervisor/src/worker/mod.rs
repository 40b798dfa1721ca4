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
    MIN_PROTOCOL_VERSION, Output, PROTOCOL_VERSION, SandboxReport, ToWorker, Welcome, negotiate,
};
use tokio::sync::{Mutex as AsyncMutex, oneshot, watch};

pub use link::LinkError;
use link::{FrameReader, FrameWriter};
pub use spawn::spawn_worker;

use crate::broker::events::Chain;
use crate::broker::{PluginBroker, untrusted_text};
use crate::cache::CachedArtifact;
use crate::config::Liveness;

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
    /// Compile the wasm; send the artifact back when `want_artifact`.
    Wasm { want_artifact: bool },
    /// Map an artifact from the compile cache: the worker inherits a
    /// read-only descriptor of the file and runs the code in place.
    Artifact(Arc<CachedArtifact>),
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
    #[error("{stage} failed: {message}")]
    Load {
        stage: &'static str,
        message: String,
    },
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
                stage: "deserializing the cached artifact",
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
}

/// What a finished start-up reports.
#[derive(Debug)]
pub struct Started {
    pub worker: Arc<Worker>,
    /// A compiled artifact to store in the cache, when one was asked for.
    pub artifact: Option<Vec<u8>>,
    pub compile: Duration,
}

type Reply = oneshot::Sender<Result<Output, InvokeError>>;

/// A call waiting for its reply, and the causal chain its host calls carry.
struct Waiting {
    reply: Reply,
    chain: Chain,
}

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
    exit: watch::Receiver<Option<String>>,
    /// Why the supervisor killed it, when it did.
    kill_reason: Mutex<Option<String>>,
    /// Set when the worker broke the protocol: a security event.
    violation: Mutex<Option<String>>,
    /// The outstanding heartbeat: its nonce and who waits for the pong.
    ping: Mutex<Option<(u64, oneshot::Sender<()>)>>,
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

    /// Starts a worker and walks it through the handshake and the load.
    pub async fn start(spec: WorkerSpec) -> Result<Started, StartError> {
        let artifact = match &spec.source {
            SourceKind::Artifact(artifact) => Some(artifact.clone()),
            SourceKind::Wasm { .. } => None,
        };
        let spawned = spawn_worker(spec.binary.clone(), spec.extra_args.clone(), artifact)
            .await
            .map_err(|source| StartError::Spawn {
                binary: spec.binary.clone(),
                source,
            })?;
        let pid = spawned.child.id().unwrap_or(0);
        // Into its cgroup before it is sent anything to run.
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
        let mut reader = FrameReader::new(read_half);
        let mut writer = FrameWriter::new(write_half);
        let handshake = tokio::time::timeout(
            spec.load_timeout,
            handshake(&spec, &mut reader, &mut writer),
        )
        .await;
        let checked = handshake.map(|r| {
            r.and_then(|mut done| {
                // The supervisor's own layer, after the worker's.
                done.sandbox.layers.push(LayerReport {
                    layer: verify::Layer::Cgroup.as_str().into(),
                    status: cgroup_status.clone(),
                });
                match verify::check(&spec.sandbox, &done.sandbox, pid) {
                    Ok(()) => {
                        for layer in &done.sandbox.layers {
                            if let LayerStatus::Unavailable(why) = &layer.status {
                                tracing::warn!(plugin = %spec.plugin, pid, layer = %layer.layer,
                                    "sandbox layer not applied (not required): {why}");
                            }
                        }
                        Ok(done)
                    }
                    Err(refusal) => Err(StartError::Sandbox(refusal)),
                }
            })
        });
        let done = match checked {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => {
                let _ = kill_tx.send(());
                let _ = waiter.await;
                // A worker that died on its own says how (a signal, the
                // cgroup's memory limit): more use than "link closed".
                if let StartError::Exited(what) = &e
                    && let Some(cause) = exit_rx.borrow().clone()
                {
                    return Err(StartError::Exited(format!("{what}; {cause}")));
                }
                return Err(e);
            }
            Err(_) => {
                let _ = kill_tx.send(());
                let _ = waiter.await;
                return Err(StartError::Timeout(spec.load_timeout));
            }
        };
        let worker = Arc::new(Worker {
            plugin: spec.plugin.clone(),
            broker: spec.broker.clone(),
            pid,
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
            max_fuel: spec.limits.max_fuel,
            code: done.code,
        });
        tokio::spawn(serve(worker.clone(), reader, spec.broker.clone()));
        tokio::spawn(heartbeat(worker.clone(), spec.liveness));
        tokio::spawn(fail_pending_on_exit(worker.clone()));
        Ok(Started {
            worker,
            artifact: done.artifact,
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
        let (tx, rx) = oneshot::channel();
        // The id is taken with the link held, so ids go out in order.
        let mut writer = self.writer.lock().await;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut pending = self.lock_pending();
            if let Some(cause) = &pending.closed {
                return Err(InvokeError::Died(cause.clone()));
            }
            // An idle worker starts on this call at once; otherwise it
            // starts when the reply before it arrives (see `serve`).
            if pending.calls.is_empty() {
                self.broker.begin_invocation(chain.clone());
            }
            pending.calls.insert(id, Waiting { reply: tx, chain });
        }
        let frame = ToWorker::Invoke(Invoke { id, call });
        let sent = writer.write(&frame).await;
        drop(writer);
        if let Err(e) = sent {
            self.lock_pending().calls.remove(&id);
            return Err(InvokeError::Died(format!("link write failed: {e}")));
        }
        let ToWorker::Invoke(Invoke { call, .. }) = frame else {
            unreachable!("built above as an Invoke");
        };
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
                    deadline.as_millis()
                ));
                Err(InvokeError::Timeout(deadline))
            }
        }
    }

    /// Asks the worker to exit; kills it if it has not after `grace`.
    pub async fn stop(&self, grace: Duration) {
        let _ = self
            .writer
            .lock()
            .await
            .write(&ToWorker::Shutdown(()))
            .await;
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

    /// SIGKILL. The waiter task reaps the process.
    pub fn kill(&self) {
        if let Some(kill) = self.kill.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = kill.send(());
        }
    }

    /// Resolves when the process has exited and been reaped; returns why.
    pub async fn exited(&self) -> String {
        let mut exit = self.exit.clone();
        match exit.wait_for(Option::is_some).await {
            Ok(cause) => cause.clone().unwrap_or_default(),
            Err(_) => "unknown".into(),
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

/// Pings an idle worker every `interval`; one that does not answer within
/// `timeout` is killed. Busy workers are covered by the call deadline.
async fn heartbeat(worker: Arc<Worker>, liveness: Liveness) {
    let mut nonce = 0u64;
    loop {
        tokio::select! {
            _ = worker.exited() => return,
            _ = tokio::time::sleep(liveness.interval) => {}
        }
        if worker.is_closed() {
            return;
        }
        if worker.in_flight() > 0 {
            continue;
        }
        nonce += 1;
        let (tx, rx) = oneshot::channel();
        *lock(&worker.ping) = Some((nonce, tx));
        let sent = worker
            .writer
            .lock()
            .await
            .write(&ToWorker::Ping(nonce))
            .await;
        if sent.is_err() {
            return;
        }
        if tokio::time::timeout(liveness.timeout, rx).await.is_err() {
            tracing::warn!(plugin = %worker.plugin, pid = worker.pid,
                timeout_ms = liveness.timeout.as_millis() as u64,
                "worker missed its heartbeat; killing it");
            worker.kill_because(format!(
                "killed by the supervisor: no heartbeat within {} ms",
                liveness.timeout.as_millis()
            ));
            return;
        }
    }
}

struct Handshake {
    sandbox: SandboxReport,
    exports: Vec<String>,
    imports: Vec<String>,
    artifact: Option<Vec<u8>>,
    compile: Duration,
    code: CodeSource,
}

async fn handshake(
    spec: &WorkerSpec,
    reader: &mut FrameReader,
    writer: &mut FrameWriter,
) -> Result<Handshake, StartError> {
    let link_err = |e: LinkError| match e {
        LinkError::Closed => StartError::Exited("link closed".into()),
        other => StartError::Violation(other.to_string()),
    };
    let hello = match reader.read().await.map_err(link_err)? {
        FromWorker::Hello(hello) => hello,
        FromWorker::Fatal(message) => return Err(StartError::Exited(untrusted_text(message))),
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
        SourceKind::Wasm { want_artifact } => {
            let len = spec.component.len() as u64;
            let source = ComponentSource::Wasm {
                len,
                want_artifact: *want_artifact,
            };
            (source, &spec.component[..], len)
        }
        SourceKind::Artifact(artifact) => {
            let source = ComponentSource::Artifact {
                offset: artifact.offset,
                len: artifact.len,
            };
            (source, &[][..], artifact.len)
        }
    };
    let send = |e: LinkError| StartError::Exited(format!("sending the plugin failed: {e}"));
    writer
        .write(&ToWorker::Welcome(Welcome {
            protocol,
            plugin: spec.plugin.to_string(),
            limits: spec.limits,
            engine: spec.engine,
            component,
            log_level: plugin_log_level(),
            sandbox: spec.sandbox.settings(
                spec.engine.memory_reservation,
                spec.engine.memory_guard,
                len,
            ),
        }))
        .await
        .map_err(send)?;
    for piece in chunks.chunks(CHUNK_LEN) {
        writer
            .write(&ToWorker::Chunk(Chunk {
                bytes: piece.to_vec(),
            }))
            .await
            .map_err(send)?;
    }
    // Instantiation runs guest code (start functions), which may make host
    // calls and log before the worker reports. Its imports are not known
    // yet, so these calls get the permission checks but not the imports
    // check that `serve` adds afterwards.
    let loaded = loop {
        match reader.read().await.map_err(link_err)? {
            FromWorker::Loaded(loaded) => break loaded,
            FromWorker::LoadFailed(failed) => {
                return Err(StartError::Load {
                    stage: stage_name(failed.stage),
                    message: untrusted_text(failed.message),
                });
            }
            FromWorker::Log(line) => spec.broker.log(line.level, &line.message),
            FromWorker::HostCall(HostCallMsg { id, call }) => {
                let reply = spec.broker.answer(call).await;
                writer
                    .write(&ToWorker::HostReply(HostReplyMsg { id, reply }))
                    .await
                    .map_err(send)?;
            }
            FromWorker::Fatal(message) => return Err(StartError::Exited(untrusted_text(message))),
            other => {
                return Err(StartError::Violation(format!(
                    "unexpected frame kind {} while loading",
                    prx_ipc::Message::kind(&other)
                )));
            }
        }
    };
    let code_matches = match &spec.source {
        SourceKind::Wasm { .. } => loaded.code == CodeSource::Compiled,
        SourceKind::Artifact(_) => loaded.code != CodeSource::Compiled,
    };
    if !code_matches {
        return Err(StartError::Violation(format!(
            "the worker says its code was {} for a source it was not",
            loaded.code.as_str()
        )));
    }
    let artifact = match (&spec.source, loaded.artifact_len) {
        (_, 0) => None,
        (
            SourceKind::Wasm {
                want_artifact: true,
            },
            len,
        ) if len <= artifact_limit(spec.component.len() as u64) => {
            Some(receive_artifact(reader, len).await?)
        }
        (_, len) => {
            return Err(StartError::Violation(format!(
                "an artifact of {len} bytes that was not asked for or is too large"
            )));
        }
    };
    // The worker's full report: start-up steps, then every layer. Its
    // words are kept, logged and shown to operators.
    let mut sandbox = loaded.sandbox;
    for layer in &mut sandbox.layers {
        layer.layer = untrusted_text(std::mem::take(&mut layer.layer));
        if let LayerStatus::Unavailable(why) = &mut layer.status {
            *why = untrusted_text(std::mem::take(why));
        }
    }
    Ok(Handshake {
        sandbox,
        exports: loaded.exports,
        imports: loaded.imports,
        artifact,
        compile: Duration::from_micros(loaded.compile_us),
        code: loaded.code,
    })
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
                worker.kill();
                return;
            }
            Err(e @ LinkError::Malformed(_)) => {
                worker.violation(&e.to_string());
                return;
            }
        };
        match frame {
            FromWorker::InvokeReply(reply) => {
                let (waiting, abandoned, next) = {
                    let mut pending = worker.lock_pending();
                    let abandoned = pending.abandoned.remove(&reply.id);
                    let waiting = pending.calls.remove(&reply.id);
                    let next = pending.calls.values().next().map(|w| w.chain.clone());
                    (waiting, abandoned, next)
                };
                if waiting.is_some() || abandoned {
                    broker.stats().add_fuel(reply.fuel_used, worker.max_fuel);
                }
                match waiting {
                    Some(Waiting { reply: tx, .. }) => {
                        // A worker runs one invocation at a time: host
                        // calls from here on belong to the next one.
                        broker
                            .begin_invocation(next.unwrap_or_else(crate::broker::events::no_chain));
                        let outcome = reply.outcome.map_err(|mut e| {
                            e.message = untrusted_text(e.message);
                            InvokeError::Guest(e)
                        });
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
                let sent = worker
                    .writer
                    .lock()
                    .await
                    .write(&ToWorker::HostReply(HostReplyMsg { id, reply }))
                    .await;
                if let Err(e) = sent {
                    worker.close(&format!("link write failed: {e}"));
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
            FromWorker::Fatal(message) => {
                let message = untrusted_text(message);
                tracing::error!(plugin = %worker.plugin, pid = worker.pid, %message, "worker reported a fatal error");
            }
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
    exit: watch::Sender<Option<String>>,
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
        Ok(status) => describe_exit(status),
        Err(e) => format!("wait failed: {e}"),
    };
    if cgroup
        .as_ref()
        .is_some_and(cgroup::WorkerCgroup::oom_killed)
    {
        cause.push_str(" (out of memory: over its cgroup's memory limit)");
    }
    // The process is gone: its cgroup can be removed (on drop).
    drop(cgroup);
    let _ = exit.send(Some(cause));
}

async fn fail_pending_on_exit(worker: Arc<Worker>) {
    let cause = worker.exited().await;
    worker.close(&cause);
}

/// `signal SIGKILL` or `exit code 3`.
pub fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => match nix::sys::signal::Signal::try_from(signal) {
            Ok(sig) => format!("signal {}", sig.as_str()),
            Err(_) => format!("signal {signal}"),
        },
        _ => "unknown exit".into(),
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
