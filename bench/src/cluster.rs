//! Calls and events across the nodes of a cluster (`prx-bench cluster
//! <guest dir> <prx-worker> <nats-server>`), side by side in one run with
//! what they cost on one node:
//!
//! - a tool call (the echo example) served on the node it is made on,
//!   and one made on a node without the tool, so a node that has it
//!   serves it over NATS; next to them, a bare NATS request and reply
//!   between two clients (the floor a hop cannot go under);
//! - events per second from a host publish to a hook plugin: on one
//!   supervisor alone, and from one node to a hook on another.
//!
//! The NATS server is started here (JetStream off: nothing here uses it),
//! on loopback. Each figure is the median of three runs.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures_util::StreamExt;
use prx_supervisor::cluster::ClusterConfig;
use prx_supervisor::{Supervisor, SupervisorConfig};

const RUNS: usize = 3;
const CALLS: usize = 400;
const EVENTS: usize = 3000;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median<T: PartialOrd + Copy>(mut samples: Vec<T>) -> T {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    samples[samples.len() / 2]
}

/// The server, killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_nats(binary: &Path) -> Result<(Server, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new(binary)
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "nats-server did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((server, format!("nats://127.0.0.1:{port}")))
}

/// A node whose plugins directory holds `plugins` (name, wasm, manifest).
async fn node(
    root: &Path,
    name: &str,
    worker: &Path,
    url: Option<&str>,
    plugins: &[(&str, &Path, String)],
) -> Result<Supervisor> {
    let dir = root.join(name);
    for (plugin, wasm, manifest) in plugins {
        let at = dir.join("plugins").join(plugin);
        std::fs::create_dir_all(&at)?;
        std::fs::write(at.join("plugin.toml"), manifest)?;
        std::fs::copy(wasm, at.join("plugin.wasm"))?;
    }
    std::fs::create_dir_all(dir.join("plugins"))?;
    let mut config = SupervisorConfig::new(dir.join("plugins"), dir.join("state"));
    config.worker_binary = Some(worker.to_owned());
    config.cache_dir = Some(root.join("cache"));
    config.ephemeral_kv = true;
    config.event_queue = EVENTS * 2;
    if let Some(url) = url {
        let mut cluster = ClusterConfig::new(url);
        cluster.node = name.into();
        cluster.heartbeat = Duration::from_millis(200);
        config.cluster = Some(cluster);
    }
    let sup = Supervisor::start(config).await?;
    anyhow::ensure!(sup.failures().is_empty(), "{:?}", sup.failures());
    Ok(sup)
}

fn echo_manifest() -> String {
    "[plugin]\nname = \"echo-tool\"\nversion = \"0.1.0\"\nwasm = \"plugin.wasm\"\n\n[[capabilities]]\ntype = \"tool\"\nname = \"echo\"\n".into()
}

fn hook_manifest() -> String {
    "[plugin]\nname = \"counter\"\nversion = \"0.1.0\"\nwasm = \"plugin.wasm\"\n\n[[capabilities]]\ntype = \"hook\"\nevents = [\"bench.*\"]\n\n[permissions]\nrequired = [\"kv\", \"events\"]\n".into()
}

/// Median latency of `CALLS` echo calls made on `sup`.
async fn calls(sup: &Supervisor) -> Result<Duration> {
    let mut samples = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let t = Instant::now();
        sup.call_tool("echo", r#"{"text":"ping"}"#).await?;
        samples.push(t.elapsed());
    }
    Ok(median(samples))
}

/// Median latency of `CALLS` bare NATS requests to a client that answers
/// each with its payload.
async fn floor(url: &str) -> Result<Duration> {
    let server = async_nats::connect(url).await?;
    let client = async_nats::connect(url).await?;
    let mut requests = server.subscribe("bench.floor").await?;
    let answering = server.clone();
    let responder = tokio::spawn(async move {
        while let Some(request) = requests.next().await {
            if let Some(reply) = request.reply {
                let _ = answering.publish(reply, request.payload).await;
            }
        }
    });
    server.flush().await?;
    // The subscription is the server's once a request finds it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(e) = client.request("bench.floor", "ping".into()).await {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the floor's responder never answered: {e}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut samples = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let t = Instant::now();
        client.request("bench.floor", "ping".into()).await?;
        samples.push(t.elapsed());
    }
    responder.abort();
    Ok(median(samples))
}

