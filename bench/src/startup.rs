//! Start-up: a worker from spawn to ready (with and without the sandbox
//! layers), the supervisor from start to serving, and where a worker's
//! start-up time goes.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use prx_ipc::{EngineSettings, Limits};
use prx_supervisor::{Supervisor, SupervisorConfig};
use prx_worker::runtime::{self, Plugin};

use super::{LocalHost, echo_engine, echo_limits};

/// A component and the limits it runs under.
pub(crate) struct Subject<'a> {
    pub name: &'a str,
    pub wasm: &'a [u8],
    pub limits: Limits,
    pub engine: EngineSettings,
}

/// A new worker process from a cached artifact: spawn, handshake,
/// deserialize, link and instantiate, until it reports ready.
pub(crate) fn worker_spawn_to_ready(
    runtime: &tokio::runtime::Runtime,
    subject: &Subject,
    worker: &Path,
    rounds: usize,
    sandbox: prx_supervisor::worker_handle::verify::SandboxPolicy,
) -> Result<(Duration, Duration)> {
    use prx_supervisor::broker::PluginBroker;
    use prx_supervisor::worker_handle::{SourceKind, Worker, WorkerSpec};
    let cgroups = Arc::new(
        if sandbox
            .enabled
            .contains(&prx_supervisor::worker_handle::verify::Layer::Cgroup)
        {
            prx_supervisor::worker_handle::cgroup::Cgroups::detect(&format!(
                "prx-bench-{}",
                std::process::id()
            ))
        } else {
            prx_supervisor::worker_handle::cgroup::Cgroups::Unavailable("off".into())
        },
    );
    let result = runtime.block_on(async {
        let mut spec = WorkerSpec {
            plugin: subject.name.into(),
            binary: worker.to_owned(),
            limits: subject.limits,
            engine: subject.engine,
            component: Arc::new(subject.wasm.to_vec()),
            source: SourceKind::Wasm,
            load_timeout: Duration::from_secs(60),
            broker: Arc::new(PluginBroker::new(subject.name.into(), Vec::new())),
            liveness: prx_supervisor::worker_handle::Liveness::default(),
            extra_args: Vec::new(),
            cgroups: cgroups.clone(),
            sandbox,
        };
        let compiled = Worker::compile(&spec).await?;
        // Stored and opened as the supervisor's compile cache does.
        let dir = tempfile::tempdir()?;
        let cache = prx_supervisor::cache::CompileCache::open(dir.path().join("cache"), worker)?;
        let key = cache.key(subject.name, subject.wasm, &subject.engine);
        cache.put(&key, &compiled.bytes)?;
        let artifact = cache
            .get(&key)
            .context("the stored artifact did not read back")?;
        spec.source = SourceKind::Artifact(Arc::new(artifact));
        let mut samples = Vec::new();
        for _ in 0..rounds {
            let t = Instant::now();
            let started = Worker::start(spec.clone()).await?;
            samples.push(t.elapsed());
            started.worker.stop(Duration::from_secs(1)).await;
        }
        samples.sort();
        Ok((samples[samples.len() / 2], samples[0]))
    });
    cgroups.remove();
    result
}

/// New supervisor + worker from a warm cache, to the first answered call.
pub(super) fn spawn_to_ready(
    runtime: &tokio::runtime::Runtime,
    config: &SupervisorConfig,
    rounds: usize,
) -> Result<(Duration, Duration)> {
    let mut samples = Vec::new();
    for _ in 0..rounds {
        let took = runtime.block_on(async {
            let t = Instant::now();
            let sup = Supervisor::start(config.clone()).await?;
            let took = t.elapsed();
            anyhow::ensure!(sup.running() == 1, "echo did not load");
            sup.shutdown().await;
            Ok::<_, anyhow::Error>(took)
        })?;
        samples.push(took);
    }
    samples.sort();
    Ok((samples[samples.len() / 2], samples[0]))
}

/// Where worker start-up time goes, measured in-process.
pub(super) fn phases(wasm: &[u8]) -> Result<()> {
    let settings = echo_engine();
    let t = Instant::now();
    let engine = runtime::build_engine(&settings).map_err(|e| anyhow::anyhow!("{e}"))?;
    let t_engine = t.elapsed();
    let component = runtime::compile(&engine, wasm).map_err(|e| anyhow::anyhow!("{e}"))?;
    let artifact = component.serialize().map_err(|e| anyhow::anyhow!("{e}"))?;
    let t = Instant::now();
    // SAFETY: the artifact was serialized just above by this engine.
    let component =
        unsafe { runtime::deserialize(&engine, &artifact) }.map_err(|e| anyhow::anyhow!("{e}"))?;
    let t_deser = t.elapsed();
    let limits = echo_limits();
    let t = Instant::now();
    let mut plugin = Plugin::new(&engine, &component, limits, Arc::new(LocalHost))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let t_link = t.elapsed();
    let t = Instant::now();
    plugin.instantiate().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let t_inst = t.elapsed();
    eprintln!(
        "phases: engine {t_engine:?} deserialize {t_deser:?} link {t_link:?} instantiate {t_inst:?}"
    );
    Ok(())
}
