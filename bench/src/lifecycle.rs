//! A plugin's life: crash and restart cycles (with the supervisor's own
//! footprint before and after), and reloads of new builds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use prx_supervisor::{Supervisor, SupervisorConfig};
use prx_worker::runtime::{self, Plugin};

use super::{ARGS, LocalHost, MANIFEST, echo_engine, echo_limits};

/// Open descriptors, threads and resident memory of this process, and
/// its live children.
fn process_footprint() -> (usize, usize, u64, usize) {
    let fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let me = std::process::id().to_string();
    let children = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit(')')
                        .next()
                        .map(|r| r.split_whitespace().nth(1) == Some(me.as_str()))
                })
                .unwrap_or(false)
        })
        .count();
    (fds, field("Threads:") as usize, field("VmRSS:"), children)
}

pub(super) struct CrashStats {
    pub(super) to_serving: Vec<Duration>,
    pub(super) before: (usize, usize, u64, usize),
    pub(super) after: (usize, usize, u64, usize),
}

/// Kills the echo worker `cycles` times with SIGKILL and measures each
/// time from the kill to the first call answered by the new worker.
pub(super) fn crash_cycles(
    runtime: &tokio::runtime::Runtime,
    config: &SupervisorConfig,
    cycles: usize,
) -> Result<CrashStats> {
    let mut config = config.clone();
    // Every crash is a first crash: measure the immediate restart, and do
    // not let the test run into the quarantine it would rightly hit.
    config.restart.healthy_after = Duration::ZERO;
    config.restart.max_crashes = u32::MAX;
    runtime.block_on(async {
        let sup = Supervisor::start(config).await?;
        sup.call_tool("echo", ARGS).await?;
        // Warm up allocator pools and lazily created state first.
        let before = process_footprint();
        let mut to_serving = Vec::with_capacity(cycles);
        for _ in 0..cycles {
            let pid = sup.plugins()[0].pid.context("no worker")?;
            let t = Instant::now();
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            )?;
            loop {
                match sup.call_tool("echo", ARGS).await {
                    Ok(_) if sup.plugins()[0].pid != Some(pid) => break,
                    _ => tokio::task::yield_now().await,
                }
            }
            to_serving.push(t.elapsed());
        }
        // Let the last reaping and logging settle before measuring.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let after = process_footprint();
        sup.shutdown().await;
        to_serving.sort();
        Ok(CrashStats {
            to_serving,
            before,
            after,
        })
    })
}

/// `wasm` with a custom section naming `tag`: other bytes (a new build,
/// not in the compile cache), the same behaviour.
fn rebuilt(wasm: &[u8], tag: &str) -> Vec<u8> {
    let name = b"prx-bench-build";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    let mut out = wasm.to_vec();
    out.push(0);
    // LEB128 of the payload length (< 16384).
    let len = payload.len();
    out.extend_from_slice(&[(len as u8 & 0x7f) | 0x80, (len >> 7) as u8]);
    out.extend_from_slice(&payload);
    out
}

pub(super) struct ReloadStats {
    /// A build the supervisor never saw (compiled in the worker).
    pub(super) fresh: Vec<Duration>,
    /// A new build the running supervisor compiled from a staging
    /// directory first, as `prx-plugin install` has it do (or a rollback
    /// to a build it ran before): from the compile cache.
    pub(super) prepared: Vec<Duration>,
    /// In-process wasmtime given the same new bytes: compile and
    /// instantiate, the least a host that reloads must do.
    pub(super) in_process: Vec<Duration>,
}

/// Replaces the echo plugin's component on disk (written beside it,
/// renamed into place) `cycles` times and measures each time from the
/// rename to the first call answered by the new version.
pub(super) fn reload_cycles(
    runtime: &tokio::runtime::Runtime,
    config: &SupervisorConfig,
    wasm: &[u8],
    cycles: usize,
) -> Result<ReloadStats> {
    let mut config = config.clone();
    // The watcher alone: the poll would only add a late second chance.
    config.retry_poll = Duration::ZERO;
    let target = config.plugins_dir.join("echo-tool/plugin.wasm");
    let staged = config.plugins_dir.join("echo-tool/.plugin.wasm.new");
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let engine = runtime::build_engine(&echo_engine()).map_err(|e| anyhow::anyhow!("{e}"))?;
    runtime.block_on(async {
        let sup = Supervisor::start(config).await?;
        sup.call_tool("echo", ARGS).await?;
        let mut stats = ReloadStats {
            fresh: Vec::new(),
            prepared: Vec::new(),
            in_process: Vec::new(),
        };
        let stage = sup.config().plugins_dir.join(".echo-tool.stage");
        std::fs::create_dir_all(&stage)?;
        std::fs::write(stage.join("plugin.toml"), MANIFEST)?;
        for i in 0..cycles * 2 {
            let fresh = i % 2 == 0;
            let bytes = rebuilt(wasm, &format!("{run}-{i}"));
            if !fresh {
                std::fs::write(stage.join("plugin.wasm"), &bytes)?;
                sup.prepare_staged(&stage)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            } else {
                let t = Instant::now();
                let component =
                    runtime::compile(&engine, &bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
                Plugin::new(&engine, &component, echo_limits(), Arc::new(LocalHost))
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                stats.in_process.push(t.elapsed());
            }
            let before = sup.plugins()[0].reloads;
            std::fs::write(&staged, &bytes)?;
            let t = Instant::now();
            std::fs::rename(&staged, &target)?;
            loop {
                let answered = sup.call_tool("echo", ARGS).await.is_ok();
                if answered && sup.plugins()[0].reloads > before {
                    break;
                }
                anyhow::ensure!(
                    t.elapsed() < Duration::from_secs(30),
                    "the new version never served: {:?}",
                    sup.plugins()[0]
                );
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            let took = t.elapsed();
            if fresh {
                stats.fresh.push(took);
            } else {
                stats.prepared.push(took);
            }
        }
        sup.shutdown().await;
        for v in [&mut stats.fresh, &mut stats.prepared, &mut stats.in_process] {
            v.sort();
        }
        Ok(stats)
    })
}
