//! The seccomp allowlist: the only system calls a worker makes once its
//! plugin is loaded. Anything else kills the process (`SIGSYS`), or, in
//! the development mode (`[sandbox] seccomp = "log-only"`), is allowed
//! and logged by the kernel (`dmesg`, `audit: type=1326`).
//!
//! How the list was derived: every test guest run in log-only mode under
//! `strace -f`, collecting the syscalls each worker made after its
//! filter went in (the kernel's audit log is rate-limited and drops
//! entries, so it alone is not enough); then the whole test suite and the
//! benchmarks in enforcing mode until no worker was killed. To extend it
//! for a new kind of guest, do the same.
//!
//! The list is data: one line per syscall with why the worker needs it.
//! x86_64 and aarch64 only; elsewhere the layer reports itself
//! unavailable.

use std::collections::BTreeMap;

use nix::libc;

use prx_ipc::SeccompMode;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// Allowed without conditions, each with the reason.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const ALLOWED: &[(i64, &str)] = &[
    // The link to the supervisor.
    (libc::SYS_read, "frames from the supervisor"),
    (libc::SYS_write, "frames to the supervisor"),
    (libc::SYS_recvfrom, "std's socket reads"),
    (libc::SYS_sendto, "std's socket writes"),
    (libc::SYS_ppoll, "waiting on the link with a timeout"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_poll, "waiting on the link with a timeout"),
    (libc::SYS_close, "dropping descriptors (memfd images)"),
    // WASI's blocking calls run on a small tokio runtime made on first use.
    (libc::SYS_epoll_create1, "WASI's runtime: its poller"),
    (libc::SYS_epoll_ctl, "WASI's runtime: registering"),
    (libc::SYS_epoll_pwait, "WASI's runtime: waiting"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_epoll_wait, "WASI's runtime: waiting"),
    (libc::SYS_eventfd2, "WASI's runtime: waking itself"),
    // Memory: the allocator, linear memories, code.
    (libc::SYS_mmap, "allocator and linear memory reservations"),
    (libc::SYS_munmap, "freeing them"),
    (
        libc::SYS_mprotect,
        "making linear memory accessible, code executable",
    ),
    (
        libc::SYS_madvise,
        "resetting linear memory between instances",
    ),
    (libc::SYS_mremap, "growing allocations"),
    (libc::SYS_brk, "the allocator's heap"),
    (
        libc::SYS_memfd_create,
        "copy-on-write images of a module's initial memory",
    ),
    (libc::SYS_ftruncate, "sizing those images"),
    (libc::SYS_fcntl, "descriptor flags"),
    (libc::SYS_fstat, "sizing a descriptor"),
    (libc::SYS_lseek, "descriptor positions"),
    (
        libc::SYS_membarrier,
        "wasmtime publishing new code to every thread",
    ),
    // Threads: the epoch ticker and parallel compilation.
    (libc::SYS_futex, "locks and condition variables"),
    (libc::SYS_set_robust_list, "new threads"),
    (libc::SYS_rseq, "new threads (glibc)"),
    (libc::SYS_sched_yield, "spinning on the link"),
    (libc::SYS_sched_getaffinity, "how many compile threads"),
    (libc::SYS_gettid, "thread ids"),
    (libc::SYS_getpid, "process id"),
    (libc::SYS_exit, "a thread ends"),
    (libc::SYS_exit_group, "the worker ends"),
    // Signals: wasmtime turns faults into traps.
    (libc::SYS_rt_sigaction, "trap handlers"),
    (libc::SYS_rt_sigprocmask, "signal masks of new threads"),
    (libc::SYS_rt_sigreturn, "returning from a trap handler"),
    (
        libc::SYS_sigaltstack,
        "trap handlers run on their own stack",
    ),
    // Time and randomness (WASI clocks and random).
    (
        libc::SYS_clock_gettime,
        "clocks, when the vDSO does not answer",
    ),
    (libc::SYS_clock_nanosleep, "the epoch ticker"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_nanosleep, "the epoch ticker"),
    (libc::SYS_getrandom, "WASI random, hash seeds"),
];

