//! The seccomp allowlist: the only system calls a worker makes from before
//! it reads anything of its plugin (an artifact it maps, a component it
//! compiles) on. Anything else kills the process (`SIGSYS`), or, in
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
    // Memory: the allocator and linear memories. `mmap` and `mprotect`
    // are allowed only without PROT_EXEC (see `filters`).
    (libc::SYS_munmap, "freeing them"),
    (
        libc::SYS_mprotect,
        "making memory accessible; executable while loading only (the \
         running stage's filter refuses PROT_EXEC)",
    ),
    (
        libc::SYS_madvise,
        "resetting linear memory between instances",
    ),
    // mremap is answered ENOMEM (see `filters`): growing an executable
    // file mapping would make the file's next pages (the plugin's own
    // data) executable without a PROT_EXEC in sight. glibc's realloc falls
    // back to copying.
    (libc::SYS_mremap, "answered ENOMEM by its own filter"),
    (
        libc::SYS_pread64,
        "reading an artifact that cannot be mapped",
    ),
    (libc::SYS_brk, "the allocator's heap"),
    (
        libc::SYS_memfd_create,
        "copy-on-write images of a module's initial memory",
    ),
    (libc::SYS_ftruncate, "sizing those images"),
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

/// Answered `ENOSYS` instead of killing: `clone3` (its flags are passed in
/// memory, out of a filter's reach, so glibc is made to fall back to
/// `clone`, whose flags are checked) and `statx` (the standard library
/// then asks `fstat`, which is allowed, for a descriptor's metadata).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const NOT_HERE: &[i64] = &[libc::SYS_clone3, libc::SYS_statx];

/// Allowed only when every condition of one of the rules holds: the
/// arguments a worker needs, and no other. `(syscall, rules, why)`; a rule
/// is a list of `(argument, mask, value)`: `argument & mask == value`.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
type Rules = &'static [&'static [(u8, u64, u64)]];

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const ALL_BITS: u64 = u32::MAX as u64;

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const NEW_NAMESPACES: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u64;

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const CONDITIONAL: &[(i64, Rules, &str)] = &[
    (
        libc::SYS_mmap,
        &[&[(2, libc::PROT_EXEC as u64, 0)]],
        "allocator, linear memory reservations, the artifact's pages; never \
         executable (code becomes executable by mprotect, while loading only)",
    ),
    (
        libc::SYS_seccomp,
        &[&[(0, ALL_BITS, 1 /* SECCOMP_SET_MODE_FILTER */)]],
        "adding the running stage's filter, which forbids this again",
    ),
    (
        libc::SYS_prctl,
        &[
            &[(0, ALL_BITS, libc::PR_SET_NAME as u64)],
            &[(0, ALL_BITS, libc::PR_SET_NO_NEW_PRIVS as u64)],
        ],
        "naming new threads; no_new_privs, which installing a filter sets \
         (it can only be turned on)",
    ),
    (
        libc::SYS_fcntl,
        &[
            &[(1, ALL_BITS, libc::F_GETFD as u64)],
            &[(1, ALL_BITS, libc::F_SETFD as u64)],
            &[(1, ALL_BITS, libc::F_GETFL as u64)],
            // O_ASYNC would make the kernel signal the descriptor's owner
            // on I/O; F_SETOWN and F_SETSIG (never allowed) would choose
            // the owner and the signal: a SIGKILL for any process.
            &[
                (1, ALL_BITS, libc::F_SETFL as u64),
                (2, libc::O_ASYNC as u64, 0),
            ],
            &[(1, ALL_BITS, libc::F_DUPFD_CLOEXEC as u64)],
            &[(1, ALL_BITS, libc::F_ADD_SEALS as u64)],
            &[(1, ALL_BITS, libc::F_GET_SEALS as u64)],
        ],
        "descriptor flags, non-blocking mode and memfd seals; never an \
         owner, a signal, a lease, a lock or a directory notification",
    ),
    (
        libc::SYS_sendto,
        &[&[(4, u64::MAX, 0)]],
        "std's socket writes, on the connected link only: no address",
    ),
    (
        libc::SYS_socketpair,
        &[&[(0, ALL_BITS, libc::AF_UNIX as u64)]],
        "a connected pair of Unix sockets, for WASI's runtime to wake \
         itself; it reaches nothing outside the process",
    ),
    (
        libc::SYS_clone,
        &[&[
            (0, libc::CLONE_THREAD as u64, libc::CLONE_THREAD as u64),
            (0, NEW_NAMESPACES, 0),
        ]],
        "threads only (CLONE_THREAD set), in no new namespace; a new process \
         never",
    ),
];

/// The two stages of the filter. Both refuse everything the allowlist does
/// not name; they differ in executable memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// While the plugin's code is mapped from its artifact: `mprotect` may
    /// make memory executable, and one more filter may be installed. The
    /// artifact came from a compile worker, so parsing it is done under
    /// every other rule of the allowlist.
    Loading,
    /// From before the plugin's first instruction on (and in a compile
    /// worker throughout): no executable memory, no more filters.
    Running,
}

/// Filters the supervisor finds in `/proc/<pid>/status` once a worker is
/// confined: the loading stage's four and the running stage's one.
pub const FILTERS: u32 = 5;

