//! Confinement of the worker process, applied before any plugin byte is read.
//!
//! Each step is one function returning `Result<(), SandboxError>`, so
//! [`enter`] reads as the list of steps in their order. The order matters:
//! fds are closed before anything else can use them, and the parent-death
//! signal is set before the parent check (or the parent could die between
//! the two unnoticed).

use std::os::fd::RawFd;

use nix::sys::signal::Signal;
use prx_ipc::{LayerReport, LayerStatus, SandboxReport};

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
}

/// Applies every step; returns what was applied, for the handshake.
pub fn enter(keep_fd: RawFd, supervisor_pid: Option<i32>) -> Result<SandboxReport, SandboxError> {
    let mut report = SandboxReport::default();
    close_other_fds(keep_fd)?;
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

trait Record {
    fn applied(&mut self, layer: &str);
}

impl Record for SandboxReport {
    fn applied(&mut self, layer: &str) {
        self.layers.push(LayerReport {
            layer: layer.into(),
            status: LayerStatus::Applied,
        });
    }
}

/// Closes every descriptor above stderr except the link. stdin, stdout and
/// stderr are /dev/null when the supervisor starts us.
fn close_other_fds(keep: RawFd) -> Result<(), SandboxError> {
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
    let keep = keep as u32;
    close(3, keep.saturating_sub(1))?;
    close(keep + 1, u32::MAX)
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