/// Answered `EACCES` instead of killing: looking at files. The runtime
/// probes a few on its own (the standard library reads
/// `/proc/self/cgroup` to count CPUs, for one); there is no file to see in
/// the sandbox anyway (empty root, Landlock), so the answer is an error it
/// already handles.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const REFUSED: &[(i64, &str)] = &[
    (libc::SYS_openat, "opening a file"),
    (libc::SYS_openat2, "opening a file"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_open, "opening a file"),
    (libc::SYS_readlinkat, "reading a link"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_readlink, "reading a link"),
    (libc::SYS_statx, "a file's metadata"),
    (libc::SYS_newfstatat, "a file's metadata"),
    (libc::SYS_faccessat, "checking access to a file"),
    (libc::SYS_faccessat2, "checking access to a file"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_access, "checking access to a file"),
];

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp is not built for this architecture")]
    Unsupported,
    #[error("building the filter: {0}")]
    Build(String),
    #[error("installing the filter: {0}")]
    Install(String),
}

/// Installs the filters on every thread of the process.
pub fn install(mode: SeccompMode) -> Result<(), SeccompError> {
    let mismatch = match mode {
        SeccompMode::Off => return Ok(()),
        SeccompMode::Log => SeccompAction::Log,
        SeccompMode::Enforce => SeccompAction::KillProcess,
    };
    for program in filters(mismatch)? {
        seccompiler::apply_filter_all_threads(&program)
            .map_err(|e| SeccompError::Install(e.to_string()))?;
    }
    Ok(())
}

/// Three filters. The kernel runs every filter and the strictest answer
/// wins, so the allowlist lets through the syscalls the other two answer
/// with an error: [`REFUSED`] get `EACCES`, and `clone3` gets `ENOSYS`
/// (its flags are passed in memory, out of a filter's reach, so glibc is
/// made to fall back to `clone`, whose flags are checked).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn filters(mismatch: SeccompAction) -> Result<[BpfProgram; 3], SeccompError> {
    let build = |e: seccompiler::BackendError| SeccompError::Build(e.to_string());
    let arch = if cfg!(target_arch = "x86_64") {
        TargetArch::x86_64
    } else {
        TargetArch::aarch64
    };
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        ALLOWED.iter().map(|(nr, _)| (*nr, Vec::new())).collect();
    // Allowed only for one value of one argument.
    let mut only = |nr: i64, arg: u8, op: SeccompCmpOp, value: u64| -> Result<(), SeccompError> {
        let condition =
            SeccompCondition::new(arg, SeccompCmpArgLen::Qword, op, value).map_err(build)?;
        rules.insert(nr, vec![SeccompRule::new(vec![condition]).map_err(build)?]);
        Ok(())
    };
    let thread = libc::CLONE_THREAD as u64;
    // clone: threads only (CLONE_THREAD set); a new process never.
    only(libc::SYS_clone, 0, SeccompCmpOp::MaskedEq(thread), thread)?;
    // socketpair: a connected pair of Unix sockets, for WASI's runtime to
    // wake itself; it reaches nothing outside the process.
    only(
        libc::SYS_socketpair,
        0,
        SeccompCmpOp::Eq,
        libc::AF_UNIX as u64,
    )?;
    // prctl: naming new threads, nothing else (not dumpable again, ...).
    only(
        libc::SYS_prctl,
        0,
        SeccompCmpOp::Eq,
        libc::PR_SET_NAME as u64,
    )?;
    // tgkill: a thread of this process only (a panicking thread aborts the
    // worker with it); never another process.
    only(
        libc::SYS_tgkill,
        0,
        SeccompCmpOp::Eq,
        u64::from(std::process::id()),
    )?;
    rules.insert(libc::SYS_clone3, Vec::new());
    rules.extend(REFUSED.iter().map(|(nr, _)| (*nr, Vec::new())));
    let allowlist = SeccompFilter::new(rules, mismatch, SeccompAction::Allow, arch)
        .and_then(TryInto::try_into)
        .map_err(build)?;
    let no_clone3 = SeccompFilter::new(
        [(libc::SYS_clone3, Vec::new())].into(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .and_then(TryInto::try_into)
    .map_err(build)?;
    let no_files = SeccompFilter::new(
        REFUSED.iter().map(|(nr, _)| (*nr, Vec::new())).collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EACCES as u32),
        arch,
    )
    .and_then(TryInto::try_into)
    .map_err(build)?;
    // The allowlist last: installing a filter is itself a syscall the
    // filters before must allow, and the allowlist does not allow it.
    Ok([no_clone3, no_files, allowlist])
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn filters(_: SeccompAction) -> Result<[BpfProgram; 3], SeccompError> {
    Err(SeccompError::Unsupported)
}
