//! How a supervisor is started: where plugins and state live, and the
//! numbers that are the operator's to set.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Compiling a Python component takes 8-12 s on a small machine; a minute
/// leaves room for a loaded one without letting a compile bomb run forever.
pub const DEFAULT_LOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// How long past `max_execution_time_ms` the supervisor waits before it
/// kills a worker that has not answered. The worker's own epoch deadline
/// fires within 5 ms; this backstop is for a worker that is stuck or lying.
pub const DEFAULT_DEADLINE_GRACE: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// Holds one directory per plugin: `<dir>/<name>/plugin.toml`.
    pub plugins_dir: PathBuf,
    /// The supervisor's own files: compile cache, API socket.
    pub state_dir: PathBuf,
    /// The `prx-worker` binary; found next to the running executable when
    /// not set (or from `PRX_WORKER_BIN`).
    pub worker_binary: Option<PathBuf>,
    /// Where compiled artifacts are kept; `<state_dir>/cache` when not set.
    pub cache_dir: Option<PathBuf>,
    pub load_timeout: Duration,
    pub deadline_grace: Duration,
}

impl SupervisorConfig {
    pub fn new(plugins_dir: impl Into<PathBuf>, state_dir: impl Into<PathBuf>) -> Self {
        Self {
            plugins_dir: plugins_dir.into(),
            state_dir: state_dir.into(),
            worker_binary: None,
            cache_dir: None,
            load_timeout: DEFAULT_LOAD_TIMEOUT,
            deadline_grace: DEFAULT_DEADLINE_GRACE,
        }
    }

    /// The worker binary to exec.
    pub fn resolve_worker_binary(&self) -> Option<PathBuf> {
        if let Some(path) = &self.worker_binary {
            return Some(path.clone());
        }
        if let Some(path) = std::env::var_os("PRX_WORKER_BIN") {
            return Some(PathBuf::from(path));
        }
        let exe = std::env::current_exe().ok()?;
        let dir = exe.parent()?;
        // Next to `prx`, or one level up for test binaries in `deps/`.
        [Some(dir), dir.parent()]
            .into_iter()
            .flatten()
            .map(|d: &Path| d.join("prx-worker"))
            .find(|p| p.is_file())
    }

    pub fn socket_path(&self) -> PathBuf {
        self.state_dir.join("prx.sock")
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(|| self.state_dir.join("cache"))
    }
}
