//! Memory and pids limits per worker by cgroup, where the host offers
//! one. A cgroup counts everything the process uses (the runtime, the
//! compiler, the allocator, linear memory), which rlimits on address space
//! cannot.
//!
//! cgroup v2 is used when this process's v2 cgroup can have children with
//! the `memory` and `pids` controllers; otherwise the v1 `memory` and
//! `pids` hierarchies; otherwise none, and the start-up log says why. Each
//! worker gets a cgroup of its own under one made for this supervisor,
//! joined by the supervisor writing the worker's pid (before the worker is
//! sent its plugin), and removed once the worker has exited.

use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";

/// Where workers' cgroups go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroups {
    /// The v2 directory under which each worker gets one.
    V2(PathBuf),
    /// The v1 memory and pids directories.
    V1 { memory: PathBuf, pids: PathBuf },
    /// Neither is usable, and why.
    Unavailable(String),
}

/// A worker's cgroup directories; on drop, whatever still runs in them is
/// killed and they are removed. The process the supervisor started has
/// exited by then, but the one that ran the plugin (its child, in a PID
/// namespace) may not have: it dies with its parent, a moment later, and
/// a child that lost its parent-death signal would not die at all.
#[derive(Debug)]
pub struct WorkerCgroup {
    dirs: Vec<PathBuf>,
}

impl Drop for WorkerCgroup {
    fn drop(&mut self) {
        let busy: Vec<PathBuf> = self
            .dirs
            .drain(..)
            .filter(|dir| !kill_and_try_remove(dir))
            .collect();
        if busy.is_empty() {
            return;
        }
        // What was killed takes a moment to be gone. The wait must not
        // hold an async runtime's thread (a current-thread runtime would
        // stall every task behind it), so it goes to the blocking pool
        // when there is a runtime.
        let wait = move || busy.iter().for_each(|dir| remove_when_empty(dir));
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(wait)),
            Err(_) => wait(),
        }
    }
}

/// Kills every process in the cgroup `dir` (`cgroup.kill` where the kernel
/// has it, else each pid of `cgroup.procs`) and tries to remove it; false
/// while something is still in it.
fn kill_and_try_remove(dir: &Path) -> bool {
    if std::fs::write(dir.join("cgroup.kill"), "1").is_err() {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    !is_busy(std::fs::remove_dir(dir))
}

/// True when a removal failed because something is still in the cgroup.
fn is_busy(removed: std::io::Result<()>) -> bool {
    matches!(removed, Err(e) if e.raw_os_error() == Some(nix::libc::EBUSY))
}

/// Removes `dir` once the processes killed in it are gone, waiting up to
/// 100 ms (blocking).
fn remove_when_empty(dir: &Path) {
    for _ in 0..50 {
        std::thread::sleep(std::time::Duration::from_millis(2));
        if !is_busy(std::fs::remove_dir(dir)) {
            return;
        }
    }
}

impl WorkerCgroup {
    /// True when the kernel killed a process of this cgroup for going over
    /// its memory limit.
    pub fn oom_killed(&self) -> bool {
        self.dirs.iter().any(|dir| {
            ["memory.events", "memory.oom_control"].iter().any(|file| {
                std::fs::read_to_string(dir.join(file))
                    .unwrap_or_default()
                    .lines()
                    .any(|l| l.strip_prefix("oom_kill ").is_some_and(|n| n.trim() != "0"))
            })
        })
    }
}

/// This process's cgroup path in the hierarchy `controller` (v1), or in
/// the unified one (`None`).
fn own_path(controller: Option<&str>) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = match controller {
            None => controllers.is_empty(),
            Some(c) => controllers.split(',').any(|x| x == c),
        };
        matches.then(|| path.trim_start_matches('/').to_owned())
    })
}

/// Removes what supervisors that died without shutting down left under
/// `parent`: `prx-<pid>-<n>` directories whose process is gone, and their
/// worker directories, killing any worker still in one.
fn remove_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("prx-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Ok(children) = std::fs::read_dir(entry.path()) {
            for child in children.flatten().filter(|c| c.path().is_dir()) {
                if !kill_and_try_remove(&child.path()) {
                    remove_when_empty(&child.path());
                }
            }
        }
        let _ = std::fs::remove_dir(entry.path());
    }
}

fn make_dir(dir: &Path) -> Result<(), String> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("{}: {e}", dir.display())),
    }
}

impl Cgroups {
    /// Finds a usable hierarchy and makes this supervisor's directory in
    /// it (`name`, e.g. `prx-<pid>`).
    pub fn detect(name: &str) -> Self {
        let v2 = Self::try_v2(name);
        if let Ok(cgroups) = v2 {
            return cgroups;
        }
        match Self::try_v1(name) {
            Ok(cgroups) => cgroups,
            Err(v1) => Self::Unavailable(format!(
                "cgroup v2: {}; cgroup v1: {v1}",
                v2.err().unwrap_or_default()
            )),
        }
    }

