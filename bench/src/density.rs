//! Density: many idle echo plugins under one real `prx up`.
//!
//! For each count N, N copies of the echo tool (each its own plugin, name
//! and tool) are put in a plugins directory. `prx up` runs once to fill
//! the compile cache and is stopped; then it runs again, timed from its
//! spawn to its `prx: ready` line. The plugin list from its local API
//! gives how many run, failed or restarted. After a settling pause the
//! whole process tree (the supervisor and every worker) is left idle for
//! a window, and the CPU time it used in that window is read from each
//! thread's `schedstat` (nanoseconds on a CPU). Each worker's
//! proportional set size comes from `smaps_rollup`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use prx_supervisor::PluginStatus;
use prx_supervisor::plugin::StateKind;

/// Idle time before the window, so start-up work (first heartbeats, the
/// epoch threads' linger) is over.
const SETTLE: Duration = Duration::from_secs(10);
/// The idle window CPU is measured over.
const WINDOW: Duration = Duration::from_secs(20);
/// When the second window starts, after the ready line: by then every
/// idle worker's heartbeats are near their longest gap (60 s).
const SETTLED: Duration = Duration::from_secs(150);
/// Longest a start may take before the run is called failed.
const START_LIMIT: Duration = Duration::from_secs(900);

/// One density measurement.
pub struct Density {
    pub plugins: usize,
    pub ready: Duration,
    pub running: usize,
    pub failed: usize,
    pub restarts: u64,
    /// CPU used by the whole tree while idle, as a share of one core.
    pub idle_cpu: f64,
    /// The part of it the supervisor process used.
    pub supervisor_cpu: f64,
    /// The same for the whole tree, measured from [`SETTLED`] on.
    pub settled_cpu: f64,
    /// Proportional set size per worker: median and largest, in KiB.
    pub pss_median_kib: u64,
    pub pss_max_kib: u64,
    /// The same for the process above each worker (its PID namespace's
    /// init), median.
    pub parent_pss_median_kib: u64,
}

/// Runs the density measurement for `plugins` echo copies.
pub fn measure(prx: &Path, echo_wasm: &Path, plugins: usize) -> Result<Density> {
    let dir = tempfile::tempdir()?;
    let plugins_dir = dir.path().join("plugins");
    let state = dir.path().join("state");
    for i in 0..plugins {
        let plugin = plugins_dir.join(format!("echo-{i:04}"));
        std::fs::create_dir_all(&plugin)?;
        std::fs::write(
            plugin.join("plugin.toml"),
            format!(
                "[plugin]\nname = \"echo-{i:04}\"\nversion = \"0.1.0\"\nwasm = \"plugin.wasm\"\n\n[[capabilities]]\ntype = \"tool\"\nname = \"echo-{i:04}\"\n"
            ),
        )?;
        std::fs::copy(echo_wasm, plugin.join("plugin.wasm"))?;
    }
    // Fill the compile cache: the row is about starting, not compiling.
    let (warm, _) = Up::start(prx, &plugins_dir, &state)?;
    warm.stop()?;

    let (up, ready) = Up::start(prx, &plugins_dir, &state)?;
    let statuses = up.statuses()?;
    let running = statuses
        .iter()
        .filter(|s| s.state == StateKind::Running)
        .count();
    let failed = statuses
        .iter()
        .filter(|s| matches!(s.state, StateKind::Failed | StateKind::Quarantined))
        .count();
    let restarts: u64 = statuses.iter().map(|s| u64::from(s.restarts)).sum();
    let since_ready = Instant::now();
    std::thread::sleep(SETTLE);
    let (idle_cpu, supervisor_cpu) = idle_window(up.pid());
    std::thread::sleep(SETTLED.saturating_sub(since_ready.elapsed()));
    let (settled_cpu, _) = idle_window(up.pid());
    // A plugin's processes: the one the supervisor started (the init of
    // the worker's PID namespace, which only waits) and the worker under
    // it, which runs the plugin.
    let mut pss = Vec::new();
    let mut parents = Vec::new();
    for parent in children(up.pid()) {
        parents.extend(pss_kib(parent));
        pss.push(
            descendants(parent)
                .into_iter()
                .skip(1)
                .filter_map(pss_kib)
                .sum(),
        );
    }
    parents.sort_unstable();
    pss.sort_unstable();
    let restarts_after = up
        .statuses()?
        .iter()
        .map(|s| u64::from(s.restarts))
        .sum::<u64>();
    up.stop()?;
    Ok(Density {
        plugins,
        ready,
        running,
        failed,
        restarts: restarts.max(restarts_after),
        idle_cpu,
        supervisor_cpu,
        settled_cpu,
        pss_median_kib: pss.get(pss.len() / 2).copied().unwrap_or(0),
        pss_max_kib: pss.last().copied().unwrap_or(0),
        parent_pss_median_kib: parents.get(parents.len() / 2).copied().unwrap_or(0),
    })
}

/// A running `prx up`.
struct Up {
    child: Child,
    state: PathBuf,
}

impl Up {
    /// Spawns `prx up` and waits for its ready line; returns it with the
    /// time from spawn to that line.
    fn start(prx: &Path, plugins: &Path, state: &Path) -> Result<(Self, Duration)> {
        let started = Instant::now();
        let mut child = Command::new(prx)
            .arg("up")
            .arg("--plugins")
            .arg(plugins)
            .arg("--state")
            .arg(state)
            .env("PRX_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("spawning {}", prx.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let up = Self {
            child,
            state: state.to_owned(),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if line.starts_with("prx: ready") {
                    let _ = tx.send(started.elapsed());
                }
            }
        });
        let ready = rx
            .recv_timeout(START_LIMIT)
            .context("prx up did not print its ready line")?;
        Ok((up, ready))
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn statuses(&self) -> Result<Vec<PluginStatus>> {
        let socket = self.state.join("prx.sock");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let response = runtime.block_on(prx_supervisor::api::client::request(
            &socket,
            "GET",
            "/v1/plugins",
            None,
        ))?;
        serde_json::from_str(&response.body).context("the plugin list")
    }

    /// SIGTERM, then waits for the drain and exit.
    fn stop(mut self) -> Result<()> {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )?;
        self.child.wait()?;
        Ok(())
    }
}

/// CPU used by the tree under `pid` and by `pid` alone over [`WINDOW`],
/// as shares of one core.
fn idle_window(pid: u32) -> (f64, f64) {
    let before = (tree_cpu_ns(pid), process_cpu_ns(pid));
    let started = Instant::now();
    std::thread::sleep(WINDOW);
    let after = (tree_cpu_ns(pid), process_cpu_ns(pid));
    let window = started.elapsed().as_nanos() as f64;
    (
        after.0.saturating_sub(before.0) as f64 / window,
        after.1.saturating_sub(before.1) as f64 / window,
    )
}

/// The direct children of `pid` (the workers of a supervisor).
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// `pid` and every process under it.
fn descendants(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut next = 0;
    while next < all.len() {
        all.extend(children(all[next]));
        next += 1;
    }
    all
}

/// Nanoseconds on a CPU of every thread of `pid` and of every process
/// under it.
fn tree_cpu_ns(pid: u32) -> u64 {
    descendants(pid).into_iter().map(process_cpu_ns).sum()
}

/// Nanoseconds on a CPU of every thread of one process (the first field
/// of each thread's `schedstat`).
fn process_cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// A process's proportional set size in KiB.
fn pss_kib(pid: u32) -> Option<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    rollup
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}
