//! `prx-worker`: one sandboxed PRX plugin.
//!
//! Started only by the supervisor: its end of the link is the descriptor
//! named by `--link-fd` (3 by default), the environment is empty,
//! stdin/stdout/stderr are /dev/null. It confines
//! itself, says hello, receives the plugin, compiles it, and then answers
//! invocations until told to stop or until the link closes.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use prx_ipc::{
    CHUNK_LEN, Chunk, CodeSource, ComponentSource, FromWorker, Hello, InvokeReply, LoadFailed,
    LoadStage, Loaded, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, SandboxReport, ToWorker,
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

fn main() -> ExitCode {
    let mut supervisor_pid = None;
    let mut link_fd = WORKER_SOCKET_FD;
    let mut abort_marker = None;
    let mut probe = None;
    let mut netns_fd: Option<i32> = None;
    let mut artifact_fd: Option<i32> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--version" => {
                println!("prx-worker {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            "--supervisor-pid" => supervisor_pid = args.next().and_then(|p| p.parse().ok()),
            // Test-only: abort when the plugin logs this line. Only the
            // supervisor library's test configuration passes it.
            "--test-abort-on-log" => abort_marker = args.next(),
            // Test-only: answer tool calls by trying something forbidden
            // (see `probe`). Only the library's test configuration passes it.
            "--test-probe" => probe = args.next(),
            "--netns-fd" => {
                netns_fd = args
                    .next()
                    .and_then(|fd| fd.parse().ok())
                    .filter(|fd| *fd > 2)
            }
            "--artifact-fd" => {
                artifact_fd = args
                    .next()
                    .and_then(|fd| fd.parse().ok())
                    .filter(|fd| *fd > 2)
            }
            "--link-fd" => match args.next().and_then(|fd| fd.parse().ok()) {
                Some(fd) if fd > 2 => link_fd = fd,
                _ => {
                    eprintln!("prx-worker: --link-fd needs a descriptor number above 2");
                    return ExitCode::from(EXIT_USAGE);
                }
            },
            _ => {
                eprintln!(
                    "prx-worker: started by the prx supervisor only (unknown argument {arg})"
                );
                return ExitCode::from(EXIT_USAGE);
            }
        }
    }
    let keep: Vec<i32> = std::iter::once(link_fd)
        .chain(netns_fd)
        .chain(artifact_fd)
        .collect();
    let report = match sandbox::enter(&keep, supervisor_pid) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("prx-worker: sandbox: {e}");
            return ExitCode::from(EXIT_SANDBOX);
        }
    };
    // SAFETY: the supervisor passes the link as `link_fd` and the sandbox
    // step kept it open; nothing else in this process owns it.
    let link = match unsafe { Link::from_raw_fd(link_fd) } {
        Ok(link) => Arc::new(link),
        Err(e) => {
            eprintln!("prx-worker: no link on fd {link_fd}: {e}");
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
    let netns = netns_fd
        .map(|fd| unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
    // SAFETY: as for the namespace: the supervisor's read-only descriptor
    // of the cached artifact, kept open by the sandbox step, owned by no
    // one else.
    let artifact =
        artifact_fd.map(|fd| unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) });
    let probe = probe.as_deref().map(|p| (p, link_fd));
    let inherited = Inherited {
        netns,
        artifact,
        abort_marker,
    };
    match run(&link, hello, report, inherited, probe) {
        Ok(()) => ExitCode::SUCCESS,
        Err(WorkerError::Wire(WireError::Closed)) => ExitCode::SUCCESS,
        Err(e @ WorkerError::Load { .. }) => {
            if let WorkerError::Load { stage, message } = &e {
                let _ = link.send(&FromWorker::LoadFailed(LoadFailed {
                    stage: *stage,
                    message: message.clone(),
                }));
            }
            ExitCode::from(EXIT_LOAD)
        }
        Err(e) => {
            let _ = link.send(&FromWorker::Fatal(e.to_string()));
            ExitCode::from(EXIT_PROTOCOL)
        }
    }
}

/// A panic in the worker is reported on the link before the process dies.
fn install_panic_hook(link: Arc<Link>) {
    std::panic::set_hook(Box::new(move |info| {
        let _ = link.send(&FromWorker::Fatal(format!("worker panicked: {info}")));
    }));
}

/// What the worker was started with besides its link.
struct Inherited {
    /// The shared empty network namespace to join.
    netns: Option<std::os::fd::OwnedFd>,
    /// The cached artifact to map, when the plugin starts from the cache.
    artifact: Option<std::fs::File>,
    /// Test-only: abort when the plugin logs this line.
    abort_marker: Option<String>,
}

