//! Python rows (`prx-bench python <plugins dir> <prx-worker>`): the
//! hello-py and forecast examples, as `scripts/build-plugins.sh` leaves
//! them in target/plugins, measured beside the same components run
//! in-process on wasmtime.
//!
//! - compile: Cranelift on the Python component, in-process, once: what
//!   the first load of a Python plugin costs;
//! - spawn to ready from the compile cache: a sandboxed worker, and the
//!   in-process equivalent (map the artifact file, link, instantiate);
//! - forecast RPC: answers computed by the model (a new input each call)
//!   and answers from the host cache, through a worker; the computed one
//!   in-process too.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use prx_ipc::{Call, HostCall, HostReply, HostValue, LogLevel};
use prx_supervisor::manifest::Manifest;
use prx_supervisor::{Supervisor, SupervisorConfig};
use prx_worker::runtime::{self, HostBackend, Plugin};

use crate::{Subject, worker_spawn_to_ready};

/// The in-process host of both examples: the forecast module's config, RPC
/// registration and a cache that never hits (every call computes); every
/// other call (hello-py makes none while it instantiates) answers unit.
struct PythonHost;

impl HostBackend for PythonHost {
    fn call(&self, call: HostCall) -> HostReply {
        HostReply::Ok(match call {
            HostCall::ConfigGetAll => HostValue::Pairs(vec![
                ("paths".into(), "1000".into()),
                ("window".into(), "250".into()),
            ]),
            HostCall::CacheGet { .. } => HostValue::OptBytes(None),
            _ => HostValue::Unit,
        })
    }
    fn log(&self, _level: LogLevel, _message: String) {}
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    (samples[samples.len() / 2], samples[0])
}

fn load(dir: &Path) -> Result<(Manifest, Vec<u8>)> {
    let manifest = Manifest::load(&dir.join("plugin.toml"))
        .map_err(|e| anyhow::anyhow!("{e}; build the examples first: scripts/build-plugins.sh"))?;
    let wasm = std::fs::read(manifest.wasm_path(dir))?;
    Ok((manifest, wasm))
}

fn closes(root: &Path) -> Result<Vec<f64>> {
    let csv = root.join("plugins/examples/forecast/data/ibm-monthly.csv");
    std::fs::read_to_string(&csv)
        .with_context(|| format!("reading {}", csv.display()))?
        .lines()
        .skip(1)
        .map(|l| Ok(l.split(',').nth(1).context("a close")?.parse()?))
        .collect()
}

/// The RPC payload of call `i`: IBM's closes with the last one nudged, so
/// every `i` is a new input for the cache.
fn payload(closes: &[f64], i: usize) -> String {
    let mut closes = closes.to_vec();
    if let Some(last) = closes.last_mut() {
        *last += i as f64 * 0.01;
    }
    serde_json::json!({"closes": closes, "horizon": 12}).to_string()
}

