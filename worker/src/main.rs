//! `prx-worker`: one sandboxed PRX plugin.
//!
//! Started only by the supervisor: its end of the link is the socket named
//! by `--link-fd` (3 by default) and the shared memory named by
//! `--ring-fd`, through which the frames travel; the environment is empty,
//! stdin/stdout/stderr are /dev/null. It confines itself and says hello;
//! then it either compiles a component and sends the artifact back (a
//! compile worker, which never runs the plugin), or maps an artifact,
//! completes its sandbox, instantiates the plugin and answers invocations
//! until told to stop or until the link closes. No code of the plugin runs
//! before every sandbox layer, seccomp included, is in place.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use prx_ipc::{
    CHUNK_LEN, Chunk, CodeSource, Compiled, ComponentSource, FromWorker, Hello, InvokeReply,
    LoadFailed, LoadStage, Loaded, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, SandboxReport, ToWorker,
    WORKER_SOCKET_FD, Welcome, WireError,
};
use prx_worker::link::{Link, LinkBackend};
use prx_worker::runtime::{self, Plugin};
use prx_worker::sandbox;

/// Largest component or artifact accepted from the supervisor: far above
/// any real plugin (a Python component is about 40 MB compiled), low enough
/// that a wrong length cannot exhaust memory.
const MAX_COMPONENT_LEN: u64 = 512 << 20;

/// Exit codes the supervisor can tell apart.
const EXIT_USAGE: u8 = 64;
const EXIT_SANDBOX: u8 = 71;
const EXIT_PROTOCOL: u8 = 76;
const EXIT_LOAD: u8 = 78;

#[derive(Debug, thiserror::Error)]
enum WorkerError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("load failed at {stage:?}: {message}")]
    Load { stage: LoadStage, message: String },
}

/// What the supervisor started this worker with.
#[derive(Default)]
struct Args {
    supervisor_pid: Option<i32>,
    link_fd: i32,
    ring_fd: Option<i32>,
    netns_fd: Option<i32>,
    artifact_fd: Option<i32>,
    hooks: TestHooks,
}

