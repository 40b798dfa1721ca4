//! Confinement of the worker process.
//!
//! Each step is one function returning `Result<(), SandboxError>`, so
//! [`enter`] and [`confine`] read as the list of steps in their order:
//!
//! 1. [`enter`], at start-up, before the first frame: close every fd but
//!    the link, clear the environment, chdir /, parent-death signal,
//!    parent check (the signal before the check, or the parent could die
//!    between the two unnoticed).
//! 2. [`confine`], once the supervisor's `Welcome` says which layers and
//!    which numbers, before a byte of the plugin is received: namespaces
//!    (user, PID, network, IPC, mount with an empty read-only root), rlimits,
//!    capabilities dropped, `no_new_privs` and not dumpable, Landlock.
//! 3. A compile worker installs seccomp and compiles without loading; a
//!    worker that runs the plugin maps its artifact and links it.
//! 4. [`crate::seccomp::install`] last, on every thread, before any code of
//!    the plugin runs.
//!
//! A layer the kernel does not offer is reported, not fatal here: the
//! supervisor checks the report (and the process itself) against what the
//! operator requires.

use std::os::fd::{OwnedFd, RawFd};

use nix::sys::signal::Signal;
use prx_ipc::{LayerReport, LayerStatus, SandboxReport, SandboxSettings, layer};

