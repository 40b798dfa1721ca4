//! Several clients calling one plugin at once, with one worker and with
//! more.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use prx_supervisor::Supervisor;

use super::{ARGS, MANIFEST, setup_with};

/// Clients calling one plugin at once.
pub(super) const CLIENTS: usize = 4;

/// What the throughput rows call: a component, its manifest, and the
/// call.
pub(super) struct Workload<'a> {
    wasm: &'a Path,
    manifest: &'a str,
    tool: &'static str,
    args: &'static str,
}

impl<'a> Workload<'a> {
    pub(super) fn echo(wasm: &'a Path) -> Self {
        Self {
            wasm,
            manifest: MANIFEST,
            tool: "echo",
            args: ARGS,
        }
    }

    /// `faulty-tool` computing for a millisecond per call: the plugin
    /// whose calls more workers can run side by side.
    pub(super) fn busy(wasm: &'a Path) -> Self {
        Self {
            wasm,
            manifest: BUSY_MANIFEST,
            tool: "faulty",
            args: r#"{"mode":"wait","ms":1}"#,
        }
    }
}

const BUSY_MANIFEST: &str = "[plugin]\nname = \"busy\"\nversion = \"0.1.0\"\nwasm = \"plugin.wasm\"\n\n[[capabilities]]\ntype = \"tool\"\nname = \"faulty\"\n";

/// Calls per second from [`CLIENTS`] concurrent clients into one plugin
/// run by `workers` worker processes, on the multi-thread runtime.
pub(super) fn throughput(
    runtime: &tokio::runtime::Runtime,
    load: &Workload,
    worker: &Path,
    workers: u32,
    calls: usize,
) -> Result<f64> {
    let manifest = format!("{}\n[resources]\nworkers = {workers}\n", load.manifest);
    let (_dir, config) = setup_with(load.wasm, worker, &manifest)?;
    let (tool, args) = (load.tool, load.args);
    runtime.block_on(async {
        let sup = Supervisor::start(config).await?;
        anyhow::ensure!(
            sup.running() == 1,
            "{tool} did not load: {:?}",
            sup.failures()
        );
        let run = |n: usize| {
            let clients: Vec<_> = (0..CLIENTS)
                .map(|_| {
                    let sup = sup.clone();
                    tokio::spawn(async move {
                        for _ in 0..n / CLIENTS {
                            sup.call_tool(tool, args).await?;
                        }
                        anyhow::Ok(())
                    })
                })
                .collect();
            async move {
                for c in clients {
                    c.await??;
                }
                anyhow::Ok(())
            }
        };
        run(calls / 10).await?;
        let wall = Instant::now();
        run(calls).await?;
        let per_sec = calls as f64 / wall.elapsed().as_secs_f64();
        sup.shutdown().await;
        Ok(per_sec)
    })
}
