//! A worker's start-up: spawning it under its sandbox, the greeting, and
//! the one of two phases it was started for (compile the component, or map
//! an artifact and load it), each frame checked against what that phase
//! allows, and the sandbox it reports checked against /proc.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prx_ipc::{
    CHUNK_LEN, Chunk, CodeSource, ComponentSource, FromWorker, HostCallMsg, HostReplyMsg,
    Interface, LayerReport, LayerStatus, LoadStage, SandboxReport, SandboxSettings, ToWorker,
    Welcome, negotiate,
};
use tokio::sync::{Mutex as AsyncMutex, oneshot, watch};

use crate::cache::CachedArtifact;
use crate::text::untrusted_text;

use super::calls::Pending;
use super::exit::{EXIT_AFTER_CLOSE, fail_pending_on_exit, wait_for_exit};
use super::frames::{FrameReader, FrameWriter};
use super::liveness::heartbeat;
use super::serve::{plugin_log_level, serve};
use super::{
    ExitCause, LinkError, SourceKind, StartError, Started, Worker, WorkerSpec, spawn_worker,
};

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
        let cgroup = if spec.sandbox.enabled.contains(&super::verify::Layer::Cgroup) {
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
        let (tx, rx) = prx_ipc::ring::ends(&spawned.region, prx_ipc::ring::TO_WORKER);
        let (kill_tx, kill_rx) = oneshot::channel();
        let (exit_tx, exit_rx) = watch::channel(None);
        let waiter = tokio::spawn(wait_for_exit(spawned.child, kill_rx, exit_tx, cgroup));
        Ok(Self {
            pid,
            reader: FrameReader::new(rx, read_half),
            writer: FrameWriter::new(tx, write_half),
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
    let hello = match reader.read().await.map_err(hello_err)? {
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

/// A worker that says hello on the socket predates the shared-memory link
/// (it is from another build): said so, rather than taken for an attack.
fn hello_err(e: LinkError) -> StartError {
    match e {
        LinkError::Lied(prx_ipc::ring::RingError::NotAWake(_)) => StartError::Exited(
            "it wrote its hello on the socket, not in the shared memory: a prx-worker older \
             than this supervisor; use the worker built with it"
                .into(),
        ),
        e => link_err(e),
    }
}

fn link_err(e: LinkError) -> StartError {
    match e {
        LinkError::Closed => StartError::Exited("link closed".into()),
        other => StartError::Violation(other.to_string()),
    }
}

fn send_err(e: LinkError) -> StartError {
    match e {
        LinkError::Lied(_) => StartError::Violation(e.to_string()),
        e => StartError::Exited(format!("sending the plugin failed: {e}")),
    }
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
        layer: super::verify::Layer::Cgroup.as_str().into(),
        status: launch.cgroup.clone(),
    });
    let pid = super::verify::check(&spec.sandbox, settings, &report, launch.pid)?;
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

pub(super) fn stage_name(stage: LoadStage) -> &'static str {
    match stage {
        LoadStage::Receive => "receiving the component",
        LoadStage::Compile => "compiling",
        LoadStage::Deserialize => "deserializing the cached artifact",
        LoadStage::Link => "linking (the component imports something the host does not provide)",
        LoadStage::Instantiate => "instantiating",
    }
}

impl Worker {
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
            imports: done
                .imports
                .iter()
                .filter_map(|name| Interface::from_wit_name(name))
                .collect(),
            sandbox: done.sandbox,
            started_at: Instant::now(),
            writer: AsyncMutex::new(writer),
            watch: reader.watch(),
            pending: Mutex::new(Pending::default()),
            next_id: AtomicU64::new(1),
            kill: Mutex::new(Some(kill_tx)),
            exit: exit_rx,
            kill_reason: Mutex::new(None),
            on_purpose: std::sync::atomic::AtomicBool::new(false),
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