pub use crate::seccomp::Stage;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("closing inherited file descriptors failed")]
    CloseFds(#[source] nix::Error),
    #[error("chdir to / failed")]
    Chdir(#[source] nix::Error),
    #[error("setting the parent-death signal failed")]
    ParentDeathSignal(#[source] nix::Error),
    #[error("the supervisor (pid {expected}) is gone; parent is now {actual}")]
    ParentGone { expected: i32, actual: i32 },
    #[error("dropping to an unprivileged user: {0}")]
    DropUser(#[source] nix::Error),
    #[error("unshare: {0}")]
    Unshare(#[source] nix::Error),
    #[error("fork into the new PID namespace: {0}")]
    Fork(#[source] nix::Error),
    #[error("writing {file}: {source}")]
    IdMap {
        file: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("making an empty root ({step}): {source}")]
    EmptyRoot {
        step: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("setrlimit {resource}: {source}")]
    Rlimit {
        resource: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("dropping capabilities: {0}")]
    Capabilities(String),
    #[error("no_new_privs: {0}")]
    NoNewPrivs(#[source] nix::Error),
    #[error("landlock: {0}")]
    Landlock(String),
    #[error("landlock is not enforced by this kernel ({0})")]
    LandlockUnsupported(String),
}

/// The uid and gid a worker started by root runs as (`nobody`).
const NOBODY: u32 = 65534;
use prx_ipc::{WORKER_MAX_FDS as MAX_FDS, WORKER_MAX_THREADS as MAX_THREADS};

/// Applies every step; returns what was applied, for the handshake.
pub fn enter(keep: &[RawFd], supervisor_pid: Option<i32>) -> Result<SandboxReport, SandboxError> {
    let mut report = SandboxReport::default();
    close_other_fds(keep)?;
    report.applied("close-fds");
    clear_environment();
    std::env::set_current_dir("/")
        .map_err(|e| SandboxError::Chdir(nix::Error::from_raw(e.raw_os_error().unwrap_or(0))))?;
    report.applied("clear-env");
    set_parent_death_signal()?;
    check_parent(supervisor_pid)?;
    report.applied("parent-death-signal");
    Ok(report)
}

type Step<'a> = &'a dyn Fn() -> Result<(), SandboxError>;

/// Applies the layers `settings` asks for, in order, recording each.
/// `netns` is the supervisor's shared empty network namespace, if it
/// passed one; it is closed here whatever happens.
pub fn confine(settings: &SandboxSettings, report: &mut SandboxReport, netns: Option<OwnedFd>) {
    let netns = std::cell::RefCell::new(netns);
    let steps: [(&str, bool, Step<'_>); 5] = [
        (layer::NAMESPACES, settings.namespaces, &|| {
            namespaces(netns.borrow_mut().take())
        }),
        (layer::RLIMITS, settings.rlimits, &|| rlimits(settings)),
        (
            layer::CAPABILITIES,
            settings.capabilities,
            &drop_capabilities,
        ),
        (layer::NO_NEW_PRIVS, settings.no_new_privs, &no_new_privs),
        (layer::LANDLOCK, settings.landlock, &landlock),
    ];
    for (layer, wanted, step) in steps {
        if !wanted {
            report.record(layer, LayerStatus::Disabled);
            continue;
        }
        match step() {
            Ok(()) => report.applied(layer),
            Err(e) => report.record(layer, LayerStatus::Unavailable(e.to_string())),
        }
    }
    drop(netns);
}

/// Installs one stage of seccomp (the last layer). The layer is recorded
/// once: when a stage fails, or when the running stage is in place.
pub fn seccomp(settings: &SandboxSettings, report: &mut SandboxReport, stage: Stage) {
    if report.layers.iter().any(|l| l.layer == layer::SECCOMP) {
        return;
    }
    match settings.seccomp {
        prx_ipc::SeccompMode::Off => report.record(layer::SECCOMP, LayerStatus::Disabled),
        mode => match crate::seccomp::install(mode, stage) {
            Ok(()) if stage == Stage::Loading => {}
            Ok(()) if mode == prx_ipc::SeccompMode::Log => report.record(
                layer::SECCOMP,
                LayerStatus::Unavailable("log mode: violations are logged, not blocked".into()),
            ),
            Ok(()) => report.applied(layer::SECCOMP),
            Err(e) => report.record(layer::SECCOMP, LayerStatus::Unavailable(e.to_string())),
        },
    }
}

trait Record {
    fn applied(&mut self, layer: &str);
    fn record(&mut self, layer: &str, status: LayerStatus);
}

impl Record for SandboxReport {
    fn applied(&mut self, layer: &str) {
        self.record(layer, LayerStatus::Applied);
    }

    fn record(&mut self, layer: &str, status: LayerStatus) {
        self.layers.push(LayerReport {
            layer: layer.into(),
            status,
        });
    }
}

/// A new user namespace (as `nobody` when started by root), with new PID,
/// network, IPC and mount namespaces owned by it: no process outside has a
/// number the worker can name, no interfaces but a loopback that is down,
/// no System V IPC shared with anyone, and a root that is an empty
/// read-only tmpfs.
///
/// A process that unshared its PID namespace can no longer make threads
/// (only its children live in the new namespace), so the worker forks
/// once right after: the child, process 1 of the namespace, goes on as the
/// worker; the parent stays outside, holding nothing, and leaves the way
/// the child leaves ([`mirror`]).
fn namespaces(netns: Option<OwnedFd>) -> Result<(), SandboxError> {
    use nix::sched::{CloneFlags, setns, unshare};
    use nix::unistd::{Gid, Uid, setgroups, setresgid, setresuid};
    let mut flags = CloneFlags::CLONE_NEWUSER
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWNS;
    // Joining the supervisor's empty namespace needs the privilege we are
    // about to give up; making one of our own is the fallback.
    if let Some(netns) = netns
        && Uid::effective().is_root()
        && setns(&netns, CloneFlags::CLONE_NEWNET).is_ok()
    {
        flags.remove(CloneFlags::CLONE_NEWNET);
    }
    if Uid::effective().is_root() {
        let parent = nix::unistd::getppid().as_raw();
        let nobody = (Uid::from_raw(NOBODY), Gid::from_raw(NOBODY));
        setgroups(&[]).map_err(SandboxError::DropUser)?;
        setresgid(nobody.1, nobody.1, nobody.1).map_err(SandboxError::DropUser)?;
        setresuid(nobody.0, nobody.0, nobody.0).map_err(SandboxError::DropUser)?;
        // Changing credentials cleared the parent-death signal: set it
        // again, and check the supervisor did not die in between.
        set_parent_death_signal()?;
        check_parent(Some(parent))?;
        // Changing uid made the process undumpable, which makes its /proc
        // files root's: the id maps below could not be written. The
        // no_new_privs step makes it undumpable again.
        nix::sys::prctl::set_dumpable(true).map_err(SandboxError::DropUser)?;
    }
    let (uid, gid) = (Uid::effective().as_raw(), Gid::effective().as_raw());
    unshare(flags).map_err(SandboxError::Unshare)?;
    become_pid_one()?;
    let write = |file: &'static str, text: String| {
        std::fs::write(format!("/proc/self/{file}"), text)
            .map_err(|source| SandboxError::IdMap { file, source })
    };
    write("setgroups", "deny".into())?;
    write("uid_map", format!("0 {uid} 1"))?;
    write("gid_map", format!("0 {gid} 1"))?;
    empty_root()
}

/// Forks into the new PID namespace. Returns in the child (process 1
/// there); the parent never returns.
fn become_pid_one() -> Result<(), SandboxError> {
    use nix::unistd::{ForkResult, fork};
    // SAFETY: the worker has one thread until its sandbox is in place (the
    // user namespace it just entered requires it), so the child may run
    // anything the parent could.
    match unsafe { fork() }.map_err(SandboxError::Fork)? {
        // The death signal is not inherited: the child dies with the
        // parent, which dies with the supervisor.
        ForkResult::Child => set_parent_death_signal(),
        ForkResult::Parent { child } => mirror(child),
    }
}

/// The parent outside the namespace: closes everything it inherited (the
/// link, the artifact), waits for the worker and exits as it did, with
/// the same code or by the same signal, so the supervisor, which started
/// this process, sees how the worker ended. It runs no code of the plugin
/// and cannot be named from inside the namespace.
fn mirror(child: nix::unistd::Pid) -> ! {
    use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, signal, sigprocmask};
    use nix::sys::wait::{WaitStatus, waitpid};
    // SAFETY: only closes descriptors; this process uses none of them again.
    unsafe { nix::libc::syscall(nix::libc::SYS_close_range, 3u32, u32::MAX, 0) };
    // No core dump of this process whatever signal it re-raises.
    let _ = nix::sys::prctl::set_dumpable(false);
    let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
    loop {
        match waitpid(child, None) {
            // SAFETY: _exit ends the process at once; nothing to unwind.
            Ok(WaitStatus::Exited(_, code)) => unsafe { nix::libc::_exit(code) },
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                // SAFETY: restoring the default action of one signal in a
                // single-threaded process that installed no handler.
                let _ = unsafe { signal(sig, SigHandler::SigDfl) };
                let mut set = SigSet::empty();
                set.add(sig);
                let _ = sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None);
                let _ = nix::sys::signal::raise(sig);
                // SAFETY: as above.
                unsafe { nix::libc::_exit(128 + sig as i32) }
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            // SAFETY: as above.
            Err(_) => unsafe { nix::libc::_exit(71) },
        }
    }
}

/// Replaces the root with an empty tmpfs, read-only, in this mount
/// namespace only.
fn empty_root() -> Result<(), SandboxError> {
    use nix::mount::{MntFlags, MsFlags, mount, umount2};
    let step = |step: &'static str| move |source| SandboxError::EmptyRoot { step, source };
    let none: Option<&str> = None;
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .map_err(step("making mounts private"))?;
    // Any existing directory serves as the mount point; /tmp nearly
    // always exists, /dev always.
    let new_root = ["/tmp", "/mnt", "/dev"]
        .into_iter()
        .find(|d| std::path::Path::new(d).is_dir())
        .unwrap_or("/dev");
    let hidden = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(
        Some("tmpfs"),
        new_root,
        Some("tmpfs"),
        hidden,
        Some("size=4k,nr_inodes=4,mode=0555"),
    )
    .map_err(step("mounting a tmpfs"))?;
    let old = format!("{new_root}/old");
    nix::unistd::mkdir(
        old.as_str(),
        nix::sys::stat::Mode::from_bits_truncate(0o000),
    )
    .map_err(step("mkdir"))?;
    nix::unistd::pivot_root(new_root, old.as_str()).map_err(step("pivot_root"))?;
    nix::unistd::chdir("/").map_err(step("chdir"))?;
    umount2("/old", MntFlags::MNT_DETACH).map_err(step("detaching the old root"))?;
    std::fs::remove_dir("/old").map_err(|e| SandboxError::EmptyRoot {
        step: "rmdir",
        source: nix::Error::from_raw(e.raw_os_error().unwrap_or(0)),
    })?;
    mount(
        none,
        "/",
        none,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | hidden,
        none,
    )
    .map_err(step("remounting read-only"))
}

/// No core dumps, no file writes, few descriptors and threads, the address
/// space the engine needs, and optionally a CPU-time cap.
fn rlimits(settings: &SandboxSettings) -> Result<(), SandboxError> {
    use nix::sys::resource::{Resource, setrlimit};
    let set = |resource: Resource, name: &'static str, value: u64| {
        setrlimit(resource, value, value).map_err(|source| SandboxError::Rlimit {
            resource: name,
            source,
        })
    };
    set(Resource::RLIMIT_CORE, "core", 0)?;
    set(Resource::RLIMIT_FSIZE, "fsize", settings.file_size)?;
    set(Resource::RLIMIT_NOFILE, "nofile", MAX_FDS)?;
    set(Resource::RLIMIT_NPROC, "nproc", MAX_THREADS)?;
    set(Resource::RLIMIT_MEMLOCK, "memlock", 0)?;
    set(Resource::RLIMIT_MSGQUEUE, "msgqueue", 0)?;
    if settings.address_space > 0 {
        set(Resource::RLIMIT_AS, "as", settings.address_space)?;
    }
    if settings.cpu_seconds > 0 {
        set(Resource::RLIMIT_CPU, "cpu", settings.cpu_seconds)?;
    }
    Ok(())
}

/// Empties every capability set: bounding and ambient first (dropping
/// from the bounding set needs CAP_SETPCAP, still effective then), then
/// inheritable, effective and permitted.
fn drop_capabilities() -> Result<(), SandboxError> {
    use caps::CapSet;
    for set in [
        CapSet::Bounding,
        CapSet::Ambient,
        CapSet::Inheritable,
        CapSet::Effective,
        CapSet::Permitted,
    ] {
        caps::clear(None, set).map_err(|e| SandboxError::Capabilities(format!("{set:?}: {e}")))?;
    }
    Ok(())
}

/// No privilege can be gained by exec (setuid bits, file capabilities),
/// and the process cannot be ptraced or dumped by its own uid.
fn no_new_privs() -> Result<(), SandboxError> {
    nix::sys::prctl::set_no_new_privs().map_err(SandboxError::NoNewPrivs)?;
    nix::sys::prctl::set_dumpable(false).map_err(SandboxError::NoNewPrivs)
}

/// Landlock with no rule: every filesystem access it knows is denied, as
/// are TCP bind and connect, signals to processes outside the sandbox and
/// abstract Unix sockets made outside it. Applied while the worker has one
/// thread; threads made later inherit it.
fn landlock() -> Result<(), SandboxError> {
    use landlock::{
        ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, RulesetAttr, RulesetStatus,
        Scope,
    };
    let abi = ABI::V6;
    let err = |e: landlock::RulesetError| SandboxError::Landlock(e.to_string());
    let status = landlock::Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi))
        .map_err(err)?
        .handle_access(AccessNet::from_all(abi))
        .map_err(err)?
        .scope(Scope::from_all(abi))
        .map_err(err)?
        .create()
        .map_err(err)?
        .restrict_self()
        .map_err(err)?;
    match status.ruleset {
        RulesetStatus::FullyEnforced => Ok(()),
        other => Err(SandboxError::LandlockUnsupported(format!("{other:?}"))),
    }
}

/// Closes every descriptor above stderr except those in `keep` (the link,
/// and the shared network namespace when there is one). stdin, stdout and
/// stderr are /dev/null when the supervisor starts us.
fn close_other_fds(keep: &[RawFd]) -> Result<(), SandboxError> {
    let close = |first: u32, last: u32| -> Result<(), SandboxError> {
        if first > last {
            return Ok(());
        }
        // SAFETY: close_range only closes descriptors; none of the closed
        // ones is owned by Rust code at this point of start-up (the link is
        // kept, and nothing else has been opened yet).
        let rc = unsafe { nix::libc::syscall(nix::libc::SYS_close_range, first, last, 0) };
        if rc != 0 {
            return Err(SandboxError::CloseFds(nix::Error::last()));
        }
        Ok(())
    };
    let mut keep: Vec<u32> = keep
        .iter()
        .map(|fd| *fd as u32)
        .filter(|fd| *fd > 2)
        .collect();
    keep.sort_unstable();
    let mut next = 3;
    for fd in keep {
        close(next, fd.saturating_sub(1))?;
        next = fd + 1;
    }
    close(next, u32::MAX)
}

/// The supervisor starts us with an empty environment; this makes sure.
fn clear_environment() {
    for (key, _) in std::env::vars_os() {
        // SAFETY: still single-threaded: no other thread reads the
        // environment while it is changed.
        unsafe { std::env::remove_var(key) };
    }
}

/// SIGKILL when the supervisor dies, so no worker outlives it.
fn set_parent_death_signal() -> Result<(), SandboxError> {
    nix::sys::prctl::set_pdeathsig(Some(Signal::SIGKILL)).map_err(SandboxError::ParentDeathSignal)
}

/// If the supervisor died before the signal was set, we were re-parented.
fn check_parent(expected: Option<i32>) -> Result<(), SandboxError> {
    let actual = nix::unistd::getppid().as_raw();
    match expected {
        Some(expected) if expected != actual => Err(SandboxError::ParentGone { expected, actual }),
        _ => Ok(()),
    }
}
