//! `prx`: run the supervisor and talk to it.
//!
//! `prx up` runs in the foreground and serves the local API on a Unix socket
//! in the state directory; the other commands are clients of that API.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use prx_ipc::CodeSource;
use prx_supervisor::api::{self, CallResponse, ErrorBody, client};
use prx_supervisor::config::LogFormat;
use prx_supervisor::{PluginStatus, Supervisor, SupervisorConfig};

#[derive(Debug, Parser)]
#[command(
    name = "prx",
    version,
    about = "Run untrusted PRX WebAssembly plugins, one sandboxed process each"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum KvCommand {
    /// Print the value of KEY (as text when it is UTF-8, else as hex).
    Get { plugin: String, key: String },
    /// List the keys starting with PREFIX (all keys without one).
    List {
        plugin: String,
        #[arg(default_value = "")]
        prefix: String,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Parse FILE; print the settings, or the first mistake with its line.
    Check { file: PathBuf },
}

#[derive(Debug, Subcommand)]
enum MemoryCommand {
    /// Store TEXT in the built-in memory (as the host, not a plugin).
    Store {
        text: String,
        #[arg(long, default_value = "")]
        category: String,
    },
    /// Print the memories most relevant to QUERY, best first.
    Recall {
        query: String,
        #[arg(long, default_value_t = 5)]
        limit: u32,
    },
    /// Forget the memory ID (as `store` or `recall` printed it).
    Forget { id: String },
    /// How many memories are stored, and which backend serves them.
    Count,
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// Print events as they are published (one JSON object per line),
    /// optionally only those matching PATTERN (`*`, `a.*`, `a.b`).
    Tail {
        #[arg(default_value = "*")]
        pattern: String,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
enum CronCommand {
    /// Run PLUGIN's cron job now, off schedule (refused while a run of it
    /// is going); prints its output.
    Run { plugin: String },
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the supervisor in the foreground.
    Up {
        /// A config file (see docs/prx.toml); the flags below win over it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Directory with one sub-directory per plugin (plugin.toml + wasm).
        #[arg(long, required_unless_present = "config")]
        plugins: Option<PathBuf>,
        /// The supervisor's own files (kv database, compile cache, API
        /// socket); `.prx` unless the config file says otherwise.
        #[arg(long)]
        state: Option<PathBuf>,
        /// Compiled artifacts (default: <state>/cache). Safe to share
        /// between supervisors: entries are keyed by content.
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        /// Also serve the API and the web console on this loopback address
        /// (e.g. 127.0.0.1:8780); state changes there need the API token.
        #[arg(long)]
        http: Option<String>,
        /// `human` (default) or `json` (one object per line).
        #[arg(long)]
        log_format: Option<LogFormat>,
    },
    /// Call a tool with JSON arguments and print its output.
    Call {
        tool: String,
        #[arg(default_value = "{}")]
        args: String,
        #[arg(long, default_value = ".prx")]
        state: PathBuf,
    },
    /// Per plugin: state, worker pid, restarts, last exit cause, uptime.
    Status {
        #[arg(long, default_value = ".prx")]
        state: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Read a plugin's kv store (read-only).
    Kv {
        #[command(subcommand)]
        command: KvCommand,
        #[arg(long, default_value = ".prx", global = true)]
        state: PathBuf,
    },
    /// Publish an event as the host: TOPIC (dot-separated) and a JSON
    /// payload of at most 64 KiB.
    Publish {
        topic: String,
        #[arg(default_value = "{}")]
        payload: String,
        #[arg(long, default_value = ".prx")]
        state: PathBuf,
    },
    /// The event bus: subscribers, their patterns, queued and dropped
    /// events; `prx events tail` follows events live.
    Events {
        #[command(subcommand)]
        command: Option<EventsCommand>,
        #[arg(long, default_value = ".prx", global = true)]
        state: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run the middleware chain of STAGE (inbound, outbound, llm_request,
    /// llm_response) over JSON data; prints the result.
    Middleware {
        stage: String,
        #[arg(default_value = "{}")]
        data: String,
        #[arg(long, default_value = ".prx")]
        state: PathBuf,
    },
    /// Chat with PROVIDER: MESSAGES is a JSON list of {"role", "content"}.
    Chat {
        provider: String,
        messages: String,
        #[arg(long, default_value = "")]
        model: String,
        #[arg(long, default_value_t = 0.7)]
        temperature: f64,
        #[arg(long, default_value = ".prx")]
        state: PathBuf,
    },
    /// Call the bus-module RPC NAME with a JSON payload; prints the reply.
    Rpc {
        name: String,
        #[arg(default_value = "{}")]
        payload: String,
        #[arg(long, default_value = ".prx")]
        state: PathBuf,
    },
    /// Bus modules: their RPCs, status and stats.
    Modules {
        #[arg(long, default_value = ".prx")]
        state: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Cron plugins: schedules, next fire times, last results; `prx cron
    /// run PLUGIN` runs one now.
    Cron {
        #[command(subcommand)]
        command: Option<CronCommand>,
        #[arg(long, default_value = ".prx", global = true)]
        state: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Store in, recall from, forget from or count the memory (the
    /// built-in store, or the storage plugin the config selects).
    Memory {
        #[command(subcommand)]
        command: MemoryCommand,
        #[arg(long, default_value = ".prx", global = true)]
        state: PathBuf,
    },
    /// Check a config file and print what it sets.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Apply what changed in the plugins directory now (new, changed and
    /// removed plugins), or reload one plugin from its files even if they
    /// did not change. The running version serves until the new one is
    /// healthy; a refused new version leaves it serving.
    Reload {
        plugin: Option<String>,
        #[arg(long, default_value = ".prx")]
        state: PathBuf,
    },
    /// Lift the quarantine of a plugin and start it again.
    Release {
        plugin: String,
        #[arg(long, default_value = ".prx")]
        state: PathBuf,
    },
    /// List plugins: name, version, capabilities, state, worker pid.
    Plugins {
        #[arg(long, default_value = ".prx")]
        state: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("prx: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("prx: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Up {
            config,
            plugins,
            state,
            cache_dir,
            http,
            log_format,
        } => {
            let mut config = match config {
                Some(file) => SupervisorConfig::from_file(&file, plugins, state)?,
                None => SupervisorConfig::new(
                    plugins.context("--plugins is required without --config")?,
                    state.unwrap_or_else(|| PathBuf::from(".prx")),
                ),
            };
            if cache_dir.is_some() {
                config.cache_dir = cache_dir;
            }
            if let Some(http) = http {
                config.api.http = Some(
                    prx_supervisor::config_file::parse_loopback(&http)
                        .map_err(|e| anyhow::anyhow!("--http: {e}"))?,
                );
            }
            if let Some(format) = log_format {
                config.log_format = format;
            }
            up(config).await
        }
        Command::Config {
            command: ConfigCommand::Check { file },
        } => config_check(&file),
        Command::Call { tool, args, state } => call(&tool, args, state).await,
        Command::Plugins { state, json } => list(state, json).await,
        Command::Status { state, json } => status(state, json).await,
        Command::Release { plugin, state } => release(&plugin, state).await,
        Command::Reload { plugin, state } => reload(plugin.as_deref(), state).await,
        Command::Kv { command, state } => kv(command, state).await,
        Command::Publish {
            topic,
            payload,
            state,
        } => publish(&topic, payload, state).await,
        Command::Events {
            command: None,
            state,
            json,
        } => events(state, json).await,
        Command::Events {
            command: Some(EventsCommand::Tail { pattern, count }),
            state,
            ..
        } => tail(&pattern, count, state).await,
        Command::Middleware { stage, data, state } => {
            let uri = format!("/v1/middleware/{stage}");
            post_output(&state, &uri, data).await
        }
        Command::Chat {
            provider,
            messages,
            model,
            temperature,
            state,
        } => chat(&provider, &messages, model, temperature, state).await,
        Command::Rpc {
            name,
            payload,
            state,
        } => post_output(&state, &format!("/v1/rpc/{name}"), payload).await,
        Command::Modules { state, json } => modules(state, json).await,
        Command::Cron {
            command: Some(CronCommand::Run { plugin }),
            state,
            ..
        } => post_output(&state, &format!("/v1/cron/{plugin}/run"), String::new()).await,
        Command::Cron {
            command: None,
            state,
            json,
        } => cron(state, json).await,
        Command::Memory { command, state } => memory(command, state).await,
    }
}

/// Logs to stderr: for people, or one JSON object per line (a plugin's
/// name is the `plugin` field of every line about it).
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PRX_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,wasmtime=warn,cranelift=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
    }
}

fn config_check(file: &std::path::Path) -> Result<ExitCode> {
    let config = match SupervisorConfig::from_file(file, None, None) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("prx: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let policy = |set: &std::collections::BTreeSet<prx_supervisor::manifest::Permission>| {
        set.iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("{}: ok", file.display());
    println!("plugins      {}", config.plugins_dir.display());
    println!("state        {}", config.state_dir.display());
    println!("cache        {}", config.cache_dir().display());
    match &config.permissions.default {
        Some(set) => println!("permissions  default: {}", policy(set)),
        None => println!("permissions  default: every declared permission"),
    }
    for (plugin, set) in &config.permissions.plugins {
        println!("             {plugin}: {}", policy(set));
    }
    let r = &config.restart;
    println!(
        "restart      backoff {:?} to {:?}, healthy after {:?}, quarantine after {} crashes in {:?}",
        r.backoff_initial, r.backoff_max, r.healthy_after, r.max_crashes, r.crash_window
    );
    println!(
        "liveness     ping every {:?}, timeout {:?}",
        config.liveness.interval, config.liveness.timeout
    );
    println!(
        "logs         {} lines/s per plugin, burst {}",
        config.log_rate.per_second, config.log_rate.burst
    );
    println!("events       queue {} per subscriber", config.event_queue);
    let sandbox = &config.sandbox;
    let required: Vec<&str> = sandbox.required.iter().map(|l| l.as_str()).collect();
    println!(
        "sandbox      every layer; required: {}; seccomp {}; address space {} MiB + memories",
        if required.is_empty() {
            "none".to_owned()
        } else {
            required.join(", ")
        },
        if sandbox.seccomp_log_only {
            "log-only (development)"
        } else {
            "enforced"
        },
        sandbox.address_space_base >> 20
    );
    println!(
        "kv           {}",
        if config.ephemeral_kv {
            "in memory (ephemeral)".to_owned()
        } else {
            config.kv_path().display().to_string()
        }
    );
    let caps = |c: &prx_supervisor::config::ResourceCap| {
        let keys = [
            ("max_fuel", c.max_fuel),
            ("max_memory_mb", c.max_memory_mb),
            ("max_execution_time_ms", c.max_execution_time_ms),
            ("max_http_requests", c.max_http_requests),
            ("max_kv_storage_kb", c.max_kv_storage_kb),
        ];
        let set: Vec<String> = keys
            .iter()
            .filter_map(|(k, v)| v.map(|v| format!("{k} {v}")))
            .collect();
        if set.is_empty() {
            "as the manifest asks".to_owned()
        } else {
            set.join(", ")
        }
    };
    println!(
        "resources    default: {}",
        caps(&config.resource_caps.default)
    );
    for (plugin, cap) in &config.resource_caps.plugins {
        println!("             {plugin}: {}", caps(cap));
    }
    let api = &config.api;
    println!(
        "api          socket {} (mode {:o}, no token); http {}; requests up to {} KiB",
        config.socket_path().display(),
        api.socket_mode,
        match api.http {
            Some(addr) => format!(
                "{addr} (token from {})",
                if api.token.is_some() {
                    "the config".to_owned()
                } else {
                    config.token_path().display().to_string()
                }
            ),
            None => "off".to_owned(),
        },
        api.max_request_bytes >> 10
    );
    println!(
        "log format   {}",
        match config.log_format {
            LogFormat::Human => "human",
            LogFormat::Json => "json",
        }
    );
    Ok(ExitCode::SUCCESS)
}

async fn up(config: SupervisorConfig) -> Result<ExitCode> {
    init_logging(config.log_format);
    let socket = config.socket_path();
    // The HTTP listener is bound (and its token read) before plugins
    // start, so a taken port or a bad token file fails at once.
    let http = match config.api.http {
        Some(addr) => {
            let token = api::http::load_token(&config).map_err(anyhow::Error::msg)?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} ([api] http / --http)"))?;
            Some((listener, api::http::Token::new(&token)))
        }
        None => None,
    };
    let supervisor = Supervisor::start(config)
        .await
        .context("cannot start the supervisor")?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let server = tokio::spawn(api::serve_unix(
        supervisor.clone(),
        socket.clone(),
        stopped(stop_rx.clone()),
    ));
    // Give the listener a moment to bind before announcing readiness; a
    // bind error ends the task, which is checked right after.
    tokio::task::yield_now().await;
    wait_for_socket(&socket, &server).await?;
    let http_server = http.map(|(listener, token)| {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "console and API on http://{addr}/");
            println!("prx: console at http://{addr}/");
        }
        tokio::spawn(api::http::serve(
            supervisor.clone(),
            listener,
            token,
            stopped(stop_rx.clone()),
        ))
    });
    println!("prx: ready ({} plugins)", supervisor.running());
    std::io::stdout().flush().ok();
    systemd::ready(&supervisor);
    let watchdog = systemd::watchdog(socket.clone());
    wait_for_signal().await?;
    systemd::stopping();
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    tracing::info!(
        grace_s = SHUTDOWN_GRACE.as_secs(),
        "stopping: draining calls in flight"
    );
    supervisor.shutdown_gracefully(SHUTDOWN_GRACE).await;
    let _ = stop_tx.send(true);
    let _ = server.await;
    if let Some(http_server) = http_server {
        let _ = http_server.await;
    }
    let _ = std::fs::remove_file(&socket);
    Ok(ExitCode::SUCCESS)
}

/// systemd's notify protocol, when `prx up` runs as a `Type=notify`
/// service: `READY=1` once the API answers, `WATCHDOG=1` pings while it
/// keeps answering, `STOPPING=1` on the way out. Without `NOTIFY_SOCKET`
/// all of it does nothing.
mod systemd {
    use std::path::PathBuf;
    use std::time::Duration;

    use sd_notify::NotifyState;

    fn send(states: &[NotifyState]) {
        if let Err(e) = sd_notify::notify(false, states) {
            tracing::warn!("cannot notify systemd: {e}");
        }
    }

    pub fn ready(supervisor: &prx_supervisor::Supervisor) {
        let status = format!(
            "{} of {} plugins running",
            supervisor.running(),
            supervisor.plugins().len()
        );
        send(&[NotifyState::Ready, NotifyState::Status(&status)]);
    }

    pub fn stopping() {
        send(&[
            NotifyState::Stopping,
            NotifyState::Status("draining calls in flight"),
        ]);
    }

    /// The watchdog interval systemd asked for: `WATCHDOG_USEC`, for this
    /// process when `WATCHDOG_PID` is set (as libsystemd reads them).
    fn interval() -> Option<Duration> {
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        if let Ok(pid) = std::env::var("WATCHDOG_PID")
            && pid.parse::<u32>().ok() != Some(std::process::id())
        {
            return None;
        }
        (usec > 0).then(|| Duration::from_micros(usec))
    }

    /// Pings at half the interval, each time after the local API answered
    /// a health request: a wedged daemon stops pinging and systemd
    /// restarts it.
    pub fn watchdog(socket: PathBuf) -> Option<tokio::task::JoinHandle<()>> {
        std::env::var_os("NOTIFY_SOCKET")?;
        let every = interval()? / 2;
        tracing::info!(every_ms = every.as_millis() as u64, "systemd watchdog on");
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let health =
                    prx_supervisor::api::client::request(&socket, "GET", "/v1/health", None);
                match tokio::time::timeout(every, health).await {
                    Ok(Ok(response)) if response.status == 200 => send(&[NotifyState::Watchdog]),
                    outcome => {
                        tracing::warn!(?outcome, "the local API did not answer; no watchdog ping")
                    }
                }
            }
        }))
    }
}

async fn wait_for_socket(
    socket: &std::path::Path,
    server: &tokio::task::JoinHandle<std::io::Result<()>>,
) -> Result<()> {
    for _ in 0..500 {
        if server.is_finished() {
            anyhow::bail!(
                "the local API stopped at start-up (socket {})",
                socket.display()
            );
        }
        if tokio::net::UnixStream::connect(socket).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    anyhow::bail!("the local API did not come up on {}", socket.display())
}

/// How long calls in flight may run on after SIGTERM/SIGINT.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Resolves on the first SIGTERM or SIGINT. A second one exits at once
/// (workers die with the supervisor through their parent-death signal).
async fn wait_for_signal() -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .context("installing signal handlers")?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("prx-signals".into())
        .spawn(move || {
            let mut tx = Some(tx);
            for signal in signals.forever() {
                match tx.take() {
                    Some(tx) => {
                        let _ = tx.send(signal);
                    }
                    None => {
                        eprintln!("prx: second signal; exiting now");
                        std::process::exit(130);
                    }
                }
            }
        })
        .context("starting the signal thread")?;
    let _ = rx.await;
    Ok(())
}

/// Prints an error answer of the local API; exit code 1.
fn api_error(body: String) -> ExitCode {
    let message = serde_json::from_str::<ErrorBody>(&body)
        .map(|e| e.error)
        .unwrap_or(body);
    eprintln!("prx: {message}");
    ExitCode::FAILURE
}

/// The plugin list, or `None` once it was printed as JSON.
async fn fetch_plugins(state: &std::path::Path, json: bool) -> Result<Option<Vec<PluginStatus>>> {
    let response = client::request(&socket(state), "GET", "/v1/plugins", None).await?;
    if json {
        println!("{}", response.body);
        return Ok(None);
    }
    let plugins = serde_json::from_str(&response.body)
        .with_context(|| format!("unexpected answer: {}", response.body))?;
    Ok(Some(plugins))
}

fn socket(state: &std::path::Path) -> PathBuf {
    state.join("prx.sock")
}

async fn call(tool: &str, args: String, state: PathBuf) -> Result<ExitCode> {
    post_output(&state, &format!("/v1/tools/{tool}/call"), args).await
}

/// POSTs `body` and prints the `output` of the answer.
async fn post_output(state: &std::path::Path, uri: &str, body: String) -> Result<ExitCode> {
    let response = client::request(&socket(state), "POST", uri, Some(body)).await?;
    if response.status == 200 {
        let ok: CallResponse = serde_json::from_str(&response.body)
            .with_context(|| format!("unexpected answer: {}", response.body))?;
        println!("{}", ok.output);
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(api_error(response.body))
    }
}

async fn status(state: PathBuf, json: bool) -> Result<ExitCode> {
    let Some(plugins) = fetch_plugins(&state, json).await? else {
        return Ok(ExitCode::SUCCESS);
    };
    println!(
        "{:<20} {:<24} {:>8} {:>8} {:>10} {:<10} LAST EXIT",
        "NAME", "STATE", "PID", "RESTARTS", "UPTIME", "SANDBOX"
    );
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    for p in &plugins {
        let pid = p.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        let uptime = p
            .uptime_ms
            .map(human_duration)
            .unwrap_or_else(|| "-".into());
        let state = match p.restart_at_ms {
            Some(at) => format!(
                "{} ({} left)",
                p.state,
                human_duration(at.saturating_sub(now_ms))
            ),
            None => p.state.clone(),
        };
        // Sandbox layers: the count applied (the worker's start-up steps
        // aside), details below for any that are not.
        let layers: Vec<&(String, String)> = p
            .sandbox
            .iter()
            .filter(|(layer, _)| is_layer(layer))
            .collect();
        let applied = layers.iter().filter(|(_, s)| s == "applied").count();
        let sandbox = if layers.is_empty() {
            "-".to_owned()
        } else {
            format!("{applied}/{}", layers.len())
        };
        println!(
            "{:<20} {:<24} {:>8} {:>8} {:>10} {:<10} {}",
            p.name,
            state,
            pid,
            p.restarts,
            uptime,
            sandbox,
            p.last_exit.as_deref().unwrap_or("-")
        );
    }
    for p in &plugins {
        for (layer, status) in p
            .sandbox
            .iter()
            .filter(|(l, s)| is_layer(l) && s != "applied")
        {
            println!("\n{}: sandbox layer {layer} {status}", p.name);
        }
    }
    for p in plugins
        .iter()
        .filter(|p| p.code.as_deref() == Some(CodeSource::Copied.as_str()))
    {
        println!(
            "\n{}: its cached code could not be mapped executable and was copied (is the state directory on a noexec mount?); every start pays for the copy",
            p.name
        );
    }
    for p in plugins.iter().filter(|p| p.error.is_some()) {
        println!("\n{}: {}", p.name, p.error.as_deref().unwrap_or_default());
    }
    print_reload_errors(&plugins);
    Ok(ExitCode::SUCCESS)
}

/// A newer version that was refused, under the table.
fn print_reload_errors(plugins: &[prx_supervisor::PluginStatus]) {
    for p in plugins {
        if let Some(why) = &p.reload_error {
            println!(
                "\n{}: version {} ({}) serves; the newer files were refused: {why}",
                p.name, p.version, p.digest
            );
        }
    }
}

/// A layer `prx status` counts (the worker also reports its start-up
/// steps, which always apply).
fn is_layer(name: &str) -> bool {
    prx_supervisor::worker::verify::Layer::ALL
        .iter()
        .any(|l| l.as_str() == name)
}

fn human_duration(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{}s", ms / 60_000, ms % 60_000 / 1000),
        _ => format!("{}h{}m", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

async fn kv(command: KvCommand, state: PathBuf) -> Result<ExitCode> {
    let query = |name: &str, value: &str| {
        form_urlencoded::Serializer::new(String::new())
            .append_pair(name, value)
            .finish()
    };
    let (plugin, uri) = match &command {
        KvCommand::Get { plugin, key } => (
            plugin.clone(),
            format!("/v1/kv/{plugin}/value?{}", query("key", key)),
        ),
        KvCommand::List { plugin, prefix } => (
            plugin.clone(),
            format!("/v1/kv/{plugin}/keys?{}", query("prefix", prefix)),
        ),
    };
    let response = client::request(&socket(&state), "GET", &uri, None).await?;
    if response.status != 200 {
        return Ok(api_error(response.body));
    }
    match command {
        KvCommand::Get { key, .. } => {
            let value: api::KvValue = serde_json::from_str(&response.body)?;
            if !value.found {
                eprintln!("prx: plugin `{plugin}` has no key {key:?}");
                return Ok(ExitCode::FAILURE);
            }
            println!("{}", value.text.unwrap_or(value.hex));
        }
        KvCommand::List { .. } => {
            let keys: Vec<String> = serde_json::from_str(&response.body)?;
            for key in keys {
                println!("{key}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn publish(topic: &str, payload: String, state: PathBuf) -> Result<ExitCode> {
    if let Err(e) = prx_supervisor::topics::check_topic(topic) {
        eprintln!("prx: {e}");
        return Ok(ExitCode::FAILURE);
    }
    let uri = format!("/v1/events/{topic}");
    let response = client::request(&socket(&state), "POST", &uri, Some(payload)).await?;
    if response.status != 200 {
        return Ok(api_error(response.body));
    }
    let published: api::Published = serde_json::from_str(&response.body)?;
    println!("published {topic} (event {})", published.seq);
    Ok(ExitCode::SUCCESS)
}

async fn events(state: PathBuf, json: bool) -> Result<ExitCode> {
    let response = client::request(&socket(&state), "GET", "/v1/events", None).await?;
    if response.status != 200 {
        return Ok(api_error(response.body));
    }
    if json {
        println!("{}", response.body);
        return Ok(ExitCode::SUCCESS);
    }
    let stats: api::EventStats = serde_json::from_str(&response.body)?;
    println!("{} events published", stats.published);
    if stats.too_deep > 0 {
        println!(
            "{} events reached no plugin: their causal chain hit [events] max_depth",
            stats.too_deep
        );
    }
    println!(
        "{:<20} {:>8} {:>10} {:>8} {:>10}  PATTERNS (id)",
        "SUBSCRIBER", "QUEUED", "DELIVERED", "DROPPED", "SUPPRESSED"
    );
    for s in &stats.subscribers {
        let patterns: Vec<String> = s
            .patterns
            .iter()
            .map(|(id, p)| format!("{p} ({id})"))
            .collect();
        println!(
            "{:<20} {:>8} {:>10} {:>8} {:>10}  {}",
            s.owner.to_string(),
            s.queued,
            s.delivered,
            s.dropped,
            s.suppressed,
            patterns.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn memory(command: MemoryCommand, state: PathBuf) -> Result<ExitCode> {
    let response = match &command {
        MemoryCommand::Store { text, category } => {
            let body = serde_json::to_string(&api::StoreMemory {
                text: text.clone(),
                category: category.clone(),
            })?;
            client::request(&socket(&state), "POST", "/v1/memory", Some(body)).await?
        }
        MemoryCommand::Recall { query, limit } => {
            let q = form_urlencoded::Serializer::new(String::new())
                .append_pair("query", query)
                .append_pair("limit", &limit.to_string())
                .finish();
            let uri = format!("/v1/memory?{q}");
            client::request(&socket(&state), "GET", &uri, None).await?
        }
        MemoryCommand::Forget { id } => {
            let id: String = form_urlencoded::byte_serialize(id.as_bytes()).collect();
            let uri = format!("/v1/memory/{id}");
            client::request(&socket(&state), "DELETE", &uri, None).await?
        }
        MemoryCommand::Count => {
            client::request(&socket(&state), "GET", "/v1/memory/count", None).await?
        }
    };
    if response.status != 200 {
        return Ok(api_error(response.body));
    }
    match command {
        MemoryCommand::Store { .. } => {
            let stored: api::Stored = serde_json::from_str(&response.body)?;
            println!("stored memory {}", stored.id);
        }
        MemoryCommand::Recall { .. } => {
            let found: Vec<prx_supervisor::MemoryFound> = serde_json::from_str(&response.body)?;
            for m in found {
                let by = match m.plugin.as_deref() {
                    Some(p) if p.starts_with('(') => " (stored by the host)".to_owned(),
                    Some(p) => format!(" (stored by plugin `{p}`)"),
                    None => String::new(),
                };
                println!(
                    "{:>6} {:.2} [{}] {}{by}",
                    m.id, m.importance, m.category, m.text
                );
            }
        }
        MemoryCommand::Forget { id } => {
            let answer: serde_json::Value = serde_json::from_str(&response.body)?;
            if answer["forgotten"] == true {
                println!("forgot memory {id}");
            } else {
                println!("no memory {id}");
            }
        }
        MemoryCommand::Count => {
            let answer: serde_json::Value = serde_json::from_str(&response.body)?;
            println!(
                "{} memories (backend: {})",
                answer["count"], answer["backend"]["backend"]
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn tail(pattern: &str, count: Option<u64>, state: PathBuf) -> Result<ExitCode> {
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("pattern", pattern)
        .finish();
    let uri = format!("/v1/events/stream?{q}");
    let mut seen = 0u64;
    let response = client::stream_lines(&socket(&state), &uri, |line| {
        println!("{line}");
        let _ = std::io::stdout().flush();
        seen += 1;
        count.is_none_or(|n| seen < n)
    })
    .await?;
    if response.status != 200 {
        return Ok(api_error(response.body));
    }
    Ok(ExitCode::SUCCESS)
}

async fn chat(
    provider: &str,
    messages: &str,
    model: String,
    temperature: f64,
    state: PathBuf,
) -> Result<ExitCode> {
    let messages: Vec<api::ChatMessageBody> = match serde_json::from_str(messages) {
        Ok(m) => m,
        Err(e) => {
            eprintln!(
                "prx: MESSAGES must be a JSON list of {{\"role\": ..., \"content\": ...}}: {e}"
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    let body = serde_json::to_string(&api::ChatRequest {
        messages,
        model,
        temperature,
    })?;
    let uri = format!("/v1/providers/{provider}/chat");
    let response = client::request(&socket(&state), "POST", &uri, Some(body)).await?;
    if response.status != 200 {
        return Ok(api_error(response.body));
    }
    let reply: api::ChatReply = serde_json::from_str(&response.body)
        .with_context(|| format!("unexpected answer: {}", response.body))?;
    if let Some(text) = &reply.text {
        println!("{text}");
    }
    for call in &reply.tool_calls {
        println!("tool call {}: {} {}", call.id, call.name, call.arguments);
    }
    Ok(ExitCode::SUCCESS)
}

async fn modules(state: PathBuf, json: bool) -> Result<ExitCode> {
    let response = client::request(&socket(&state), "GET", "/v1/modules", None).await?;
    if response.status != 200 {
        return Ok(api_error(response.body));
    }
    if json {
        println!("{}", response.body);
        return Ok(ExitCode::SUCCESS);
    }
    let modules: Vec<prx_supervisor::ModuleDescription> = serde_json::from_str(&response.body)?;
    for m in modules {
        let status = m.status.as_deref().unwrap_or("-");
        println!("{} ({}): {status}", m.plugin, m.state);
        println!("  rpcs: {}", m.rpcs.join(", "));
        for (name, value) in &m.stats {
            println!("  {name}: {value}");
        }
        if let Some(error) = &m.error {
            println!("  error: {error}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn cron(state: PathBuf, json: bool) -> Result<ExitCode> {
    let response = client::request(&socket(&state), "GET", "/v1/cron", None).await?;
    if response.status != 200 {
        return Ok(api_error(response.body));
    }
    if json {
        println!("{}", response.body);
        return Ok(ExitCode::SUCCESS);
    }
    let jobs: Vec<prx_supervisor::CronJob> = serde_json::from_str(&response.body)?;
    println!(
        "{:<20} {:<16} {:<26} {:>5} {:>5} {:>7}  LAST",
        "PLUGIN", "SCHEDULE", "NEXT (UTC)", "RUNS", "FAIL", "SKIPPED"
    );
    for j in jobs {
        let last = j
            .stats
            .last
            .map(|l| {
                let ok = if l.success { "ok" } else { "failed" };
                format!("{ok} in {} ms: {}", l.duration_ms, l.output)
            })
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<20} {:<16} {:<26} {:>5} {:>5} {:>7}  {last}",
            j.plugin,
            j.schedule,
            j.stats.next.as_deref().unwrap_or("-"),
            j.stats.runs,
            j.stats.failures,
            j.stats.skipped,
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn reload(plugin: Option<&str>, state: PathBuf) -> Result<ExitCode> {
    let uri = match plugin {
        Some(name) => format!("/v1/plugins/{name}/reload"),
        None => "/v1/reload".to_owned(),
    };
    let response = client::request(&socket(&state), "POST", &uri, None).await?;
    if response.status != 200 {
        return Ok(api_error(response.body));
    }
    let outcomes: Vec<prx_supervisor::ReloadOutcome> = serde_json::from_str(&response.body)?;
    if outcomes.is_empty() {
        println!("nothing changed");
    }
    let mut failed = false;
    for outcome in &outcomes {
        println!("{outcome}");
        failed |= matches!(
            outcome,
            prx_supervisor::ReloadOutcome::Refused { .. }
                | prx_supervisor::ReloadOutcome::Failed { .. }
        );
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn release(plugin: &str, state: PathBuf) -> Result<ExitCode> {
    let uri = format!("/v1/plugins/{plugin}/release");
    let response = client::request(&socket(&state), "POST", &uri, None).await?;
    if response.status == 200 {
        println!("released {plugin}");
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(api_error(response.body))
    }
}

async fn list(state: PathBuf, json: bool) -> Result<ExitCode> {
    let Some(plugins) = fetch_plugins(&state, json).await? else {
        return Ok(ExitCode::SUCCESS);
    };
    println!(
        "{:<20} {:<10} {:<28} {:<10} {:>8}",
        "NAME", "VERSION", "CAPABILITIES", "STATE", "PID"
    );
    for p in &plugins {
        let pid = p.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        println!(
            "{:<20} {:<10} {:<28} {:<10} {:>8}",
            p.name,
            p.version,
            p.capabilities.join(","),
            p.state,
            pid
        );
    }
    for p in plugins.iter().filter(|p| p.error.is_some()) {
        println!("\n{}: {}", p.name, p.error.as_deref().unwrap_or_default());
    }
    print_reload_errors(&plugins);
    Ok(ExitCode::SUCCESS)
}