/// What only the integration tests use; compiled in with the feature
/// `test-hooks` alone, so a release worker refuses these flags as unknown.
#[derive(Default)]
struct TestHooks {
    /// Abort when the plugin logs this line.
    #[cfg(feature = "test-hooks")]
    abort_marker: Option<String>,
    /// Answer tool calls by trying something forbidden (see `probe`).
    #[cfg(feature = "test-hooks")]
    probe: Option<String>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, ExitCode> {
    let fd_above_stdio = |v: Option<String>| v.and_then(|fd| fd.parse().ok()).filter(|fd| *fd > 2);
    let mut parsed = Args {
        link_fd: WORKER_SOCKET_FD,
        ..Args::default()
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--version" => {
                println!("prx-worker {}", env!("CARGO_PKG_VERSION"));
                return Err(ExitCode::SUCCESS);
            }
            "--supervisor-pid" => parsed.supervisor_pid = args.next().and_then(|p| p.parse().ok()),
            #[cfg(feature = "test-hooks")]
            "--test-abort-on-log" => parsed.hooks.abort_marker = args.next(),
            #[cfg(feature = "test-hooks")]
            "--test-probe" => parsed.hooks.probe = args.next(),
            "--netns-fd" => parsed.netns_fd = fd_above_stdio(args.next()),
            "--artifact-fd" => parsed.artifact_fd = fd_above_stdio(args.next()),
            "--ring-fd" => parsed.ring_fd = fd_above_stdio(args.next()),
            "--link-fd" => match fd_above_stdio(args.next()) {
                Some(fd) => parsed.link_fd = fd,
                None => {
                    eprintln!("prx-worker: --link-fd needs a descriptor number above 2");
                    return Err(ExitCode::from(EXIT_USAGE));
                }
            },
            _ => {
                eprintln!(
                    "prx-worker: started by the prx supervisor only (unknown argument {arg})"
                );
                return Err(ExitCode::from(EXIT_USAGE));
            }
        }
    }
    Ok(parsed)
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(code) => return code,
    };
    let link_fd = args.link_fd;
    let Some(ring_fd) = args.ring_fd else {
        eprintln!("prx-worker: --ring-fd needs a descriptor number above 2");
        return ExitCode::from(EXIT_USAGE);
    };
    let keep: Vec<i32> = [link_fd, ring_fd]
        .into_iter()
        .chain(args.netns_fd)
        .chain(args.artifact_fd)
        .collect();
    let report = match sandbox::enter(&keep, args.supervisor_pid) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("prx-worker: sandbox: {e}");
            return ExitCode::from(EXIT_SANDBOX);
        }
    };
    // SAFETY: the supervisor passes the link as `link_fd` and its shared
    // memory as `ring_fd`, and the sandbox step kept both open; nothing
    // else in this process owns them.
    let link = match unsafe { Link::from_raw_fds(link_fd, ring_fd) } {
        Ok(link) => Arc::new(link),
        Err(e) => {
            eprintln!("prx-worker: no link on fds {link_fd} and {ring_fd}: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    install_panic_hook(link.clone());
    let hello = Hello {
        min_protocol: MIN_PROTOCOL_VERSION,
        max_protocol: PROTOCOL_VERSION,
        worker_version: env!("CARGO_PKG_VERSION").into(),
        sandbox: report.clone(),
    };
    // SAFETY: the supervisor passes its namespace descriptor as this number
    // and the sandbox step kept it open; nothing else owns it.
    let netns = args
        .netns_fd
        .map(|fd| unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
    // SAFETY: as for the namespace: the supervisor's read-only descriptor
    // of the artifact, kept open by the sandbox step, owned by no one else.
    let artifact = args
        .artifact_fd
        .map(|fd| unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) });
    let inherited = Inherited {
        netns,
        artifact,
        hooks: args.hooks,
    };
    match run(&link, hello, report, inherited) {
        Ok(()) => ExitCode::SUCCESS,
        Err(WorkerError::Wire(WireError::Closed)) => ExitCode::SUCCESS,
        Err(e @ WorkerError::Load { .. }) => {
            if let WorkerError::Load { stage, message } = &e {
                let _ = link.send(&FromWorker::LoadFailed(LoadFailed {
                    stage: *stage,
                    message: message.clone().into(),
                }));
            }
            ExitCode::from(EXIT_LOAD)
        }
        Err(e) => {
            let _ = link.send(&FromWorker::Fatal(e.to_string().into()));
            ExitCode::from(EXIT_PROTOCOL)
        }
    }
}

/// A panic in the worker is reported on the link before the process dies.
fn install_panic_hook(link: Arc<Link>) {
    std::panic::set_hook(Box::new(move |info| {
        let _ = link.send(&FromWorker::Fatal(
            format!("worker panicked: {info}").into(),
        ));
    }));
}

/// What the worker was started with besides its link.
struct Inherited {
    /// The shared empty network namespace to join.
    netns: Option<std::os::fd::OwnedFd>,
    /// The compiled artifact to map, for a worker that runs the plugin.
    artifact: Option<std::fs::File>,
    hooks: TestHooks,
}

/// The handshake, then one of the two jobs a worker has: compile a
/// component (and never run it), or run an artifact a compile worker of the
/// same plugin produced.
fn run(
    link: &Arc<Link>,
    hello: Hello,
    mut report: SandboxReport,
    inherited: Inherited,
) -> Result<(), WorkerError> {
    link.send(&FromWorker::Hello(hello))?;
    let welcome = match link.recv()? {
        ToWorker::Welcome(w) => w,
        other => {
            return Err(WorkerError::Protocol(format!(
                "expected Welcome, got kind {}",
                prx_ipc::Message::kind(&other)
            )));
        }
    };
    if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&welcome.protocol) {
        return Err(WorkerError::Protocol(format!(
            "supervisor chose protocol {}, this worker speaks {MIN_PROTOCOL_VERSION}..={PROTOCOL_VERSION}",
            welcome.protocol
        )));
    }
    sandbox::confine(&welcome.sandbox, &mut report, inherited.netns);
    match welcome.component {
        ComponentSource::Wasm { len } => compile_only(link, &welcome, report, len),
        ComponentSource::Artifact { offset, len } => {
            let Some(file) = inherited.artifact else {
                return Err(WorkerError::Load {
                    stage: LoadStage::Receive,
                    message: "an artifact was announced but no --artifact-fd was passed".into(),
                });
            };
            let mut plugin = load(link, &welcome, report, file, offset, len, &inherited.hooks)?;
            serve(link, &mut plugin, &inherited.hooks)
        }
    }
}