/// Installs the filters of `stage` on every thread of the process. A
/// worker installs [`Stage::Loading`], then [`Stage::Running`] on top;
/// a compile worker both at once.
pub fn install(mode: SeccompMode, stage: Stage) -> Result<(), SeccompError> {
    let mismatch = match mode {
        SeccompMode::Off => return Ok(()),
        SeccompMode::Log => SeccompAction::Log,
        SeccompMode::Enforce => SeccompAction::KillProcess,
    };
    let programs = match stage {
        Stage::Loading => filters(mismatch)?.to_vec(),
        Stage::Running => vec![no_more_code(mismatch)?],
    };
    for program in programs {
        seccompiler::apply_filter_all_threads(&program)
            .map_err(|e| SeccompError::Install(e.to_string()))?;
    }
    Ok(())
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn arch() -> TargetArch {
    if cfg!(target_arch = "x86_64") {
        TargetArch::x86_64
    } else {
        TargetArch::aarch64
    }
}

/// The running stage: `mmap` or `mprotect` with `PROT_EXEC`, and any new
/// filter, are refused (`mismatch`); everything else is left to the
/// loading stage's filters below it.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn no_more_code(mismatch: SeccompAction) -> Result<BpfProgram, SeccompError> {
    let build = |e: seccompiler::BackendError| SeccompError::Build(e.to_string());
    let exec = || -> Result<Vec<SeccompRule>, SeccompError> {
        let condition = SeccompCondition::new(
            2,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::MaskedEq(libc::PROT_EXEC as u64),
            libc::PROT_EXEC as u64,
        )
        .map_err(build)?;
        Ok(vec![SeccompRule::new(vec![condition]).map_err(build)?])
    };
    let rules: BTreeMap<i64, Vec<SeccompRule>> = [
        (libc::SYS_mmap, exec()?),
        (libc::SYS_mprotect, exec()?),
        (libc::SYS_seccomp, Vec::new()),
    ]
    .into();
    SeccompFilter::new(rules, SeccompAction::Allow, mismatch, arch())
        .and_then(TryInto::try_into)
        .map_err(build)
}

/// The loading stage's four filters. The kernel runs every filter and the
/// strictest answer wins, so the allowlist lets through the syscalls the
/// other three answer with an error: [`REFUSED`] get `EACCES`,
/// [`NOT_HERE`] `ENOSYS`, and `mremap` `ENOMEM`.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn filters(mismatch: SeccompAction) -> Result<[BpfProgram; 4], SeccompError> {
    let build = |e: seccompiler::BackendError| SeccompError::Build(e.to_string());
    let arch = arch();
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        ALLOWED.iter().map(|(nr, _)| (*nr, Vec::new())).collect();
    for (nr, alternatives, _why) in CONDITIONAL {
        let mut built = Vec::new();
        for conditions in *alternatives {
            let conditions = conditions
                .iter()
                .map(|(arg, mask, value)| {
                    // Masked with all 64 bits when the mask needs them
                    // (a pointer), else the low 32 (an int argument).
                    let len = if *mask > ALL_BITS {
                        SeccompCmpArgLen::Qword
                    } else {
                        SeccompCmpArgLen::Dword
                    };
                    SeccompCondition::new(*arg, len, SeccompCmpOp::MaskedEq(*mask), *value)
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(build)?;
            built.push(SeccompRule::new(conditions).map_err(build)?);
        }
        rules.insert(*nr, built);
    }
    // tgkill: a thread of this process only (a panicking thread aborts the
    // worker with it); never another process. The pid is known only now.
    let own = SeccompCondition::new(
        0,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Eq,
        u64::from(std::process::id()),
    )
    .map_err(build)?;
    rules.insert(
        libc::SYS_tgkill,
        vec![SeccompRule::new(vec![own]).map_err(build)?],
    );
    rules.extend(NOT_HERE.iter().map(|nr| (*nr, Vec::new())));
    rules.extend(REFUSED.iter().map(|(nr, _)| (*nr, Vec::new())));
    let allowlist = SeccompFilter::new(rules, mismatch, SeccompAction::Allow, arch)
        .and_then(TryInto::try_into)
        .map_err(build)?;
    let answered = |calls: Vec<i64>, errno: i32| -> Result<BpfProgram, SeccompError> {
        SeccompFilter::new(
            calls.into_iter().map(|nr| (nr, Vec::new())).collect(),
            SeccompAction::Allow,
            SeccompAction::Errno(errno as u32),
            arch,
        )
        .and_then(TryInto::try_into)
        .map_err(build)
    };
    let not_here = answered(NOT_HERE.to_vec(), libc::ENOSYS)?;
    let no_files = answered(REFUSED.iter().map(|(nr, _)| *nr).collect(), libc::EACCES)?;
    let no_remap = answered(vec![libc::SYS_mremap], libc::ENOMEM)?;
    // The allowlist last: installing a filter is itself a syscall the
    // filters before must allow.
    Ok([not_here, no_files, no_remap, allowlist])
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn filters(_: SeccompAction) -> Result<[BpfProgram; 4], SeccompError> {
    Err(SeccompError::Unsupported)
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn no_more_code(_: SeccompAction) -> Result<BpfProgram, SeccompError> {
    Err(SeccompError::Unsupported)
}
