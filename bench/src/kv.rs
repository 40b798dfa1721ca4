//! kv: a get as the guest sees it (in-process and through the worker and
//! the supervisor's store), and durable writes per second.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use prx_ipc::Call;
use prx_supervisor::{Supervisor, SupervisorConfig};
use prx_worker::runtime::{self, Plugin};

use super::{LocalHost, Stats, echo_engine, echo_limits, stats};

const TIME_GET: &str = r#"{"op":"time-get","key":"k","count":20000}"#;

/// kv get latency as the guest sees it: in-process, and through a worker
/// to the supervisor's redb store. Returns (p50, p99) in ns for each.
pub(super) fn kv_get_latency(
    runtime: &tokio::runtime::Runtime,
    kv_wasm: &Path,
    worker: &Path,
) -> Result<((u64, u64), (u64, u64))> {
    let bytes = std::fs::read(kv_wasm)?;
    let engine = runtime::build_engine(&echo_engine()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let ticker = runtime::start_epoch_ticker(&engine);
    let component = runtime::compile(&engine, &bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut plugin = Plugin::new(&engine, &component, echo_limits(), Arc::new(LocalHost))
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .ticking(ticker);
    let call = Call::ToolExecute {
        args: TIME_GET.into(),
    };
    let parse = |out: &str| -> Result<(u64, u64)> {
        let v: serde_json::Value = serde_json::from_str(out)?;
        Ok((
            v["p50_ns"].as_u64().unwrap_or(0),
            v["p99_ns"].as_u64().unwrap_or(0),
        ))
    };
    let local = match plugin.invoke(&call).map_err(|e| anyhow::anyhow!("{e:?}"))? {
        prx_ipc::Output::ToolResult(r) => parse(&r.output)?,
        _ => anyhow::bail!("unexpected output"),
    };
    let dir = tempfile::tempdir()?;
    let plugin_dir = dir.path().join("plugins/kv-tool");
    std::fs::create_dir_all(&plugin_dir)?;
    std::fs::write(
        plugin_dir.join("plugin.toml"),
        "[plugin]\nname = \"kv-tool\"\nversion = \"0.1.0\"\nwasm = \"plugin.wasm\"\n\n[[capabilities]]\ntype = \"tool\"\nname = \"kv\"\n\n[permissions]\nrequired = [\"kv\"]\n\n[resources]\nmax_execution_time_ms = 60000\nmax_fuel = 100_000_000_000\n",
    )?;
    std::fs::copy(kv_wasm, plugin_dir.join("plugin.wasm"))?;
    let mut config = SupervisorConfig::new(dir.path().join("plugins"), dir.path().join("state"));
    config.worker_binary = Some(worker.to_owned());
    let isolated = runtime.block_on(async {
        let sup = Supervisor::start(config).await?;
        sup.call_tool("kv", r#"{"op":"set","key":"k","value":"value"}"#)
            .await?;
        sup.call_tool("kv", TIME_GET).await?;
        let out = sup.call_tool("kv", TIME_GET).await?;
        sup.shutdown().await;
        parse(&out)
    })?;
    Ok((local, isolated))
}

/// Acknowledged durable writes with `writers` concurrent writers on the
/// supervisor's store (a file in a temporary directory): the rate, each
/// write's latency, and the slowest write (a checkpoint that stopped the
/// writes would show there).
pub(super) fn durable_writes(
    runtime: &tokio::runtime::Runtime,
    writers: usize,
    per_writer: usize,
) -> Result<(Stats, Duration)> {
    use prx_supervisor::services::kv::KvStore;
    let dir = tempfile::tempdir()?;
    let store = KvStore::open(&dir.path().join("kv.redb")).map_err(|e| anyhow::anyhow!("{e}"))?;
    runtime.block_on(async {
        let start = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..writers {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut took = Vec::with_capacity(per_writer);
                for i in 0..per_writer {
                    let key = format!("w{w}:{i}");
                    let at = Instant::now();
                    store.set("bench", &key, vec![7; 64], u64::MAX).await?;
                    took.push(at.elapsed());
                }
                Ok::<_, prx_supervisor::services::kv::KvError>(took)
            }));
        }
        let mut samples = Vec::new();
        for t in tasks {
            samples.extend(t.await?.map_err(|e| anyhow::anyhow!("{e}"))?);
        }
        let wall = start.elapsed();
        let slowest = samples.iter().copied().max().unwrap_or_default();
        Ok((stats(samples, wall), slowest))
    })
}