/// A compile worker: seccomp goes in before a byte of the component is
/// received, the component is compiled to an artifact without its code
/// ever being made executable here (`precompile`), the artifact goes back
/// to the supervisor, and the worker waits to be told to exit.
fn compile_only(
    link: &Arc<Link>,
    welcome: &Welcome,
    mut report: SandboxReport,
    len: u64,
) -> Result<(), WorkerError> {
    // Both stages at once: no memory here ever becomes executable.
    sandbox::seccomp(&welcome.sandbox, &mut report, sandbox::Stage::Loading);
    sandbox::seccomp(&welcome.sandbox, &mut report, sandbox::Stage::Running);
    let bytes = receive_blob(link, len)?;
    let started = Instant::now();
    let load_err = |e: wasmtime::Error| WorkerError::Load {
        stage: LoadStage::Compile,
        message: format!("{e:#}"),
    };
    let engine = runtime::build_engine(&welcome.engine).map_err(load_err)?;
    let artifact = runtime::precompile(&engine, &bytes).map_err(load_err)?;
    drop(bytes);
    link.send(&FromWorker::Compiled(Compiled {
        artifact_len: artifact.len() as u64,
        compile_us: started.elapsed().as_micros() as u64,
        sandbox: report,
    }))?;
    for piece in artifact.chunks(CHUNK_LEN) {
        link.send(&FromWorker::Chunk(Chunk {
            bytes: piece.to_vec(),
        }))?;
    }
    match link.recv()? {
        ToWorker::Shutdown(()) => Ok(()),
        other => Err(WorkerError::Protocol(format!(
            "unexpected frame kind {} after compiling",
            prx_ipc::Message::kind(&other)
        ))),
    }
}

/// A worker that runs the plugin: installs seccomp's loading stage, maps
/// the artifact (the last time any memory of this process becomes
/// executable), links it, installs the running stage (no executable
/// memory), says so (`Confined`, which the supervisor checks against `/proc` before
/// it answers a single host call), and only then instantiates it, which
/// runs the plugin's start code.
fn load(
    link: &Arc<Link>,
    welcome: &Welcome,
    mut report: SandboxReport,
    file: std::fs::File,
    offset: u64,
    len: u64,
    hooks: &TestHooks,
) -> Result<Plugin, WorkerError> {
    let load_err = |stage: LoadStage| {
        move |e: wasmtime::Error| WorkerError::Load {
            stage,
            message: format!("{e:#}"),
        }
    };
    runtime::check_artifact(&file, offset, len).map_err(load_err(LoadStage::Deserialize))?;
    // The artifact came from a compile worker, which may have been taken
    // over: it is parsed and mapped under the whole allowlist, with only
    // executable memory still allowed.
    sandbox::seccomp(&welcome.sandbox, &mut report, sandbox::Stage::Loading);
    let started = Instant::now();
    // SAFETY: the supervisor passes only artifacts a compile worker of this
    // plugin produced with this build and these engine settings, stored
    // with a checksum and never rewritten in place (or sealed in a memfd);
    // wasmtime checks version and settings again.
    let (engine, component, code) =
        unsafe { runtime::load_artifact(&welcome.engine, file, offset, len) }
            .map_err(load_err(LoadStage::Deserialize))?;
    let took = started.elapsed().as_micros() as u64;
    let ticker = runtime::start_epoch_ticker(&engine);
    let backend = LinkBackend::new(link.clone(), welcome.log_level);
    #[cfg(feature = "test-hooks")]
    let backend = backend.abort_on_log(hooks.abort_marker.clone());
    #[cfg(not(feature = "test-hooks"))]
    let _ = hooks;
    let mut plugin = Plugin::new(&engine, &component, welcome.limits, Arc::new(backend))
        .map_err(load_err(LoadStage::Link))?
        .ticking(ticker);
    sandbox::seccomp(&welcome.sandbox, &mut report, sandbox::Stage::Running);
    link.send(&FromWorker::Confined(report))?;
    if code == CodeSource::Copied {
        let _ = link.send(&FromWorker::Log(prx_ipc::LogMsg {
            level: prx_ipc::LogLevel::Warn,
            message: "the cached artifact could not be mapped executable (is the state directory on a noexec mount?); it was read and copied instead, which makes every start slower".into(),
        }));
    }
    plugin.instantiate().map_err(|e| WorkerError::Load {
        stage: LoadStage::Instantiate,
        message: e.message.escaped(),
    })?;
    link.send(&FromWorker::Loaded(Loaded {
        exports: plugin.exports().to_vec(),
        imports: plugin.imports().to_vec(),
        compile_us: took,
        code,
    }))?;
    Ok(plugin)
}

