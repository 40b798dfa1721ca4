//! Starting worker processes.
//!
//! Workers are started by exec of the `prx-worker` binary (never a bare
//! fork of this multi-threaded process) with an empty environment,
//! stdin/stdout/stderr on /dev/null and one socket as fd 3.
//!
//! Every spawn happens on one dedicated thread that lives as long as the
//! supervisor: the kernel ties `PR_SET_PDEATHSIG` to the *thread* that
//! forked the child, so a worker spawned from a short-lived thread would be
//! killed when that thread exits.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::sync::mpsc;

use prx_ipc::WORKER_SOCKET_FD;
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

/// A started worker: the process and the supervisor's end of its link.
#[derive(Debug)]
pub struct Spawned {
    pub child: Child,
    pub socket: UnixStream,
}

struct Request {
    binary: PathBuf,
    runtime: tokio::runtime::Handle,
    reply: oneshot::Sender<std::io::Result<Spawned>>,
}

static SPAWNER: OnceLock<mpsc::Sender<Request>> = OnceLock::new();

/// Starts a worker from the spawner thread.
pub async fn spawn_worker(binary: PathBuf) -> std::io::Result<Spawned> {
    let sender = SPAWNER.get_or_init(start_spawner_thread);
    let (reply, answer) = oneshot::channel();
    sender
        .send(Request {
            binary,
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
                let _ = request.reply.send(spawn_now(request.binary));
            }
        })
        .unwrap_or_else(|e| panic!("cannot start the spawner thread: {e}"));
    tx
}

fn spawn_now(binary: PathBuf) -> std::io::Result<Spawned> {
    let (ours, theirs) = UnixStream::pair()?;
    let theirs = OwnedFd::from(theirs);
    let their_fd = theirs.as_raw_fd();
    let mut command = Command::new(&binary);
    command
        .arg("--supervisor-pid")
        .arg(std::process::id().to_string())
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(worker_stderr())
        .kill_on_drop(true);
    // SAFETY: the closure runs in the forked child before exec and only
    // makes async-signal-safe calls (dup2, fcntl, prctl) on plain integers.
    unsafe {
        command.pre_exec(move || {
            if their_fd == WORKER_SOCKET_FD {
                // dup2 onto itself keeps FD_CLOEXEC set; clear it instead.
                if nix::libc::fcntl(their_fd, nix::libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if nix::libc::dup2(their_fd, WORKER_SOCKET_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGKILL) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn()?;
    drop(theirs);
    ours.set_nonblocking(true)?;
    Ok(Spawned {
        child,
        socket: ours,
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
