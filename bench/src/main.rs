//! `prx-bench`: the numbers of docs/benchmarks.md, measured side by side
//! in one run on the same component.
//!
//! - baseline: the echo tool called in-process on wasmtime (what PRX and
//!   Extism do), through the same runtime code the worker uses, with fuel
//!   and the epoch deadline armed per call;
//! - isolated: the same call through `Supervisor::call_tool` into a worker
//!   process, on a current-thread and on a multi-thread tokio runtime;
//! - spawn to ready: a new worker, handshake to instantiated, from a warm
//!   compile cache.
//!
//! Prints a Markdown report on stdout. Usage:
//! `prx-bench <echo-tool.wasm> <prx-worker> [calls]`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod python;

use anyhow::{Context, Result};
use prx_ipc::{Call, EngineSettings, HostCall, HostReply, HostValue, Limits, LogLevel};
use prx_supervisor::{Supervisor, SupervisorConfig};
use prx_worker::runtime::{self, HostBackend, Plugin};

const ARGS: &str = r#"{"text":"hello"}"#;
const MANIFEST: &str = "[plugin]\nname = \"echo-tool\"\nversion = \"0.1.0\"\nwasm = \"plugin.wasm\"\n\n[[capabilities]]\ntype = \"tool\"\nname = \"echo\"\n";

/// Answers host calls in-process: the baseline has no supervisor. kv gets
/// are served from a map, as an in-process host would.
struct LocalHost;

impl HostBackend for LocalHost {
    fn call(&self, call: HostCall) -> HostReply {
        match call {
            HostCall::KvGet { .. } => HostReply::Ok(HostValue::OptBytes(Some(b"value".to_vec()))),
            _ => HostReply::Ok(HostValue::OptString(None)),
        }
    }
    fn log(&self, _level: LogLevel, _message: String) {}
}

/// The limits and engine settings the supervisor gives the echo manifest
/// (all defaults), so both sides of the comparison run the same way.
fn echo_limits() -> Limits {
    Limits {
        max_fuel: 100_000_000,
        max_memory_bytes: 16 << 20,
        max_execution_time_ms: 5_000,
        max_instances: 1_000,
        max_tables: 1_000,
        max_table_elements: 100_000,
    }
}

fn echo_engine() -> EngineSettings {
    EngineSettings {
        memory_reservation: 16 << 20,
        memory_guard: 64 << 10,
    }
}

struct Stats {
    p50: Duration,
    p99: Duration,
    per_sec: f64,
}

fn stats(mut samples: Vec<Duration>, wall: Duration) -> Stats {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    Stats {
        p50: at(0.50),
        p99: at(0.99),
        per_sec: samples.len() as f64 / wall.as_secs_f64(),
    }
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_nanos() as f64 / 1000.0)
}

fn baseline(wasm: &[u8], calls: usize) -> Result<Stats> {
    let settings = echo_engine();
    let engine = runtime::build_engine(&settings).map_err(|e| anyhow::anyhow!("{e}"))?;
    runtime::start_epoch_ticker(&engine);
    let component = runtime::compile(&engine, wasm).map_err(|e| anyhow::anyhow!("{e}"))?;
    let limits = echo_limits();
    let mut plugin = Plugin::new(&engine, &component, limits, Arc::new(LocalHost))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let call = Call::ToolExecute { args: ARGS.into() };
    for _ in 0..calls / 10 {
        plugin.invoke(&call).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    }
    let mut samples = Vec::with_capacity(calls);
    let wall = Instant::now();
    for _ in 0..calls {
        let t = Instant::now();
        plugin.invoke(&call).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        samples.push(t.elapsed());
    }
    Ok(stats(samples, wall.elapsed()))
}

async fn isolated(sup: &Supervisor, calls: usize) -> Result<Stats> {
    for _ in 0..calls / 10 {
        sup.call_tool("echo", ARGS).await?;
    }
    let mut samples = Vec::with_capacity(calls);
    let wall = Instant::now();
    for _ in 0..calls {
        let t = Instant::now();
        let out = sup.call_tool("echo", ARGS).await?;
        samples.push(t.elapsed());
        debug_assert_eq!(out, "hello");
    }
    Ok(stats(samples, wall.elapsed()))
}

