//! The operator's faces of a real `prx up`: Prometheus metrics, the HTTP
//! listener's token and limits, JSON logs, systemd notification, and the
//! config file's resource caps.

use crate::common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{Daemon, Env, Launch, echo_manifest, stdout};
use prx_supervisor::api::client;

/// One HTTP/1.1 exchange over TCP: status and body. The body is written
/// from another thread, so a server that answers before reading it all
/// (413) is still heard.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let host = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("host"))
        .map_or(addr, |(_, v)| v);
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("host"))
    {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("write head");
    let mut writer = stream.try_clone().expect("clone");
    let body = body.to_vec();
    let sent = std::thread::spawn(move || {
        let _ = writer.write_all(&body);
    });
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let _ = sent.join();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn error_kind(body: &str) -> String {
    let value: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    value["kind"].as_str().unwrap_or_default().to_owned()
}

/// Reads `/metrics` over the Unix socket; checks every line is valid
/// Prometheus text on its own, then parses it with an independent parser.
async fn scrape(daemon: &Daemon) -> prometheus_parse::Scrape {
    let response = client::request(&daemon.state.join("prx.sock"), "GET", "/metrics", None)
        .await
        .expect("metrics");
    assert_eq!(response.status, 200);
    let mut typed = std::collections::HashSet::new();
    for line in response.body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(typed.insert(name.to_owned()), "two TYPE lines for {name}");
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line:?}"));
        let name = series.split('{').next().unwrap_or_default();
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert!(typed.contains(family), "{name} has no TYPE line before it");
        assert!(
            value == "+Inf" || value.parse::<f64>().is_ok(),
            "bad value in {line:?}"
        );
    }
    prometheus_parse::Scrape::parse(response.body.lines().map(|l| Ok(l.to_owned())))
        .expect("parses")
}

