//! `prx-soak`: the chaos soak (scripts/soak.sh runs it). One supervisor,
//! the example plugins, clients calling all the time, faults landing at
//! random; then the faults stop, the plugins must all come back, every
//! acknowledged kv write must be read back after a last `kill -9`, and the
//! final stop must leave no process and no cgroup behind. Prints its
//! verdicts; exits 1 if any fails.

mod daemon;
mod faults;
mod load;
mod verdict;
mod weighted;
mod world;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use prx_supervisor::plugin::StateKind;

use daemon::{Daemon, Usage, cgroups_left, processes_of, usage};
use faults::{Findings, Injector};
use load::{Record, lock};
use verdict::Report;

#[derive(Parser)]
#[command(about = "A chaos soak of the supervisor and the example plugins")]
struct Args {
    /// How long faults land, in minutes (healing and checks come after).
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// The fault generator's seed (printed; give it again to replay the
    /// same sequence of faults).
    #[arg(long)]
    seed: Option<u64>,
    /// Clients calling at once.
    #[arg(long, default_value_t = 3)]
    clients: usize,
    /// Where the run lives (emptied first): plugins, state, config, log.
    #[arg(long, default_value = "target/soak/run")]
    root: PathBuf,
    #[arg(long, default_value = "target/plugins")]
    examples: PathBuf,
    #[arg(long, default_value = "target/test-plugins")]
    testing: PathBuf,
    /// The compile cache, kept between runs.
    #[arg(long, default_value = "target/soak/cache")]
    cache: PathBuf,
    #[arg(long, default_value = "target/debug/prx")]
    prx: PathBuf,
    #[arg(long, default_value = "target/debug/prx-worker")]
    worker: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(soak(args)) {
        Ok(report) => {
            for line in &report.lines {
                println!("{line}");
            }
            if report.failed {
                println!("soak: FAILED");
                ExitCode::FAILURE
            } else {
                println!("soak: passed");
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("soak: could not run: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn soak(args: Args) -> Result<Report> {
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
    println!("soak: seed {seed} (replay the same faults with --seed {seed})");
    let web = world::serve_web().await?;
    let cache = std::path::absolute(&args.cache)?;
    std::fs::create_dir_all(&cache)?;
    let root = std::path::absolute(&args.root)?;
    let world = world::prepare(&root, &args.examples, &args.testing, &cache, web)?;
    let daemon = Arc::new(Daemon::new(
        std::path::absolute(&args.prx)?,
        std::path::absolute(&args.worker)?,
        world.config.clone(),
        &world.state,
    ));
    let first = daemon.start().await.context("the first start")?;
    let findings = Arc::new(Findings::default());
    lock(&findings.incarnations).push((first, Instant::now()));
    println!(
        "soak: supervisor {first} ready with {} plugins; {} clients; faults for {} min",
        world.plugins.len(),
        args.clients,
        args.minutes
    );

    let began = Instant::now();
    let record = Arc::new(Record::default());
    let stop_load = Arc::new(AtomicBool::new(false));
    let mut clients = tokio::task::JoinSet::new();
    for id in 0..args.clients {
        clients.spawn(load::client(
            id,
            daemon.clone(),
            seed ^ (id as u64 + 1),
            stop_load.clone(),
            record.clone(),
        ));
    }
    let samples = Arc::new(std::sync::Mutex::new(Vec::<(u32, Instant, Usage)>::new()));
    let sampler = tokio::spawn(sample(daemon.clone(), samples.clone()));

    // Faults, with the supervisor killed a few times over the run.
    let fault_time = Duration::from_secs_f64(args.minutes * 60.0);
    let kills = supervisor_kills(seed, fault_time, args.minutes);
    let injector = Arc::new(Injector {
        daemon: daemon.clone(),
        plugins: world.plugins,
        findings: findings.clone(),
    });
    let last_fault = injector.run(seed, began + fault_time, kills).await;
    if let Some(fatal) = lock(&findings.fatal).clone() {
        anyhow::bail!("{fatal}");
    }
    let faults_over = Instant::now();
    println!(
        "soak: faults over after {:.0} s; waiting for every plugin to serve",
        began.elapsed().as_secs_f64()
    );

    let mut report = Report::default();
    // Every plugin back, by its cool-down: the load goes on meanwhile.
    let healed = all_serving(
        &daemon,
        last_fault,
        world::COOLDOWN_MAX + Duration::from_secs(15),
    )
    .await;
    report.verdict(
        healed.is_ok(),
        "every plugin serving again after the faults",
        match &healed {
            Ok(took) => format!(
                "all running {:.1} s after the last fault was injected (longest cool-down {} s)",
                took.as_secs_f64(),
                world::COOLDOWN_MAX.as_secs()
            ),
            Err(stuck) => stuck.clone(),
        },
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop_load.store(true, Ordering::Relaxed);
    while clients.join_next().await.is_some() {}
    sampler.abort();

    let windows = lock(&findings.windows).clone();
    let outcomes = lock(&record.outcomes).clone();
    verdict::calls(&mut report, &outcomes, &windows, began);
    verdict::faults(&mut report, &windows);

    // Every acknowledged write, read back after one more kill -9.
    daemon.kill9().await?;
    daemon
        .start()
        .await
        .context("the start after the last kill -9")?;
    let ledger = lock(&record.ledger).clone();
    let missing = read_back(&daemon, &ledger).await;
    report.verdict(
        missing.is_empty(),
        "acknowledged kv writes",
        format!(
            "{} acknowledged across {} kill -9 of the supervisor (the last just before reading back), {} missing or wrong",
            ledger.len(),
            lock(&findings.incarnations).len(),
            missing.len()
        ),
    );
    for line in missing.iter().take(5) {
        report.info(line.clone());
    }

    let samples = lock(&samples).clone();
    for (pid, started) in lock(&findings.incarnations).iter() {
        let mine: Vec<(Instant, Usage)> = samples
            .iter()
            .filter(|(p, _, _)| p == pid)
            .map(|(_, at, u)| (*at, *u))
            .collect();
        verdict::resources(&mut report, *pid, &mine, *started);
    }

    let orphans = lock(&findings.orphans_after_kill).clone();
    report.verdict(
        orphans.is_empty(),
        "workers left by a killed supervisor",
        format!("{} (2 s after each kill -9)", orphans.len()),
    );
    daemon.stop().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let workers = processes_of(&daemon.worker, None);
    let supervisors = processes_of(&daemon.prx, None);
    report.verdict(
        workers.is_empty() && supervisors.is_empty(),
        "processes left after the final stop",
        format!(
            "{} workers, {} supervisors",
            workers.len(),
            supervisors.len()
        ),
    );
    let cgroups = cgroups_left();
    report.verdict(
        cgroups.is_empty(),
        "cgroups left after the final stop",
        match cgroups.first() {
            None => "0".into(),
            Some(dir) => format!("{} (first: {})", cgroups.len(), dir.display()),
        },
    );
    report.info(format!(
        "took {:.0} s (faults {:.0} s, then healing and checks); log: {}",
        began.elapsed().as_secs_f64(),
        faults_over.duration_since(began).as_secs_f64(),
        daemon.log.display()
    ));
    Ok(report)
}

/// When to kill the supervisor: about once every two and a half minutes,
/// at least once, spread over the run with some jitter.
fn supervisor_kills(seed: u64, over: Duration, minutes: f64) -> Vec<Duration> {
    let mut rng = fastrand::Rng::with_seed(seed.rotate_left(17));
    let n = ((minutes * 0.4).round() as u32).max(1);
    (0..n)
        .map(|i| over.mul_f64((f64::from(i) + 0.3 + rng.f64() * 0.4) / f64::from(n)))
        .collect()
}

/// The supervisor's descriptors, threads and memory every 2 s.
async fn sample(daemon: Arc<Daemon>, into: Arc<std::sync::Mutex<Vec<(u32, Instant, Usage)>>>) {
    loop {
        if let Some(pid) = daemon.pid()
            && let Some(u) = usage(pid)
        {
            lock(&into).push((pid, Instant::now(), u));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Waits until every plugin runs, at most `within` after `since`; how
/// long after `since` that was, or which plugins did not.
async fn all_serving(
    daemon: &Daemon,
    since: Instant,
    within: Duration,
) -> Result<Duration, String> {
    let began = since;
    loop {
        let plugins = daemon.plugins().await;
        let down: Vec<String> = plugins
            .iter()
            .filter(|p| p.state != StateKind::Running)
            .map(|p| format!("{} ({})", p.name, p.state))
            .collect();
        if !plugins.is_empty() && down.is_empty() {
            return Ok(began.elapsed());
        }
        if began.elapsed() > within {
            return Err(format!("after {within:?} still down: {}", down.join(", ")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads back every acknowledged write; lists those missing or changed.
async fn read_back(daemon: &Daemon, ledger: &[(String, String)]) -> Vec<String> {
    let mut wrong = Vec::new();
    for chunk in ledger.chunks(16) {
        let mut reads = tokio::task::JoinSet::new();
        for (key, value) in chunk {
            let (key, value) = (key.clone(), value.clone());
            let daemon = daemon.socket.clone();
            reads.spawn(async move {
                let uri = format!("/v1/kv/kv-tool/value?key={key}");
                let got = prx_supervisor::api::client::request(&daemon, "GET", &uri, None).await;
                let text = got
                    .ok()
                    .and_then(|r| serde_json::from_str::<serde_json::Value>(&r.body).ok())
                    .and_then(|v| v["text"].as_str().map(str::to_owned));
                (text.as_deref() != Some(value.as_str()))
                    .then(|| format!("{key}: acknowledged {value:?}, read {text:?}"))
            });
        }
        while let Some(result) = reads.join_next().await {
            if let Ok(Some(line)) = result {
                wrong.push(line);
            }
        }
    }
    wrong
}