/// Events per second from a host publish on `from` until the hook on
/// `to` has handled all `EVENTS` (counted in its kv).
async fn events(from: &Supervisor, to: &Supervisor, round: usize) -> Result<f64> {
    let key = |n: usize| format!("seen:bench.r{n}");
    let t = Instant::now();
    for i in 0..EVENTS {
        from.publish(&format!("bench.r{round}"), &format!("{{\"i\":{i}}}"))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    loop {
        let seen = to
            .kv_get("counter", &key(round))
            .map_err(|e| anyhow::anyhow!(e))?
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        if seen >= EVENTS {
            break;
        }
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(120),
            "only {seen} of {EVENTS} events arrived"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(EVENTS as f64 / t.elapsed().as_secs_f64())
}

pub fn run(guests: &Path, worker: &Path, nats: &Path) -> Result<()> {
    let echo = guests.join("echo_tool.wasm");
    let relay = guests.join("relay_hook.wasm");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (_server, url) = start_nats(nats)?;
    let scratch = tempfile::tempdir()?;
    let root = scratch.path();
    let report = runtime.block_on(async {
        let tools = [("echo-tool", echo.as_path(), echo_manifest())];
        let hooks = [("counter", relay.as_path(), hook_manifest())];
        let serving = node(root, "node-a", worker, Some(&url), &tools).await?;
        let asking = node(root, "node-b", worker, Some(&url), &hooks).await?;
        let alone = node(root, "alone", worker, None, &hooks).await?;
        // node-b has seen node-a's echo (its subscriptions follow the
        // heartbeat that announces them).
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Err(e) = asking.call_tool("echo", r#"{"text":"ping"}"#).await {
            anyhow::ensure!(
                Instant::now() < deadline,
                "node-b never reached node-a's echo: {e}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (mut local, mut remote, mut nats_rtt) = (Vec::new(), Vec::new(), Vec::new());
        let (mut one, mut across) = (Vec::new(), Vec::new());
        for round in 0..RUNS {
            local.push(calls(&serving).await?);
            remote.push(calls(&asking).await?);
            nats_rtt.push(floor(&url).await?);
            one.push(events(&alone, &alone, round).await?);
            across.push(events(&serving, &asking, round + RUNS).await?);
        }
        for sup in [&serving, &asking, &alone] {
            sup.shutdown().await;
        }
        anyhow::Ok((
            median(local),
            median(remote),
            median(nats_rtt),
            median(one),
            median(across),
        ))
    })?;
    let (local, remote, nats_rtt, one, across) = report;
    println!("| what | median | ratio |");
    println!("|---|---|---|");
    println!(
        "| tool call served on the node it is made on | {:.3} ms | 1.00 |",
        ms(local)
    );
    println!(
        "| tool call made on a node without the tool, served on another | {:.3} ms | {:.2} |",
        ms(remote),
        ms(remote) / ms(local)
    );
    println!(
        "| bare NATS request and reply between two clients (the hop's floor) | {:.3} ms | {:.2} |",
        ms(nats_rtt),
        ms(nats_rtt) / ms(local)
    );
    println!(
        "| cross-node overhead: remote − local − floor | {:.3} ms | |",
        ms(remote) - ms(local) - ms(nats_rtt)
    );
    println!();
    println!("| events, host publish to a hook that counts them | events/s | ratio |");
    println!("|---|---|---|");
    println!("| one supervisor, no cluster | {one:.0} | 1.00 |");
    println!(
        "| published on one node, hook on another | {across:.0} | {:.2} |",
        across / one
    );
    Ok(())
}
