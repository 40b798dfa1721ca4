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

mod cluster;
mod density;
mod floor;
mod kv;
mod languages;
mod lifecycle;
mod python;
mod startup;
mod throughput;

use kv::{durable_writes, kv_get_latency};
use lifecycle::{crash_cycles, reload_cycles};
use startup::{Subject, phases, spawn_to_ready, worker_spawn_to_ready};
use throughput::{CLIENTS, Workload, throughput};

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
    let ticker = runtime::start_epoch_ticker(&engine);
    let component = runtime::compile(&engine, wasm).map_err(|e| anyhow::anyhow!("{e}"))?;
    let limits = echo_limits();
    let mut plugin = Plugin::new(&engine, &component, limits, Arc::new(LocalHost))
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .ticking(ticker);
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
    setup_with(wasm, worker, MANIFEST)
}

/// The echo plugin with `extra` appended to its manifest.
fn setup_with(
    wasm: &Path,
    worker: &Path,
    manifest: &str,
) -> Result<(tempfile::TempDir, SupervisorConfig)> {
    let dir = tempfile::tempdir()?;
    let plugin = dir.path().join("plugins/echo-tool");
    std::fs::create_dir_all(&plugin)?;
    std::fs::write(plugin.join("plugin.toml"), manifest)?;
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
    isolated_from(runtime, config, calls, Caller::Outside)
}

/// Where the calling loop runs.
#[derive(Clone, Copy)]
enum Caller {
    /// In `block_on`, on a thread of its own outside the runtime's workers
    /// (a program that embeds the supervisor).
    Outside,
    /// In a task on the runtime, as the `prx` daemon's API handlers call.
    Task,
}

fn isolated_from(
    runtime: &tokio::runtime::Runtime,
    config: &SupervisorConfig,
    calls: usize,
    caller: Caller,
) -> Result<Stats> {
    runtime.block_on(async {
        let sup = Supervisor::start(config.clone()).await?;
        anyhow::ensure!(
            sup.running() == 1,
            "echo did not load: {:?}",
            sup.failures()
        );
        let s = match caller {
            Caller::Outside => isolated(&sup, calls).await,
            Caller::Task => {
                let sup = sup.clone();
                tokio::spawn(async move { isolated(&sup, calls).await }).await?
            }
        };
        sup.shutdown().await;
        s
    })
}