fn run(
    link: &Arc<Link>,
    hello: Hello,
    mut report: SandboxReport,
    inherited: Inherited,
    probe: Option<(&str, i32)>,
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
    let mut plugin = load(
        link,
        &welcome,
        report,
        inherited.artifact,
        inherited.abort_marker,
    )?;
    serve(link, &mut plugin, probe)
}

/// Receives, compiles (or deserialises) and instantiates the plugin, then
/// reports its exports and, if asked, sends the compiled artifact back.
fn load(
    link: &Arc<Link>,
    welcome: &Welcome,
    mut report: SandboxReport,
    artifact: Option<std::fs::File>,
    abort_marker: Option<String>,
) -> Result<Plugin, WorkerError> {
    let load_err = |stage: LoadStage| {
        move |e: wasmtime::Error| WorkerError::Load {
            stage,
            message: format!("{e:#}"),
        }
    };
    let mut want_artifact = false;
    let (engine, component, compile_us, code) = match welcome.component {
        ComponentSource::Wasm {
            len,
            want_artifact: want,
        } => {
            want_artifact = want;
            let bytes = receive_blob(link, len)?;
            let started = Instant::now();
            let engine =
                runtime::build_engine(&welcome.engine).map_err(load_err(LoadStage::Compile))?;
            let component =
                runtime::compile(&engine, &bytes).map_err(load_err(LoadStage::Compile))?;
            let took = started.elapsed().as_micros() as u64;
            (engine, component, took, CodeSource::Compiled)
        }
        ComponentSource::Artifact { offset, len } => {
            let file = artifact.ok_or_else(|| WorkerError::Load {
                stage: LoadStage::Receive,
                message: "a cached artifact was announced but no --artifact-fd was passed".into(),
            })?;
            let started = Instant::now();
            // SAFETY: the supervisor passes only artifacts it stored from a
            // worker of this build, keyed by the wasm hash and these engine
            // settings, checksummed, and never rewritten in place; wasmtime
            // checks version and settings again.
            let (engine, component, code) =
                unsafe { runtime::load_artifact(&welcome.engine, file, offset, len) }
                    .map_err(load_err(LoadStage::Deserialize))?;
            if code == CodeSource::Copied {
                let _ = link.send(&FromWorker::Log(prx_ipc::LogMsg {
                    level: prx_ipc::LogLevel::Warn,
                    message: "the cached artifact could not be mapped executable (is the state directory on a noexec mount?); it was read and copied instead, which makes every start slower".into(),
                }));
            }
            let took = started.elapsed().as_micros() as u64;
            (engine, component, took, code)
        }
    };
    runtime::start_epoch_ticker(&engine);
    let backend = Arc::new(LinkBackend::new(
        link.clone(),
        welcome.log_level,
        abort_marker,
    ));
    let mut plugin = Plugin::new(&engine, &component, welcome.limits, backend)
        .map_err(load_err(LoadStage::Link))?;
    plugin.instantiate().map_err(|e| WorkerError::Load {
        stage: LoadStage::Instantiate,
        message: e.message,
    })?;
    let artifact = if want_artifact {
        component
            .serialize()
            .map_err(load_err(LoadStage::Compile))?
    } else {
        Vec::new()
    };
    // Last: from here on the worker only computes and talks on the link.
    sandbox::seccomp(&welcome.sandbox, &mut report);
    link.send(&FromWorker::Loaded(Loaded {
        exports: plugin.exports().to_vec(),
        imports: plugin.imports().to_vec(),
        artifact_len: artifact.len() as u64,
        compile_us,
        code,
        sandbox: report,
    }))?;
    for piece in artifact.chunks(CHUNK_LEN) {
        link.send(&FromWorker::Chunk(Chunk {
            bytes: piece.to_vec(),
        }))?;
    }
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

fn serve(link: &Link, plugin: &mut Plugin, probe: Option<(&str, i32)>) -> Result<(), WorkerError> {
    loop {
        match link.recv()? {
            ToWorker::Invoke(invoke) => {
                let outcome = match (probe, &invoke.call) {
                    (Some((probe, fd)), prx_ipc::Call::ToolExecute { .. }) => {
                        Ok(prx_ipc::Output::ToolResult(prx_ipc::PluginResult {
                            success: true,
                            output: prx_worker::probe::run(probe, fd),
                            error: None,
                        }))
                    }
                    _ => plugin.invoke(&invoke.call),
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