fn value(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(buckets) => {
                buckets.iter().map(|b| b.count).fold(0.0, f64::max)
            }
            prometheus_parse::Value::Summary(_) => f64::NAN,
        })
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_move_with_calls() {
    let env = Env::new();
    env.add("echo", "echo-tool", &echo_manifest());
    env.add_example("visit-counter");
    let daemon = Daemon::start(&env);
    let before = scrape(&daemon).await;
    let calls = |s: &prometheus_parse::Scrape| {
        value(
            s,
            "prx_plugin_calls_total",
            &[("plugin", "echo-tool"), ("call", "tool")],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(calls(&before), 0.0, "get-spec at load is not a call");
    assert_eq!(
        value(
            &before,
            "prx_plugin_state",
            &[("plugin", "echo-tool"), ("state", "running")]
        ),
        Some(1.0)
    );

    for text in ["a", "b", "c"] {
        let out = daemon.cli(&["call", "echo", &format!("{{\"text\":\"{text}\"}}")]);
        assert!(out.status.success(), "{out:?}");
    }
    let refused = daemon.cli(&["call", "echo", "{}"]);
    assert!(!refused.status.success());
    let out = daemon.cli(&["call", "visit", "{\"name\":\"ada\"}"]);
    assert!(out.status.success(), "{out:?}");

    let after = scrape(&daemon).await;
    assert_eq!(calls(&after), 4.0);
    assert_eq!(
        value(
            &after,
            "prx_plugin_errors_total",
            &[("plugin", "echo-tool"), ("kind", "refused")]
        ),
        Some(1.0),
        "the call without text is the plugin's own error"
    );
    let histogram = after
        .samples
        .iter()
        .find(|s| {
            s.metric == "prx_plugin_call_duration_seconds"
                && s.labels.get("plugin") == Some("echo-tool")
        })
        .expect("latency histogram");
    let prometheus_parse::Value::Histogram(buckets) = &histogram.value else {
        panic!("not a histogram: {histogram:?}");
    };
    assert!(
        buckets.windows(2).all(|w| w[0].count <= w[1].count),
        "{buckets:?}"
    );
    assert_eq!(
        buckets.last().map(|b| (b.less_than, b.count)),
        Some((f64::INFINITY, 4.0))
    );
    let fuel = |s: &prometheus_parse::Scrape| {
        value(
            s,
            "prx_plugin_fuel_consumed_total",
            &[("plugin", "echo-tool")],
        )
        .unwrap_or(0.0)
    };
    assert!(fuel(&after) > fuel(&before), "fuel moved: {}", fuel(&after));
    assert!(
        value(
            &after,
            "prx_plugin_kv_bytes",
            &[("plugin", "visit-counter")]
        )
        .unwrap_or(0.0)
            > 0.0,
        "visit-counter keeps a count in kv"
    );
    assert!(
        value(
            &after,
            "prx_plugin_worker_resident_bytes",
            &[("plugin", "echo-tool")]
        )
        .unwrap_or(0.0)
            > 1e6
    );
    assert!(value(&after, "process_resident_memory_bytes", &[]).unwrap_or(0.0) > 1e6);
    assert!(value(&after, "process_start_time_seconds", &[]).unwrap_or(0.0) > 1.6e9);

    // A crash counts as a restart.
    let restarts = |s: &prometheus_parse::Scrape| {
        value(s, "prx_plugin_restarts_total", &[("plugin", "echo-tool")]).unwrap_or(0.0)
    };
    assert_eq!(restarts(&after), 0.0);
    kill_worker(&daemon, "echo-tool").await;
    common::eventually("a restart in /metrics", async || {
        (restarts(&scrape(&daemon).await) == 1.0).then_some(())
    })
    .await;
}

/// The pid of a plugin's worker, from the status API.
async fn worker_pid(daemon: &Daemon, plugin: &str) -> Option<u32> {
    let response = client::request(&daemon.state.join("prx.sock"), "GET", "/v1/plugins", None)
        .await
        .ok()?;
    let plugins: Vec<serde_json::Value> = serde_json::from_str(&response.body).ok()?;
    let p = plugins.iter().find(|p| p["name"] == plugin)?;
    (p["state"] == "running")
        .then(|| p["pid"].as_u64())
        .flatten()
        .map(|p| p as u32)
}

/// `kill -9` of a plugin's worker, as a crash from outside; returns
/// once another worker serves it.
async fn kill_worker(daemon: &Daemon, plugin: &str) {
    let pid = worker_pid(daemon, plugin).await.expect("a running worker");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9");
    common::eventually("a new worker", async || {
        worker_pid(daemon, plugin).await.filter(|new| *new != pid)
    })
    .await;
}

#[tokio::test]
async fn the_http_listener_asks_for_the_token_and_refuses_oversized_and_foreign_requests() {
    let env = Env::new();
    env.add("echo", "echo-tool", &echo_manifest());
    let daemon = Daemon::start_with(&env, &["--http", "127.0.0.1:0"]);
    let addr = daemon.http_addr();
    let token_file = env.state().join("api-token");
    let mode = std::fs::metadata(&token_file)
        .expect("token file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the token file is the owner's only");
    let token = std::fs::read_to_string(&token_file)
        .expect("token")
        .trim()
        .to_owned();
    assert_eq!(token.len(), 64);
    let bearer = format!("Bearer {token}");
    let args = br#"{"text":"hi"}"#;

    // Reads the console needs are open.
    let (status, body) = http(&addr, "GET", "/v1/plugins", &[], b"");
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(&addr, "GET", "/", &[], b"");
    assert_eq!(status, 200);
    assert!(body.contains("/console/app.js"));

    // A call without the token, or with a wrong one, is refused and not made.
    for headers in [
        vec![],
        vec![("Authorization", "Bearer not-the-token")],
        vec![("Authorization", token.as_str())],
    ] {
        let (status, body) = http(&addr, "POST", "/v1/tools/echo/call", &headers, args);
        assert_eq!(status, 401, "{headers:?}: {body}");
        assert_eq!(error_kind(&body), "unauthorized");
        assert!(body.contains("Authorization: Bearer"), "{body}");
    }
    for (method, path) in [
        ("POST", "/v1/plugins/echo-tool/release"),
        ("POST", "/v1/plugins/echo-tool/reload"),
        ("POST", "/v1/reload"),
        ("GET", "/v1/kv/echo-tool/keys"),
        ("GET", "/v1/events/stream"),
    ] {
        let (status, body) = http(&addr, method, path, &[], b"");
        assert_eq!(status, 401, "{method} {path}: {body}");
    }
    let (_, body) = http(&addr, "GET", "/v1/plugins/echo-tool", &[], b"");
    let detail: serde_json::Value = serde_json::from_str(&body).expect("detail");
    assert_eq!(
        detail["status"]["calls"]["calls"], 0,
        "no refused call reached the plugin"
    );

    // With the token it goes through.
    let (status, body) = http(
        &addr,
        "POST",
        "/v1/tools/echo/call",
        &[("Authorization", &bearer)],
        args,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("hi"), "{body}");

    // A page served from another name (DNS rebinding) gets nothing.
    let (status, body) = http(
        &addr,
        "GET",
        "/v1/plugins",
        &[("Host", "evil.example")],
        b"",
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(error_kind(&body), "bad_host");

    // A body over the limit (1 MiB by default) is refused on both
    // listeners, before the plugin sees it.
    let big = format!("{{\"text\":\"{}\"}}", "x".repeat(3 << 19));
    let (status, _) = http(
        &addr,
        "POST",
        "/v1/tools/echo/call",
        &[("Authorization", &bearer)],
        big.as_bytes(),
    );
    assert_eq!(status, 413);
    let response = client::request(
        &env.state().join("prx.sock"),
        "POST",
        "/v1/tools/echo/call",
        Some(big),
    )
    .await
    .expect("unix socket");
    assert_eq!(response.status, 413, "{}", response.body);
    assert_eq!(error_kind(&response.body), "too_large");
    assert!(
        response.body.contains("max_request_kb"),
        "{}",
        response.body
    );
    let (_, body) = http(&addr, "GET", "/v1/plugins/echo-tool", &[], b"");
    let detail: serde_json::Value = serde_json::from_str(&body).expect("detail");
    assert_eq!(detail["status"]["calls"]["calls"], 1);

    // The Unix socket is the operator's (mode 0600) and asks for no token:
    // the CLI works as before.
    let mode = std::fs::metadata(env.state().join("prx.sock"))
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let out = daemon.cli(&["call", "echo", "{\"text\":\"cli\"}"]);
    assert!(out.status.success(), "{out:?}");

    // The OpenAPI document is served.
    let (status, body) = http(&addr, "GET", "/v1/openapi.json", &[], b"");
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&body).expect("openapi");
    assert!(doc["paths"]["/v1/tools/{name}/call"]["post"]["security"][0]["bearer"].is_array());
}

#[tokio::test]
async fn json_logs_carry_the_plugin_on_every_line_about_one() {
    let env = Env::new();
    env.add("echo", "echo-tool", &echo_manifest());
    let log = env.root.path().join("prx.log");
    let daemon = Daemon::launch(
        &env,
        Launch {
            args: &["--log-format", "json"],
            log: Some(log.clone()),
            ..Launch::default()
        },
    );
    kill_worker(&daemon, "echo-tool").await;
    drop(daemon);
    let text = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() >= 3, "{text}");
    for line in &lines {
        assert!(
            line["timestamp"].is_string() && line["level"].is_string(),
            "{line}"
        );
        let message = line["message"].as_str().unwrap_or_default();
        if message.contains("echo-tool") || line.get("pid").is_some() {
            assert_eq!(
                line["plugin"], "echo-tool",
                "a line about the plugin without its name: {line}"
            );
        }
    }
    let crashed: Vec<_> = lines
        .iter()
        .filter(|l| l["event"] == "prx.lifecycle.crashed")
        .collect();
    assert_eq!(crashed.len(), 1, "{text}");
    assert_eq!(crashed[0]["plugin"], "echo-tool");
    assert!(
        lines
            .iter()
            .any(|l| l["event"] == "prx.lifecycle.restarted" && l["plugin"] == "echo-tool")
    );
}

#[tokio::test]
async fn under_systemd_it_notifies_ready_pings_the_watchdog_and_says_stopping() {
    let env = Env::new();
    env.add("echo", "echo-tool", &echo_manifest());
    let socket_path = env.root.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).expect("notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let notify = socket_path.to_str().expect("utf-8 path");
    let daemon = Daemon::launch(
        &env,
        Launch {
            env: &[("NOTIFY_SOCKET", notify), ("WATCHDOG_USEC", "200000")],
            ..Launch::default()
        },
    );
    let mut buf = [0u8; 4096];
    let mut next = || {
        let n = socket.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let ready = next();
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert!(ready.contains("STATUS=1 of 1 plugins running"), "{ready:?}");
    // Pings every 100 ms (half of WATCHDOG_USEC), each after the API
    // answered.
    let started = std::time::Instant::now();
    for _ in 0..3 {
        assert_eq!(next().trim(), "WATCHDOG=1");
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let stopping = std::iter::repeat_with(next)
        .take(50)
        .find(|m| m.trim() != "WATCHDOG=1")
        .expect("a notification other than pings");
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    // The workers never see the notify socket (their environment is
    // cleared), so a plugin cannot tell systemd anything.
    drop(daemon);
}

#[tokio::test]
async fn the_config_file_sets_the_api_log_format_and_resource_caps() {
    let env = Env::new();
    env.add("echo", "echo-tool", &echo_manifest());
    env.add(
        "greedy",
        "echo-tool",
        &common::tool_manifest("greedy", "greedy", "[resources]\nmax_memory_mb = 256\n"),
    );
    let config = env.root.path().join("prx.toml");
    std::fs::write(
        &config,
        format!(
            "plugins = {:?}\nstate = {:?}\n\n[logs]\nformat = \"json\"\n\n[api]\nhttp = \"127.0.0.1:0\"\ntoken = \"{}\"\nmax_request_kb = 4\n\n[resources.default]\nmax_memory_mb = 128\n",
            env.plugins(),
            env.state(),
            "t".repeat(40)
        ),
    )
    .expect("config");
    let check = std::process::Command::new(common::bin("prx"))
        .args(["config", "check"])
        .arg(&config)
        .output()
        .expect("prx config check");
    assert!(check.status.success(), "{check:?}");
    let printed = stdout(&check);
    assert!(
        printed.contains("api") && printed.contains("127.0.0.1:0"),
        "{printed}"
    );
    assert!(printed.contains("max_memory_mb 128"), "{printed}");

    let log = env.root.path().join("prx.log");
    let daemon = Daemon::launch(
        &env,
        Launch {
            args: &["--config", config.to_str().expect("utf-8")],
            log: Some(log),
            ..Launch::default()
        },
    );
    let addr = daemon.http_addr();
    let auth = format!("Bearer {}", "t".repeat(40));
    let (status, body) = http(
        &addr,
        "POST",
        "/v1/tools/echo/call",
        &[("Authorization", &auth)],
        br#"{"text":"ok"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let (status, _) = http(
        &addr,
        "POST",
        "/v1/tools/echo/call",
        &[("Authorization", &auth)],
        &[b' '; 5000],
    );
    assert_eq!(status, 413, "max_request_kb = 4");
    assert!(
        !env.state().join("api-token").exists(),
        "the config's token is used, no file made"
    );

    let (_, body) = http(&addr, "GET", "/v1/plugins", &[], b"");
    let plugins: Vec<serde_json::Value> = serde_json::from_str(&body).expect("plugins");
    let greedy = plugins
        .iter()
        .find(|p| p["name"] == "greedy")
        .expect("greedy listed");
    assert_eq!(greedy["state"], "failed");
    let error = greedy["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("plugin `greedy` asks for [resources].max_memory_mb = 256, above the operator's cap of 128 ([resources.default]"),
        "{error}"
    );
    let echo = plugins
        .iter()
        .find(|p| p["name"] == "echo-tool")
        .expect("echo listed");
    assert_eq!(echo["state"], "running");

    let bad = env.root.path().join("bad.toml");
    for (text, expected) in [
        (
            "plugins = \"p\"\n[api]\nhttp = \"0.0.0.0:8780\"\n",
            "not a loopback address",
        ),
        (
            "plugins = \"p\"\n[api]\ntoken = \"short\"\n",
            "use at least 32",
        ),
        (
            "plugins = \"p\"\n[api]\nsocket_mode = \"0644x\"\n",
            "socket_mode",
        ),
        (
            "plugins = \"p\"\n[logs]\nformat = \"xml\"\n",
            "unknown variant `xml`",
        ),
        (
            "plugins = \"p\"\n[resources.default]\nmax_cpu = 1\n",
            "unknown key `max_cpu`",
        ),
    ] {
        std::fs::write(&bad, text).expect("write");
        let out = std::process::Command::new(common::bin("prx"))
            .args(["config", "check"])
            .arg(&bad)
            .output()
            .expect("prx config check");
        assert!(!out.status.success(), "{text}");
        let err = common::stderr(&out);
        assert!(err.contains(expected), "{text:?}: {err}");
    }
}

/// Raises this process's descriptor limit to its hard limit (the daemon
/// started after it inherits it): ten thousand connections at once.
fn raise_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
}

/// One `GET /v1/modules` over a new connection; a refused connection (the
/// listen queue full) is tried again.
async fn list_modules(addr: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = loop {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(stream) => break stream,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let request = format!("GET /v1/modules HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn ten_thousand_module_listings_at_once_neither_restart_nor_stall_a_module() {
    // `GET /v1/modules` needs no token and asks every module's
    // `describe()`, here one that is busy for a millisecond each time.
    // Anyone who reaches the listener can send ten thousand at once: the
    // module must not be made to look hung (its deadline counting their
    // queue) and be restarted or quarantined.
    raise_nofile();
    let env = Env::new();
    let manifest = std::fs::read_to_string(
        std::path::Path::new(env!("PRX_ROOT")).join("plugins/testing/slow-module/plugin.toml"),
    )
    .expect("manifest");
    env.add("slow-module", "slow-module", &manifest);
    let daemon = Daemon::start_with(&env, &["--http", "127.0.0.1:0"]);
    let addr = daemon.http_addr();
    let requests: Vec<_> = (0..10_000)
        .map(|_| {
            let addr = addr.clone();
            tokio::spawn(async move { list_modules(&addr).await })
        })
        .collect();
    let mut described = 0;
    for request in requests {
        let (status, body) = request.await.expect("request");
        assert_eq!(status, 200, "{body}");
        let modules: serde_json::Value = serde_json::from_str(&body).expect("json");
        if modules[0]["status"] == "SLOW" {
            described += 1;
        }
    }
    // Every listing has the module's answer (fresh or shared), and the
    // module was asked far fewer times than it was listed.
    assert_eq!(described, 10_000);
    let response = client::request(&daemon.state.join("prx.sock"), "GET", "/v1/plugins", None)
        .await
        .expect("status");
    let plugins: Vec<serde_json::Value> = serde_json::from_str(&response.body).expect("json");
    let module = plugins
        .iter()
        .find(|p| p["name"] == "slow-module")
        .expect("listed");
    assert_eq!(module["state"], "running", "{module}");
    assert_eq!(module["restarts"], 0, "{module}");
    let asked: u64 = modules_described(&daemon).await;
    assert!(asked < 1_000, "describe() was asked {asked} times");
}

/// How many times the slow module says its `describe()` ran.
async fn modules_described(daemon: &Daemon) -> u64 {
    let response = client::request(&daemon.state.join("prx.sock"), "GET", "/v1/modules", None)
        .await
        .expect("modules");
    let modules: serde_json::Value = serde_json::from_str(&response.body).expect("json");
    let stats = modules[0]["stats"].as_array().cloned().unwrap_or_default();
    stats
        .iter()
        .find(|s| s[0] == "described")
        .and_then(|s| s[1].as_str()?.parse().ok())
        .expect("the described count")
}
