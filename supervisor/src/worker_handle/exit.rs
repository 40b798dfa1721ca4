//! How a worker ended: the exit status as a type (a seccomp kill is told
//! apart from any other signal), the wait for it, and what becomes of the
//! calls still waiting on a worker that is gone.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};

use super::calls::Waiting;
use super::{InvokeError, Worker};

/// How long a worker whose link closed has to exit before it is killed.
pub(super) const EXIT_AFTER_CLOSE: Duration = Duration::from_millis(500);

/// Owns the child: reaps it, or kills then reaps it when asked.
pub(super) async fn wait_for_exit(
    mut child: tokio::process::Child,
    kill: oneshot::Receiver<()>,
    exit: watch::Sender<Option<ExitCause>>,
    cgroup: Option<super::cgroup::WorkerCgroup>,
) {
    let status = tokio::select! {
        status = child.wait() => status,
        _ = kill => {
            let _ = child.start_kill();
            child.wait().await
        }
    };
    let mut cause = match status {
        Ok(status) => ExitCause::of(status),
        Err(e) => ExitCause {
            how: ExitHow::WaitFailed(e.to_string()),
            out_of_memory: false,
        },
    };
    cause.out_of_memory = cgroup
        .as_ref()
        .is_some_and(super::cgroup::WorkerCgroup::oom_killed);
    // The process is gone: its cgroup can be removed (on drop).
    drop(cgroup);
    let _ = exit.send(Some(cause));
}

pub(super) async fn fail_pending_on_exit(worker: Arc<Worker>) {
    let cause = worker.exited().await;
    worker.close(&cause.to_string());
}

/// How a worker process ended. Decisions match on this; its text (`signal
/// SIGKILL`, `exit code 3`) is for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitCause {
    pub how: ExitHow,
    /// Its cgroup recorded an out-of-memory kill.
    pub out_of_memory: bool,
}

impl std::fmt::Display for ExitCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.how {
            ExitHow::Code(code) => write!(f, "exit code {code}")?,
            ExitHow::Signal(signal) => match nix::sys::signal::Signal::try_from(*signal) {
                Ok(sig) => write!(f, "signal {}", sig.as_str())?,
                Err(_) => write!(f, "signal {signal}")?,
            },
            ExitHow::WaitFailed(e) => write!(f, "wait failed: {e}")?,
            ExitHow::Unknown => f.write_str("unknown exit")?,
        }
        if self.out_of_memory {
            f.write_str(" (out of memory: over its cgroup's memory limit)")?;
        }
        Ok(())
    }
}

impl ExitCause {
    pub fn of(status: std::process::ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        let how = match (status.code(), status.signal()) {
            (Some(code), _) => ExitHow::Code(code),
            (None, Some(signal)) => ExitHow::Signal(signal),
            _ => ExitHow::Unknown,
        };
        Self {
            how,
            out_of_memory: false,
        }
    }

    fn unknown() -> Self {
        Self {
            how: ExitHow::Unknown,
            out_of_memory: false,
        }
    }

    /// Killed by the seccomp filter: a forbidden system call.
    pub fn is_seccomp_kill(&self) -> bool {
        self.how == ExitHow::Signal(nix::libc::SIGSYS)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitHow {
    Code(i32),
    Signal(i32),
    WaitFailed(String),
    Unknown,
}

impl Worker {
    /// The link closed: the worker is exiting. It is given a moment to be
    /// reaped on its own, so its exit says how it died (a seccomp kill
    /// reaches the supervisor through the process it started, a moment
    /// after the link closes), and killed after that.
    pub(super) async fn reap_or_kill(&self) {
        if tokio::time::timeout(EXIT_AFTER_CLOSE, self.exited())
            .await
            .is_err()
        {
            self.kill();
        }
    }

    /// SIGKILL. The waiter task reaps the process.
    pub fn kill(&self) {
        if let Some(kill) = self.kill.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = kill.send(());
        }
    }

    /// Resolves when the process has exited and been reaped; returns how.
    pub async fn exited(&self) -> ExitCause {
        let mut exit = self.exit.clone();
        match exit.wait_for(Option::is_some).await {
            Ok(cause) => cause.clone().unwrap_or_else(ExitCause::unknown),
            Err(_) => ExitCause::unknown(),
        }
    }

    /// Fails every in-flight call and refuses new ones.
    pub(super) fn close(&self, cause: &str) {
        let calls = {
            let mut pending = self.lock_pending();
            pending.closed.get_or_insert_with(|| cause.to_owned());
            std::mem::take(&mut pending.calls)
        };
        for (_, Waiting { reply, .. }) in calls {
            let _ = reply.send(Err(InvokeError::Died(cause.to_owned())));
        }
    }
}