fn receive_blob(link: &Link, len: u64) -> Result<Vec<u8>, WorkerError> {
    if len > MAX_COMPONENT_LEN {
        return Err(WorkerError::Load {
            stage: LoadStage::Receive,
            message: format!("component of {len} bytes exceeds {MAX_COMPONENT_LEN}"),
        });
    }
    let len = len as usize;
    let mut bytes = Vec::with_capacity(len);
    while bytes.len() < len {
        match link.recv()? {
            ToWorker::Chunk(Chunk { bytes: piece }) if bytes.len() + piece.len() <= len => {
                bytes.extend_from_slice(&piece);
            }
            _ => {
                return Err(WorkerError::Protocol(
                    "expected component chunks adding up to the announced length".into(),
                ));
            }
        }
    }
    Ok(bytes)
}

fn serve(link: &Link, plugin: &mut Plugin, hooks: &TestHooks) -> Result<(), WorkerError> {
    // After a heartbeat nothing is expected soon: block at once.
    let mut soon = true;
    loop {
        let frame = link.recv_expecting(soon)?;
        soon = !matches!(frame, ToWorker::Ping(_));
        match frame {
            ToWorker::Invoke(invoke) => {
                let outcome = match probe_outcome(link, hooks, &invoke.call) {
                    Some(outcome) => outcome,
                    None => plugin.invoke(&invoke.call),
                };
                link.send(&FromWorker::InvokeReply(InvokeReply {
                    id: invoke.id,
                    fuel_used: plugin.fuel_used(),
                    outcome,
                }))?;
            }
            ToWorker::Ping(nonce) => link.send(&FromWorker::Pong(nonce))?,
            ToWorker::Shutdown(()) => return Ok(()),
            other => {
                return Err(WorkerError::Protocol(format!(
                    "unexpected frame kind {} between invocations",
                    prx_ipc::Message::kind(&other)
                )));
            }
        }
    }
}

/// Test-only: a tool call answered by the probe instead of the plugin.
#[cfg(feature = "test-hooks")]
fn probe_outcome(
    link: &Link,
    hooks: &TestHooks,
    call: &prx_ipc::Call,
) -> Option<Result<prx_ipc::Output, prx_ipc::GuestError>> {
    let probe = hooks.probe.as_deref()?;
    let prx_ipc::Call::ToolExecute { .. } = call else {
        return None;
    };
    Some(Ok(prx_ipc::Output::ToolResult(prx_ipc::PluginResult {
        success: true,
        output: prx_worker::probe::run(probe, link.raw_fd()),
        error: None,
    })))
}

#[cfg(not(feature = "test-hooks"))]
fn probe_outcome(
    _: &Link,
    _: &TestHooks,
    _: &prx_ipc::Call,
) -> Option<Result<prx_ipc::Output, prx_ipc::GuestError>> {
    None
}