    fn try_v2(name: &str) -> Result<Self, String> {
        let mount = [Path::new(ROOT), &Path::new(ROOT).join("unified")]
            .into_iter()
            .find(|m| m.join("cgroup.controllers").is_file())
            .map(Path::to_path_buf)
            .ok_or("no unified hierarchy mounted")?;
        let own = mount.join(own_path(None).ok_or("not in a v2 cgroup")?);
        let available = std::fs::read_to_string(own.join("cgroup.controllers"))
            .map_err(|e| format!("{}: {e}", own.display()))?;
        let has = |c: &str| available.split_whitespace().any(|x| x == c);
        if !has("memory") || !has("pids") {
            return Err(format!(
                "the memory and pids controllers are not enabled for {} (it has: {})",
                own.display(),
                available.trim()
            ));
        }
        // A v2 cgroup with processes cannot enable controllers for
        // children; ours is made empty, and the workers go beneath it.
        remove_stale(&own);
        let base = own.join(name);
        make_dir(&base)?;
        std::fs::write(base.join("cgroup.subtree_control"), "+memory +pids")
            .map_err(|e| format!("enabling memory and pids under {}: {e}", base.display()))?;
        Ok(Self::V2(base))
    }

    fn try_v1(name: &str) -> Result<Self, String> {
        let dir = |controller: &str| -> Result<PathBuf, String> {
            let mount = Path::new(ROOT).join(controller);
            if !mount.join("cgroup.procs").is_file() {
                return Err(format!("no {controller} hierarchy mounted"));
            }
            let own = mount.join(own_path(Some(controller)).unwrap_or_default());
            remove_stale(&own);
            let base = own.join(name);
            make_dir(&base)?;
            Ok(base)
        };
        Ok(Self::V1 {
            memory: dir("memory")?,
            pids: dir("pids")?,
        })
    }

    /// A short description for the start-up log.
    pub fn describe(&self) -> String {
        match self {
            Self::V2(dir) => format!("cgroup v2 under {}", dir.display()),
            Self::V1 { memory, pids } => format!(
                "cgroup v1 under {} and {}",
                memory.display(),
                pids.display()
            ),
            Self::Unavailable(why) => format!("no cgroup ({why})"),
        }
    }

    /// Puts worker `pid` of `plugin` in a cgroup of its own, limited to
    /// `memory` bytes and `pids` tasks (threads included).
    pub fn place(
        &self,
        plugin: &str,
        pid: u32,
        memory: u64,
        pids: u64,
    ) -> Result<WorkerCgroup, String> {
        let leaf = format!("{plugin}-{pid}");
        let write = |dir: &Path, file: &str, value: String| {
            std::fs::write(dir.join(file), &value)
                .map_err(|e| format!("{}/{file} = {value}: {e}", dir.display()))
        };
        match self {
            Self::Unavailable(why) => Err(why.clone()),
            Self::V2(base) => {
                let dir = base.join(&leaf);
                make_dir(&dir)?;
                let cgroup = WorkerCgroup {
                    dirs: vec![dir.clone()],
                };
                write(&dir, "memory.max", memory.to_string())?;
                write(&dir, "memory.swap.max", "0".into()).ok();
                write(&dir, "pids.max", pids.to_string())?;
                write(&dir, "cgroup.procs", pid.to_string())?;
                Ok(cgroup)
            }
            Self::V1 {
                memory: memory_base,
                pids: pids_base,
            } => {
                let (mem_dir, pids_dir) = (memory_base.join(&leaf), pids_base.join(&leaf));
                make_dir(&mem_dir)?;
                make_dir(&pids_dir)?;
                let cgroup = WorkerCgroup {
                    dirs: vec![mem_dir.clone(), pids_dir.clone()],
                };
                write(&mem_dir, "memory.limit_in_bytes", memory.to_string())?;
                // With swap accounting, memory plus swap too.
                if mem_dir.join("memory.memsw.limit_in_bytes").exists() {
                    write(&mem_dir, "memory.memsw.limit_in_bytes", memory.to_string())?;
                }
                write(&pids_dir, "pids.max", pids.to_string())?;
                write(&mem_dir, "cgroup.procs", pid.to_string())?;
                write(&pids_dir, "cgroup.procs", pid.to_string())?;
                Ok(cgroup)
            }
        }
    }

    /// Removes this supervisor's directories once every worker's has gone
    /// (a worker's may still be waiting for its last process; blocking, at
    /// most 100 ms).
    pub fn remove(&self) {
        let dirs = match self {
            Self::V2(dir) => vec![dir.clone()],
            Self::V1 { memory, pids } => vec![memory.clone(), pids.clone()],
            Self::Unavailable(_) => vec![],
        };
        for dir in dirs {
            if is_busy(std::fs::remove_dir(&dir)) {
                remove_when_empty(&dir);
            }
        }
    }
}