fn setup(wasm: &Path, worker: &Path) -> Result<(tempfile::TempDir, SupervisorConfig)> {
    let dir = tempfile::tempdir()?;
    let plugin = dir.path().join("plugins/echo-tool");
    std::fs::create_dir_all(&plugin)?;
    std::fs::write(plugin.join("plugin.toml"), MANIFEST)?;
    std::fs::copy(wasm, plugin.join("plugin.wasm"))?;
    let mut config = SupervisorConfig::new(dir.path().join("plugins"), dir.path().join("state"));
    config.worker_binary = Some(worker.to_owned());
    // Supervisors are started and stopped in a loop here; kv is not what
    // these rows measure.
    config.ephemeral_kv = true;
    Ok((dir, config))
}

fn isolated_on(
    runtime: &tokio::runtime::Runtime,
    config: &SupervisorConfig,
    calls: usize,
) -> Result<Stats> {
    runtime.block_on(async {
        let sup = Supervisor::start(config.clone()).await?;
        anyhow::ensure!(
            sup.running() == 1,
            "echo did not load: {:?}",
            sup.failures()
        );
        let s = isolated(&sup, calls).await;
        sup.shutdown().await;
        s
    })
}

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
    sandbox: prx_supervisor::worker::verify::SandboxPolicy,
) -> Result<(Duration, Duration)> {
    use prx_supervisor::broker::PluginBroker;
    use prx_supervisor::worker::{SourceKind, Worker, WorkerSpec};
    let cgroups = Arc::new(
        if sandbox
            .enabled
            .contains(&prx_supervisor::worker::verify::Layer::Cgroup)
        {
            prx_supervisor::worker::cgroup::Cgroups::detect(&format!(
                "prx-bench-{}",
                std::process::id()
            ))
        } else {
            prx_supervisor::worker::cgroup::Cgroups::Unavailable("off".into())
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
            liveness: prx_supervisor::worker::Liveness::default(),
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
fn spawn_to_ready(
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
fn phases(wasm: &[u8]) -> Result<()> {
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

const TIME_GET: &str = r#"{"op":"time-get","key":"k","count":20000}"#;

/// kv get latency as the guest sees it: in-process, and through a worker
/// to the supervisor's redb store. Returns (p50, p99) in ns for each.
fn kv_get_latency(
    runtime: &tokio::runtime::Runtime,
    kv_wasm: &Path,
    worker: &Path,
) -> Result<((u64, u64), (u64, u64))> {
    let bytes = std::fs::read(kv_wasm)?;
    let engine = runtime::build_engine(&echo_engine()).map_err(|e| anyhow::anyhow!("{e}"))?;
    runtime::start_epoch_ticker(&engine);
    let component = runtime::compile(&engine, &bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut plugin = Plugin::new(&engine, &component, echo_limits(), Arc::new(LocalHost))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
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

/// Acknowledged durable writes per second with `writers` concurrent
/// writers on the supervisor's store (a file in a temporary directory).
fn durable_writes(
    runtime: &tokio::runtime::Runtime,
    writers: usize,
    per_writer: usize,
) -> Result<f64> {
    use prx_supervisor::services::kv::KvStore;
    let dir = tempfile::tempdir()?;
    let store = KvStore::open(&dir.path().join("kv.redb")).map_err(|e| anyhow::anyhow!("{e}"))?;
    runtime.block_on(async {
        let start = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..writers {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..per_writer {
                    let key = format!("w{w}:{i}");
                    store.set("bench", &key, vec![7; 64], u64::MAX).await?;
                }
                Ok::<_, prx_supervisor::services::kv::KvError>(())
            }));
        }
        for t in tasks {
            t.await?.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        Ok((writers * per_writer) as f64 / start.elapsed().as_secs_f64())
    })
}

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

struct CrashStats {
    to_serving: Vec<Duration>,
    before: (usize, usize, u64, usize),
    after: (usize, usize, u64, usize),
}

/// Kills the echo worker `cycles` times with SIGKILL and measures each
/// time from the kill to the first call answered by the new worker.
fn crash_cycles(
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

struct ReloadStats {
    /// A build the supervisor never saw (compiled in the worker).
    fresh: Vec<Duration>,
    /// A new build the running supervisor compiled from a staging
    /// directory first, as `prx-plugin install` has it do (or a rollback
    /// to a build it ran before): from the compile cache.
    prepared: Vec<Duration>,
    /// In-process wasmtime given the same new bytes: compile and
    /// instantiate, the least a host that reloads must do.
    in_process: Vec<Duration>,
}

/// Replaces the echo plugin's component on disk (written beside it,
/// renamed into place) `cycles` times and measures each time from the
/// rename to the first call answered by the new version.
fn reload_cycles(
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

fn main() -> Result<()> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some("python") {
        let [_, plugins, worker, root] = &argv[..] else {
            anyhow::bail!("usage: prx-bench python <plugins dir> <prx-worker> <repository root>");
        };
        let (plugins, worker, root) = (Path::new(plugins), Path::new(worker), Path::new(root));
        return python::run(plugins, worker, root);
    }
    let mut args = argv.into_iter();
    let wasm = PathBuf::from(
        args.next()
            .context("usage: prx-bench <echo-tool.wasm> <prx-worker> [calls]")?,
    );
    let worker = PathBuf::from(args.next().context("missing the prx-worker path")?);
    let calls: usize = args
        .next()
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(50_000);
    let bytes = std::fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))?;

    if std::env::var_os("PRX_BENCH_PHASES").is_some() {
        phases(&bytes)?;
    }
    let base = baseline(&bytes, calls)?;
    let (_dir, config) = setup(&wasm, &worker)?;
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let multi = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // The first start compiles and fills the cache; the rounds after are warm.
    let (spawn_p50, spawn_min) = spawn_to_ready(&current, &config, 21)?;
    let sandboxed = prx_supervisor::worker::verify::SandboxPolicy::default();
    let bare = prx_supervisor::worker::verify::SandboxPolicy {
        enabled: Default::default(),
        required: Default::default(),
        ..sandboxed.clone()
    };
    let echo = Subject {
        name: "echo-tool",
        wasm: &bytes,
        limits: echo_limits(),
        engine: echo_engine(),
    };
    let (bare_p50, bare_min) = worker_spawn_to_ready(&current, &echo, &worker, 41, bare.clone())?;
    let (worker_p50, worker_min) = worker_spawn_to_ready(&current, &echo, &worker, 41, sandboxed)?;
    let unsandboxed = SupervisorConfig {
        sandbox: bare.clone(),
        ..config.clone()
    };
    let iso_bare = isolated_on(&current, &unsandboxed, calls)?;
    let iso_ct = isolated_on(&current, &config, calls)?;
    let iso_mt = isolated_on(&multi, &config, calls)?;
    let kv_wasm = wasm.with_file_name("kv_tool.wasm");
    let (kv_local, kv_isolated) = kv_get_latency(&multi, &kv_wasm, &worker)?;
    let writes_8 = durable_writes(&multi, 8, 5_000)?;
    let writes_1 = durable_writes(&multi, 1, 2_000)?;
    let cycles = std::env::var("PRX_BENCH_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(100);
    let crash = crash_cycles(&multi, &config, cycles)?;
    let reload_rounds = std::env::var("PRX_BENCH_RELOADS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(20);
    let reload = reload_cycles(&multi, &config, &bytes, reload_rounds)?;

    println!("| measurement | p50 | p99 | calls/s | p50 ratio to in-process |");
    println!("|---|---|---|---|---|");
    let row = |name: &str, s: &Stats| {
        println!(
            "| {name} | {} | {} | {:.0} | {:.1}x |",
            us(s.p50),
            us(s.p99),
            s.per_sec,
            s.p50.as_secs_f64() / base.p50.as_secs_f64()
        );
    };
    row("echo in-process (wasmtime, baseline)", &base);
    row(
        "echo isolated, current-thread runtime, no sandbox layer",
        &iso_bare,
    );
    row("echo isolated, current-thread runtime", &iso_ct);
    row("echo isolated, multi-thread runtime", &iso_mt);
    let ns = |n: u64| format!("{:.1} µs", n as f64 / 1000.0);
    println!(
        "| kv get from inside a plugin, in-process host (map) | {} | {} | | 1.0x |",
        ns(kv_local.0),
        ns(kv_local.1)
    );
    println!(
        "| kv get from inside a plugin: guest, worker, supervisor, redb and back | {} | {} | | {:.1}x |",
        ns(kv_isolated.0),
        ns(kv_isolated.1),
        kv_isolated.0 as f64 / kv_local.0.max(1) as f64
    );
    println!();
    println!("| durable kv writes (acknowledged after the log's sync) | writes/s |");
    println!("|---|---|");
    println!("| 8 concurrent writers (group commit) | {writes_8:.0} |");
    println!("| 1 writer | {writes_1:.0} |");
    println!();
    println!("| measurement | median | best |");
    println!("|---|---|---|");
    println!(
        "| worker spawn to ready (exec, handshake, deserialize, instantiate), warm cache, no sandbox layer | {:.2} ms | {:.2} ms |",
        bare_p50.as_secs_f64() * 1000.0,
        bare_min.as_secs_f64() * 1000.0
    );
    println!(
        "| the same with every sandbox layer (namespaces, rlimits, capabilities, no_new_privs, landlock, seccomp, cgroup) | {:.2} ms | {:.2} ms |",
        worker_p50.as_secs_f64() * 1000.0,
        worker_min.as_secs_f64() * 1000.0
    );
    println!(
        "| supervisor start to serving: scan, manifest, cache read, worker, get-spec | {:.2} ms | {:.2} ms |",
        spawn_p50.as_secs_f64() * 1000.0,
        spawn_min.as_secs_f64() * 1000.0
    );
    let n = crash.to_serving.len();
    println!(
        "| worker killed (SIGKILL) to the plugin serving again, first restart, warm cache | {:.2} ms | {:.2} ms |",
        crash.to_serving[n / 2].as_secs_f64() * 1000.0,
        crash.to_serving[0].as_secs_f64() * 1000.0
    );
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = |v: &[Duration]| v[v.len() / 2];
    println!(
        "| plugin.wasm replaced (renamed into place) to the new version serving, a new build (compiled) | {:.2} ms | {:.2} ms |",
        ms(median(&reload.fresh)),
        ms(reload.fresh[0])
    );
    println!(
        "| the same, a new build the running supervisor compiled first (`prx-plugin install`), or a rollback | {:.2} ms | {:.2} ms |",
        ms(median(&reload.prepared)),
        ms(reload.prepared[0])
    );
    println!(
        "| in-process wasmtime: compile and instantiate the same new build | {:.2} ms | {:.2} ms |",
        ms(median(&reload.in_process)),
        ms(reload.in_process[0])
    );
    println!();
    println!(
        "Reload rows: {} builds each way. A build nobody compiled yet spends most of its time in Cranelift (the in-process row); `prx-plugin install` has the running supervisor compile a staged plugin before it is renamed into place, so the switch only waits for the watcher's {} ms debounce, a worker start from the compile cache and the health check (get-spec).",
        reload.fresh.len(),
        prx_supervisor::config::DEFAULT_RELOAD_DEBOUNCE.as_millis()
    );
    println!();
    println!(
        "Over {n} crash-restart cycles the slowest was {:.2} ms (p99 {:.2} ms). The supervisor process before and after:",
        crash.to_serving[n - 1].as_secs_f64() * 1000.0,
        crash.to_serving[n * 99 / 100].as_secs_f64() * 1000.0
    );
    println!();
    println!("| | open fds | threads | resident memory | child processes |");
    println!("|---|---|---|---|---|");
    for (label, (fds, threads, rss, children)) in
        [("before", crash.before), ("after the cycles", crash.after)]
    {
        println!("| {label} | {fds} | {threads} | {rss} KiB | {children} |");
    }
    println!();
    println!(
        "{calls} calls per row after {} warm-up calls, one client, one worker.",
        calls / 10
    );
    Ok(())
}