pub fn run(plugins: &Path, worker: &Path, root: &Path) -> Result<()> {
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (hello, hello_wasm) = load(&plugins.join("hello-py"))?;
    let (limits, engine_settings) = prx_supervisor::plugin::limits_of(&hello.resources);

    // In-process: compile once, then deserialize + instantiate per round.
    let engine = runtime::build_engine(&engine_settings).map_err(|e| anyhow::anyhow!("{e}"))?;
    let t = Instant::now();
    let component = runtime::compile(&engine, &hello_wasm).map_err(|e| anyhow::anyhow!("{e}"))?;
    let compile = t.elapsed();
    let artifact = component.serialize().map_err(|e| anyhow::anyhow!("{e}"))?;
    // The baseline maps the artifact from a file, as wasmtime's own
    // `deserialize_file` does (no copy); a copying `deserialize` of the
    // bytes is measured beside it.
    let artifact_dir = tempfile::tempdir()?;
    let artifact_file = artifact_dir.path().join("hello-py.cwasm");
    std::fs::write(&artifact_file, &artifact)?;
    let (mut in_process, mut mapping, mut copying) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..21 {
        let t = Instant::now();
        // SAFETY: serialized just above by this engine; the file is not
        // changed while the component lives.
        let component =
            unsafe { wasmtime::component::Component::deserialize_file(&engine, &artifact_file) }
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        mapping.push(t.elapsed());
        let mut plugin = Plugin::new(&engine, &component, limits, Arc::new(PythonHost))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        plugin.instantiate().map_err(|e| anyhow::anyhow!("{e:?}"))?;
        in_process.push(t.elapsed());
        let t = Instant::now();
        // SAFETY: as above.
        std::hint::black_box(
            unsafe { runtime::deserialize(&engine, &artifact) }
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        );
        copying.push(t.elapsed());
    }
    let (local_p50, local_min) = median(in_process);
    let (mapping_p50, _) = median(mapping);
    let (copying_p50, _) = median(copying);

    let subject = Subject {
        name: "hello-py",
        wasm: &hello_wasm,
        limits,
        engine: engine_settings,
    };
    let sandbox = prx_supervisor::worker_handle::verify::SandboxPolicy::default();
    let (spawn_p50, spawn_min) = worker_spawn_to_ready(&current, &subject, worker, 21, sandbox)?;

    // The supervisor's share of a start from the cache, which the row
    // above does not include (it opens the artifact once for all rounds):
    // the key, a hash of the component, and opening the stored artifact.
    let cache_dir = tempfile::tempdir()?;
    let cache = prx_supervisor::cache::CompileCache::open(cache_dir.path().to_owned(), worker)?;
    let key = cache.key("hello-py", &hello_wasm, &engine_settings);
    cache.put(&key, &artifact)?;
    let (mut keying, mut opening) = (Vec::new(), Vec::new());
    for _ in 0..21 {
        let t = Instant::now();
        std::hint::black_box(cache.key("hello-py", &hello_wasm, &engine_settings));
        keying.push(t.elapsed());
        let t = Instant::now();
        std::hint::black_box(cache.get(&key).context("the artifact just stored")?);
        opening.push(t.elapsed());
    }
    let (key_p50, _) = median(keying);
    let (open_p50, _) = median(opening);

    // The forecast module in a supervisor (a compile cache of its own).
    let scratch = tempfile::tempdir()?;
    let dir = scratch.path().join("plugins/forecast");
    std::fs::create_dir_all(&dir)?;
    let (forecast, forecast_wasm) = load(&plugins.join("forecast"))?;
    std::fs::copy(
        plugins.join("forecast/plugin.toml"),
        dir.join("plugin.toml"),
    )?;
    std::fs::write(dir.join("plugin.wasm"), &forecast_wasm)?;
    let mut config =
        SupervisorConfig::new(scratch.path().join("plugins"), scratch.path().join("state"));
    config.worker_binary = Some(worker.to_owned());
    config.ephemeral_kv = true;
    let closes = closes(root)?;
    let (computed, cached) = current.block_on(async {
        let sup = Supervisor::start(config).await?;
        anyhow::ensure!(
            sup.running() == 1,
            "forecast did not load: {:?}",
            sup.failures()
        );
        let mut computed = Vec::new();
        for i in 0..41 {
            let body = payload(&closes, i);
            let t = Instant::now();
            sup.rpc("forecast", &body).await?;
            computed.push(t.elapsed());
        }
        let mut cached = Vec::new();
        for _ in 0..401 {
            let t = Instant::now();
            sup.rpc("forecast", &payload(&closes, 0)).await?;
            cached.push(t.elapsed());
        }
        sup.shutdown().await;
        Ok((median(computed), median(cached)))
    })?;

    // The same computation in-process.
    let (limits, engine_settings) = prx_supervisor::plugin::limits_of(&forecast.resources);
    let engine = runtime::build_engine(&engine_settings).map_err(|e| anyhow::anyhow!("{e}"))?;
    let component =
        runtime::compile(&engine, &forecast_wasm).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut plugin = Plugin::new(&engine, &component, limits, Arc::new(PythonHost))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    plugin
        .invoke(&Call::ModuleOnLoad)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let mut local = Vec::new();
    for i in 0..41 {
        let call = Call::ModuleRpc {
            name: "forecast".into(),
            payload: payload(&closes, i),
        };
        let t = Instant::now();
        plugin.invoke(&call).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        local.push(t.elapsed());
    }
    let (local_rpc, _) = median(local);

    println!(
        "| Python plugin (componentize-py 0.25.1) | median | best | median ratio to in-process |"
    );
    println!("|---|---|---|---|");
    println!(
        "| compile the {:.1} MB hello-py component with Cranelift, in-process (the first load; every later load uses the compile cache) | {:.0} ms | | |",
        hello_wasm.len() as f64 / 1e6,
        ms(compile)
    );
    println!(
        "| in-process from the compiled artifact ({:.1} MB) in a file: wasmtime's `deserialize_file` (maps it, {:.2} ms), link, instantiate (baseline; a copying `deserialize` of the bytes alone takes {:.2} ms) | {:.2} ms | {:.2} ms | 1.0x |",
        artifact.len() as f64 / 1e6,
        ms(mapping_p50),
        ms(copying_p50),
        ms(local_p50),
        ms(local_min)
    );
    println!(
        "| Python worker spawn to ready from the compile cache, every sandbox layer (the worker maps the cached artifact through an inherited read-only descriptor) | {:.2} ms | {:.2} ms | {:.1}x |",
        ms(spawn_p50),
        ms(spawn_min),
        ms(spawn_p50) / ms(local_p50)
    );
    println!(
        "| before that, in the supervisor (not in the row above): the cache key, a SHA-256 of the component, {:.2} ms once per plugin version; opening the artifact {:.2} ms per start (its checksum is checked the first time each file is opened only) | | | |",
        ms(key_p50),
        ms(open_p50)
    );
    println!(
        "| forecast RPC computed (1000 paths x 12 steps on 123 IBM closes), in-process (baseline) | {:.2} ms | | 1.0x |",
        ms(local_rpc)
    );
    println!(
        "| forecast RPC computed, through the supervisor and a worker | {:.2} ms | {:.2} ms | {:.2}x |",
        ms(computed.0),
        ms(computed.1),
        ms(computed.0) / ms(local_rpc)
    );
    println!(
        "| forecast RPC answered from the host cache (same input) | {:.2} ms | {:.2} ms | {:.2}x |",
        ms(cached.0),
        ms(cached.1),
        ms(cached.0) / ms(local_rpc)
    );
    Ok(())
}
