//! `prx up`: the daemon. Starts the supervisor, its local and HTTP API,
//! tells systemd when it is ready, and drains calls on SIGTERM or SIGINT.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use prx_supervisor::api::{self};
use prx_supervisor::config::LogFormat;
use prx_supervisor::{Supervisor, SupervisorConfig};

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

/// Raises this process's soft limit on open files to its hard limit. The
/// supervisor holds a few descriptors per worker (its link, its exit
/// watch), so a thousand plugins need more than the 1,024 many systems
/// start a service with; the hard limit is the operator's word on how far
/// that may go.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!(soft, hard, "cannot raise the open files limit: {e}");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot read the open files limit: {e}"),
    }
}

/// Large buffers (a Python plugin's 19 MB component, read at every load
/// and reload) get pages of their own, given back when freed. glibc
/// otherwise raises its threshold for that after the first such buffer is
/// freed, and serves the next ones from its heap, which it keeps: the
/// supervisor's memory then climbs by tens of megabytes over a few hot
/// reloads and stays there (the chaos soak measured 56 -> 113 MiB in two
/// minutes). A fixed threshold turns that climb off.
fn give_large_buffers_back() {
    // SAFETY: mallopt only sets a parameter of glibc's allocator, under
    // the allocator's own lock; no memory is touched.
    let set = unsafe { nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, 1 << 20) };
    if set != 1 {
        tracing::warn!(
            "cannot set the allocator's mmap threshold; memory may stay high after reloads"
        );
    }
}

pub(super) async fn up(config: SupervisorConfig) -> Result<ExitCode> {
    init_logging(config.log_format);
    give_large_buffers_back();
    raise_open_files_limit();
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