/// The density table: one row per plugin count.
fn density_rows(wasm: &Path, prx: &Path, counts: &[String]) -> Result<()> {
    println!(
        "| idle echo plugins | `prx up` to ready | running / failed / restarts | idle CPU 10-30 s after ready, all processes (the supervisor's part), share of one core | the same from 150 s on | PSS per worker, median (largest) | PSS of the namespace parent above each worker, median |"
    );
    println!("|---|---|---|---|---|---|---|");
    for count in counts {
        let n: usize = count.parse().context("a plugin count")?;
        let d = density::measure(prx, wasm, n)?;
        println!(
            "| {} | {:.2} s | {} / {} / {} | {:.2} % ({:.2} %) | {:.2} % | {} KiB ({} KiB) | {} KiB |",
            d.plugins,
            d.ready.as_secs_f64(),
            d.running,
            d.failed,
            d.restarts,
            d.idle_cpu * 100.0,
            d.supervisor_cpu * 100.0,
            d.settled_cpu * 100.0,
            d.pss_median_kib,
            d.pss_max_kib,
            d.parent_pss_median_kib
        );
    }
    Ok(())
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
    if argv.first().map(String::as_str) == Some("languages") {
        let [_, examples, tests, worker] = &argv[..] else {
            anyhow::bail!(
                "usage: prx-bench languages <examples plugins dir> <test plugins dir> <prx-worker>"
            );
        };
        return languages::run(Path::new(examples), Path::new(tests), Path::new(worker));
    }
    if argv.first().map(String::as_str) == Some("cluster") {
        let [_, guests, worker, nats] = &argv[..] else {
            anyhow::bail!("usage: prx-bench cluster <guest wasm dir> <prx-worker> <nats-server>");
        };
        return cluster::run(Path::new(guests), Path::new(worker), Path::new(nats));
    }
    if argv.first().map(String::as_str) == Some("density") {
        let [_, wasm, prx, counts @ ..] = &argv[..] else {
            anyhow::bail!("usage: prx-bench density <echo-tool.wasm> <prx> <plugins>...");
        };
        return density_rows(Path::new(wasm), Path::new(prx), counts);
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
    let (_dir, config) = setup(&wasm, &worker)?;
    if std::env::var_os("PRX_BENCH_ONLY_CALLS").is_some() {
        // For a profiler: isolated calls and nothing else.
        let current = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let s = isolated_on(&current, &config, calls)?;
        println!("echo isolated: p50 {} p99 {}", us(s.p50), us(s.p99));
        return Ok(());
    }
    if std::env::var_os("PRX_BENCH_ONLY_WORKERS").is_some() {
        // The throughput rows alone.
        let multi = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let busy_wasm = wasm.with_file_name("faulty_tool.wasm");
        for (label, load, n) in [
            ("echo", Workload::echo(&wasm), calls),
            (
                "busy 1 ms",
                Workload::busy(&busy_wasm),
                (calls / 10).max(400),
            ),
        ] {
            let one = throughput(&multi, &load, &worker, 1, n)?;
            let two = throughput(&multi, &load, &worker, 2, n)?;
            println!(
                "{label}: workers=1 {one:.0}/s, workers=2 {two:.0}/s, {:.2}x",
                two / one
            );
        }
        return Ok(());
    }
    if std::env::var_os("PRX_BENCH_ONLY_WRITES").is_some() {
        // For a profiler: durable kv writes and nothing else.
        let multi = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        for (writers, each) in [(8, 5_000), (1, 2_000)] {
            let (s, slowest) = durable_writes(&multi, writers, each)?;
            println!(
                "durable writes, {writers} writers: {:.0}/s, p50 {} p99 {} slowest {}",
                s.per_sec,
                us(s.p50),
                us(s.p99),
                us(slowest)
            );
        }
        return Ok(());
    }
    // First, while this process has a single thread (it forks).
    use floor::Wait::{Blocking, Polling};
    let (samples, wall) = floor::socket_round_trip(calls, Polling, Polling)?;
    let floor = stats(samples, wall);
    let (samples, wall) = floor::socket_round_trip(calls, Polling, Blocking)?;
    let floor_caller_blocks = stats(samples, wall);
    let (samples, wall) = floor::socket_round_trip(calls, Blocking, Blocking)?;
    let floor_blocking = stats(samples, wall);
    let base = baseline(&bytes, calls)?;
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let multi = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // The first start compiles and fills the cache; the rounds after are warm.
    let (spawn_p50, spawn_min) = spawn_to_ready(&current, &config, 21)?;
    let sandboxed = prx_supervisor::worker_handle::verify::SandboxPolicy::default();
    let bare = prx_supervisor::worker_handle::verify::SandboxPolicy {
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
    let iso_mt_task = isolated_from(&multi, &config, calls, Caller::Task)?;
    let echo_load = Workload::echo(&wasm);
    let one_worker = throughput(&multi, &echo_load, &worker, 1, calls)?;
    let two_workers = throughput(&multi, &echo_load, &worker, 2, calls)?;
    let busy_wasm = wasm.with_file_name("faulty_tool.wasm");
    let busy_load = Workload::busy(&busy_wasm);
    let busy_calls = (calls / 10).max(400);
    let busy_one = throughput(&multi, &busy_load, &worker, 1, busy_calls)?;
    let busy_two = throughput(&multi, &busy_load, &worker, 2, busy_calls)?;
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

    println!(
        "| measurement | p50 | p99 | calls/s | p50 ratio to in-process | p50 (p99) ratio to the socket round trip |"
    );
    println!("|---|---|---|---|---|---|");
    let row = |name: &str, s: &Stats| {
        println!(
            "| {name} | {} | {} | {:.0} | {:.1}x | {:.1}x ({:.1}x) |",
            us(s.p50),
            us(s.p99),
            s.per_sec,
            s.p50.as_secs_f64() / base.p50.as_secs_f64(),
            s.p50.as_secs_f64() / floor.p50.as_secs_f64(),
            s.p99.as_secs_f64() / floor.p99.as_secs_f64(),
        );
    };
    row(
        "Unix-socket round trip between two processes, 64 bytes, both sides poll (the floor)",
        &floor,
    );
    row(
        "the same round trip, the caller blocks in read",
        &floor_caller_blocks,
    );
    row(
        "the same round trip, both sides block in read",
        &floor_blocking,
    );
    row("echo in-process (wasmtime, baseline)", &base);
    row(
        "echo isolated, current-thread runtime, no sandbox layer",
        &iso_bare,
    );
    row("echo isolated, current-thread runtime", &iso_ct);
    row(
        "echo isolated, multi-thread runtime, called from outside it (`block_on`)",
        &iso_mt,
    );
    row(
        "echo isolated, multi-thread runtime, called from a task on it (as the daemon's API)",
        &iso_mt_task,
    );
    let ns = |n: u64| format!("{:.1} µs", n as f64 / 1000.0);
    println!(
        "| kv get from inside a plugin, in-process host (map) | {} | {} | | 1.0x | |",
        ns(kv_local.0),
        ns(kv_local.1)
    );
    println!(
        "| kv get from inside a plugin: guest, worker, supervisor, redb and back | {} | {} | | {:.1}x | |",
        ns(kv_isolated.0),
        ns(kv_isolated.1),
        kv_isolated.0 as f64 / kv_local.0.max(1) as f64
    );
    println!();
    println!(
        "| {CLIENTS} clients calling one echo plugin at once (multi-thread runtime) | calls/s | ratio to one worker |"
    );
    println!("|---|---|---|");
    println!("| `workers = 1` | {one_worker:.0} | 1.0x |");
    println!(
        "| `workers = 2` | {two_workers:.0} | {:.2}x |",
        two_workers / one_worker
    );
    println!();
    println!(
        "| {CLIENTS} clients calling one tool that computes 1 ms per call | calls/s | ratio to one worker |"
    );
    println!("|---|---|---|");
    println!("| `workers = 1` | {busy_one:.0} | 1.0x |");
    println!(
        "| `workers = 2` | {busy_two:.0} | {:.2}x |",
        busy_two / busy_one
    );
    println!();
    println!(
        "| durable kv writes (acknowledged after the log's sync) | writes/s | p50 | p99 | slowest |"
    );
    println!("|---|---|---|---|---|");
    for (label, (s, slowest)) in [
        ("8 concurrent writers (group commit)", writes_8),
        ("1 writer", writes_1),
    ] {
        println!(
            "| {label} | {:.0} | {} | {} | {} |",
            s.per_sec,
            us(s.p50),
            us(s.p99),
            us(slowest)
        );
    }
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
