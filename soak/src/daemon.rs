//! The supervisor under test, as the operator runs it: a `prx up` child
//! process on one config and state directory, started again after each
//! `kill -9`, stopped with SIGTERM at the end; its API reached over the
//! Unix socket, its resources read from /proc.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use prx_supervisor::PluginStatus;
use prx_supervisor::api::client;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The first start compiles every plugin (a Python one takes 10 s or more
/// on a small machine); later starts come from the compile cache.
const READY_WITHIN: Duration = Duration::from_secs(300);

pub struct Daemon {
    pub prx: PathBuf,
    pub worker: PathBuf,
    pub config: PathBuf,
    pub socket: PathBuf,
    /// Where every incarnation's log goes, one after the other.
    pub log: PathBuf,
    child: Mutex<Option<Child>>,
}

/// Why an API request failed.
#[derive(Debug, Clone)]
pub enum ApiError {
    /// The supervisor could not be reached, or the connection broke.
    Down(String),
    /// It answered with an error: its `kind` and message.
    Refused { kind: String, message: String },
}

impl Daemon {
    pub fn new(prx: PathBuf, worker: PathBuf, config: PathBuf, state: &Path) -> Self {
        Self {
            prx,
            worker,
            config,
            socket: state.join("prx.sock"),
            log: state.with_file_name("prx.log"),
            child: Mutex::new(None),
        }
    }

    /// Starts `prx up` and waits for its readiness line; returns its pid.
    pub async fn start(&self) -> Result<u32> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let mut child = Command::new(&self.prx)
            .arg("up")
            .arg("--config")
            .arg(&self.config)
            .env("PRX_WORKER_BIN", &self.worker)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.prx.display()))?;
        let pid = child.id().context("prx exited at once")?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let ready = tokio::time::timeout(READY_WITHIN, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("prx: ready") {
                    return true;
                }
            }
            false
        })
        .await;
        if ready != Ok(true) {
            let _ = child.start_kill();
            bail!(
                "prx up did not say it was ready within {READY_WITHIN:?}; see {}",
                self.log.display()
            );
        }
        // It says little more; keep reading so it never blocks on a pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        *self.child.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
        Ok(pid)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(Child::id)
    }

    fn take(&self) -> Option<Child> {
        self.child.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// `kill -9` of the supervisor; returns once it is gone.
    pub async fn kill9(&self) -> Result<()> {
        let mut child = self.take().context("no supervisor running")?;
        child.start_kill()?;
        child.wait().await?;
        Ok(())
    }

    /// SIGTERM, then waits for the supervisor to drain and exit.
    pub async fn stop(&self) -> Result<()> {
        let mut child = self.take().context("no supervisor running")?;
        if let Some(pid) = child.id() {
            kill(Pid::from_raw(pid as i32), Signal::SIGTERM)?;
        }
        match tokio::time::timeout(Duration::from_secs(60), child.wait()).await {
            Ok(status) => {
                let status = status?;
                if !status.success() {
                    bail!("prx up ended with {status} after SIGTERM");
                }
                Ok(())
            }
            Err(_) => {
                child.start_kill()?;
                bail!("prx up did not stop within 60 s of SIGTERM")
            }
        }
    }

    /// One API request; the body of a 2xx answer as JSON.
    pub async fn api(
        &self,
        method: &str,
        uri: &str,
        body: Option<String>,
    ) -> Result<serde_json::Value, ApiError> {
        let answer = client::request(&self.socket, method, uri, body)
            .await
            .map_err(|e| ApiError::Down(e.to_string()))?;
        let json: serde_json::Value = serde_json::from_str(&answer.body).unwrap_or_default();
        if (200..300).contains(&answer.status) {
            return Ok(json);
        }
        Err(ApiError::Refused {
            kind: json["kind"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("http_{}", answer.status)),
            message: json["error"].as_str().unwrap_or(&answer.body).to_owned(),
        })
    }

    /// Every plugin's status, or none while the supervisor is down.
    pub async fn plugins(&self) -> Vec<PluginStatus> {
        match self.api("GET", "/v1/plugins", None).await {
            Ok(list) => serde_json::from_value(list).unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }
}

/// What a process holds: descriptors, threads, resident memory.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub fds: usize,
    pub threads: usize,
    pub rss_kib: u64,
}

pub fn usage(pid: u32) -> Option<Usage> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some(Usage {
        fds,
        threads: field("Threads:")? as usize,
        rss_kib: field("VmRSS:")?,
    })
}

/// Processes running `binary` (by /proc/PID/exe), other than `except`.
pub fn processes_of(binary: &Path, except: Option<u32>) -> Vec<u32> {
    let Ok(binary) = binary.canonicalize() else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if Some(pid) == except {
            continue;
        }
        let Ok(exe) = std::fs::read_link(entry.path().join("exe")) else {
            continue;
        };
        let exe = exe.to_string_lossy();
        if exe.trim_end_matches(" (deleted)") == binary.to_string_lossy() {
            found.push(pid);
        }
    }
    found
}

/// Supervisor cgroup directories (`prx-*`) under this process's own
/// cgroups: what a supervisor leaves behind if it does not clean up.
pub fn cgroups_left() -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut left = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let mount = match controllers {
            "" => PathBuf::from("/sys/fs/cgroup"),
            c if c.split(',').any(|c| c == "memory" || c == "pids") => {
                Path::new("/sys/fs/cgroup").join(c)
            }
            _ => continue,
        };
        let dir = mount.join(path.trim_start_matches('/'));
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with("prx-") && entry.path().is_dir() {
                left.push(entry.path());
            }
        }
    }
    left
}
