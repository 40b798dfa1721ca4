//! Starting worker processes.
//!
//! Workers are started by exec of the `prx-worker` binary (never a bare
//! fork of this multi-threaded process) with an empty environment,
//! stdin/stdout/stderr on /dev/null, one inherited socket, whose number is
//! passed as `--link-fd`, and the sealed shared memory the frames travel
//! through (`--ring-fd`, see `prx_ipc::ring`), which the worker maps and
//! closes before it runs anything. A worker started from the compile cache also
//! inherits a read-only descriptor of the cached artifact
//! (`--artifact-fd`), which it maps instead of receiving 45 MB of bytes.
//!
//! No code runs in the child between fork and exec, so the standard
//! library can use `posix_spawn` (a vfork, which does not copy this
//! process's page tables): about a millisecond less per worker. The worker
//! sets its own parent-death signal and then checks that its parent is the
//! pid given by `--supervisor-pid`, which closes the window between spawn
//! and that call.
//!
//! Every spawn happens on one dedicated thread that lives as long as the
//! supervisor: the kernel ties the parent-death signal to the *thread* that
//! created the child, so a worker spawned from a short-lived thread would
//! be killed when that thread exits. Spawning on one thread also means no
//! two workers' sockets are ever inheritable at the same time.
//!
//! Making a network namespace costs the kernel most of a millisecond, as
//! much as the rest of the sandbox together. When the supervisor may (it
//! runs as root), it makes one empty network namespace at start and passes
//! it to every worker (`--netns-fd`), which joins it before giving up its
//! privileges. Workers share it but nothing is in it: no interface is up,
//! seccomp forbids sockets other than a local pair, and Landlock keeps
//! each worker from the abstract sockets of the others.

use std::os::fd::{AsRawFd, OwnedFd};

use prx_ipc::ring::Region;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

use crate::cache::CachedArtifact;

/// A started worker: the process and the supervisor's end of its link.
#[derive(Debug)]
pub struct Spawned {
    pub child: Child,
    pub socket: UnixStream,
    /// The supervisor's mapping of the link's shared memory.
    pub region: Arc<Region>,
}

struct Request {
    binary: PathBuf,
    args: Vec<String>,
    artifact: Option<Arc<CachedArtifact>>,
    runtime: tokio::runtime::Handle,
    reply: oneshot::Sender<std::io::Result<Spawned>>,
}

static SPAWNER: OnceLock<mpsc::Sender<Request>> = OnceLock::new();

/// The empty network namespace shared by workers, when one could be made.
static NETNS: OnceLock<Option<OwnedFd>> = OnceLock::new();

/// Makes an empty network namespace on a short-lived thread (namespaces
/// belong to threads; this process keeps its own) and keeps a descriptor
/// to it, which keeps it alive.
fn empty_netns() -> Option<OwnedFd> {
    if !nix::unistd::Uid::effective().is_root() {
        return None;
    }
    let made = std::thread::spawn(|| -> std::io::Result<OwnedFd> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
        let file = std::fs::File::open("/proc/thread-self/ns/net")?;
        Ok(OwnedFd::from(file))
    })
    .join();
    match made {
        Ok(Ok(fd)) => Some(fd),
        Ok(Err(e)) => {
            tracing::info!("no shared network namespace for workers ({e}); each makes its own");
            None
        }
        Err(_) => None,
    }
}

/// Starts a worker from the spawner thread; `args` are appended to the
/// ones every worker gets.
pub async fn spawn_worker(
    binary: PathBuf,
    args: Vec<String>,
    artifact: Option<Arc<CachedArtifact>>,
) -> std::io::Result<Spawned> {
    let sender = SPAWNER.get_or_init(start_spawner_thread);
    let (reply, answer) = oneshot::channel();
    sender
        .send(Request {
            binary,
            args,
            artifact,
            runtime: tokio::runtime::Handle::current(),
            reply,
        })
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?;
    answer
        .await
        .map_err(|_| std::io::Error::other("the spawner thread dropped the request"))?
}

fn start_spawner_thread() -> mpsc::Sender<Request> {
    let (tx, rx) = mpsc::channel::<Request>();
    std::thread::Builder::new()
        .name("prx-spawner".into())
        .spawn(move || {
            // Lives until the process exits: the sender is in a static.
            for request in rx {
                let _guard = request.runtime.enter();
                let _ =
                    request
                        .reply
                        .send(spawn_now(request.binary, request.args, request.artifact));
            }
        })
        .unwrap_or_else(|e| panic!("cannot start the spawner thread: {e}"));
    tx
}

fn spawn_now(
    binary: PathBuf,
    args: Vec<String>,
    artifact: Option<Arc<CachedArtifact>>,
) -> std::io::Result<Spawned> {
    let (ours, theirs) = UnixStream::pair()?;
    let theirs = OwnedFd::from(theirs);
    let (region, ring) = Region::create()?;
    // Inheritable only for the duration of this spawn; every other
    // descriptor of the supervisor is close-on-exec.
    fcntl(&theirs, FcntlArg::F_SETFD(FdFlag::empty()))?;
    fcntl(&ring, FcntlArg::F_SETFD(FdFlag::empty()))?;
    let netns = NETNS.get_or_init(empty_netns).as_ref();
    let mut command = Command::new(&binary);
    command
        .arg("--supervisor-pid")
        .arg(std::process::id().to_string())
        .arg("--link-fd")
        .arg(theirs.as_raw_fd().to_string())
        .arg("--ring-fd")
        .arg(ring.as_raw_fd().to_string());
    if let Some(netns) = netns {
        fcntl(netns, FcntlArg::F_SETFD(FdFlag::empty()))?;
        command.arg("--netns-fd").arg(netns.as_raw_fd().to_string());
    }
    // The worker's own descriptor of the artifact (opened read-only), so
    // the cache's stays close-on-exec; dropped once the child has it.
    let artifact = match artifact {
        Some(artifact) => {
            let fd = OwnedFd::from(artifact.file.try_clone()?);
            fcntl(&fd, FcntlArg::F_SETFD(FdFlag::empty()))?;
            command.arg("--artifact-fd").arg(fd.as_raw_fd().to_string());
            Some(fd)
        }
        None => None,
    };
    command
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(worker_stderr())
        .kill_on_drop(true);
    let child = command.spawn();
    drop(theirs);
    drop(ring);
    drop(artifact);
    if let Some(netns) = netns {
        fcntl(netns, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    }
    let child = child?;
    ours.set_nonblocking(true)?;
    Ok(Spawned {
        child,
        socket: ours,
        region,
    })
}

/// Workers write nothing to stderr in normal operation (everything travels
/// on the link); `PRX_WORKER_STDERR=inherit` shows it when debugging.
fn worker_stderr() -> Stdio {
    match std::env::var("PRX_WORKER_STDERR").as_deref() {
        Ok("inherit") => Stdio::inherit(),
        _ => Stdio::null(),
    }
}
