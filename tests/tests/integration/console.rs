//! The web console in a real browser: Debian's chromium, headless, driven
//! through chromedriver (WebDriver) against a real `prx up` serving the
//! example plugins. Screenshots go to `target/test-artifacts/`.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Daemon, Env};
use fantoccini::{Client, ClientBuilder, Locator};
use prx_supervisor::api::client;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver on a free port; killed on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Self {
        for tool in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(tool).is_file(),
                "{tool} is missing: install Debian's chromium and chromium-driver (scripts/bootstrap.sh does)"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port }
    }

    async fn browser(&self, profile: &Path) -> Client {
        // The flags keep chromium off the network it cannot reach here
        // and out of a sandbox it cannot set up as root in a container.
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1400,1000",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain([format!("--user-data-dir={}", profile.display())])
        .collect::<Vec<_>>();
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        });
        let Value::Object(caps) = caps else {
            unreachable!("an object literal")
        };
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a WebDriver session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `script` in the page until it returns something other than null
/// (up to 60 s).
async fn until(browser: &Client, what: &str, script: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let value = browser.execute(script, vec![]).await.expect("script runs");
        if !value.is_null() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Clicks the element `css` selects; `what` names it if it is missing.
async fn click(browser: &Client, css: &str, what: &str) {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{what} ({css}): {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("clicking {what}: {e}"));
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("PRX_ROOT")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(artifacts().join(name), png).expect("write screenshot");
}

/// Builds `rows`, the table as `{name: [state, restarts, pid]}`; the
/// script that includes it returns what it wants of it.
const ROWS: &str = r#"
const rows = {};
for (const tr of document.querySelectorAll('#plugins tbody tr')) {
  rows[tr.dataset.plugin] = [
    tr.dataset.state,
    tr.querySelector('[data-col="restarts"]').textContent,
    tr.querySelector('[data-col="pid"]').textContent,
  ];
}
"#;

#[tokio::test]
async fn the_console_shows_the_plugins_live_and_charts_the_forecast() {
    let env = Env::new();
    for example in ["echo-tool", "visit-counter", "stats-module", "audit-hook"] {
        env.add_example(example);
    }
    env.add_built(
        "forecast",
        &common::python_plugin("examples/forecast"),
        None,
    );
    let daemon = Daemon::start_with(&env, &["--http", "127.0.0.1:0"]);
    let addr = daemon.http_addr();
    let token = std::fs::read_to_string(env.state().join("api-token")).expect("token");
    let driver = Driver::start();
    let profile = tempfile::tempdir().expect("profile dir");
    let browser = driver.browser(profile.path()).await;

    // The token rides in the fragment, which never reaches the server;
    // the page keeps it for the tab and drops it from the address bar.
    browser
        .goto(&format!("http://{addr}/#token={}", token.trim()))
        .await
        .expect("open the console");
    let names = [
        "audit-hook",
        "echo-tool",
        "forecast",
        "stats-module",
        "visit-counter",
    ];
    let rows = until(
        &browser,
        "every plugin running in the table",
        &format!(
            "{ROWS}\nconst want = {names:?};\nreturn want.every(n => rows[n] && rows[n][0] === 'running') ? rows : null;"
        ),
    )
    .await;
    assert_eq!(
        rows.as_object().map(|r| r.len()),
        Some(names.len()),
        "{rows}"
    );
    assert_eq!(rows["echo-tool"][1], "0");
    let url = browser.current_url().await.expect("url");
    assert!(!url.as_str().contains("token"), "{url}");
    assert_eq!(
        browser
            .execute(
                "return document.getElementById('token-state').textContent",
                vec![]
            )
            .await
            .expect("token state"),
        "token set"
    );

    // A crash: the row shows the restart and the new worker without the
    // page being loaded again (a marker set on the page survives).
    browser
        .execute("window.prxMarker = 'same page'; return null;", vec![])
        .await
        .expect("marker");
    let old_pid = rows["echo-tool"][2].as_str().expect("pid").to_owned();
    let pid: i32 = old_pid.parse().expect("a pid in the table");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9 the worker");
    let after = until(
        &browser,
        "the restart on the page",
        &format!(
            "{ROWS}\nconst r = rows['echo-tool'];\nreturn r && r[1] === '1' && r[0] === 'running' && r[2] !== '{old_pid}' ? r : null;"
        ),
    )
    .await;
    assert_ne!(after[2], old_pid);
    let marker = browser
        .execute("return window.prxMarker || null;", vec![])
        .await
        .expect("marker");
    assert_eq!(marker, "same page", "the page was reloaded");
    let crash_note = browser
        .execute(
            "return document.querySelector('tr[data-plugin=\"echo-tool\"] [data-col=\"last-error\"]').textContent",
            vec![],
        )
        .await
        .expect("last error");
    assert!(
        crash_note
            .as_str()
            .is_some_and(|t| t.contains("SIGKILL") || t.contains("signal")),
        "{crash_note}"
    );
    screenshot(&browser, "console-plugins.png").await;

    // The forecast module: an RPC on the IBM series, then its page.
    let csv = std::fs::read_to_string(
        Path::new(env!("PRX_ROOT")).join("plugins/examples/forecast/data/ibm-monthly.csv"),
    )
    .expect("test data");
    let closes: Vec<f64> = csv
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(1)?.parse().ok())
        .collect();
    let payload = json!({ "closes": closes, "horizon": 12 }).to_string();
    let answer = client::request(
        &env.state().join("prx.sock"),
        "POST",
        "/v1/rpc/forecast",
        Some(payload),
    )
    .await
    .expect("rpc");
    assert_eq!(answer.status, 200, "{}", answer.body);
    click(
        &browser,
        "tr[data-plugin=\"forecast\"] a",
        "the forecast link",
    )
    .await;
    let chart = until(
        &browser,
        "the cone chart",
        r#"
const svg = document.querySelector('svg.cone[data-rpc="forecast"]');
if (!svg) return null;
const band = svg.querySelector('polygon.band').getAttribute('points').trim().split(' ').length;
const median = svg.querySelector('polyline.median').getAttribute('points').trim().split(' ').length;
const box = svg.getBoundingClientRect();
return { points: svg.dataset.points, band, median, width: box.width, height: box.height };
"#,
    )
    .await;
    assert_eq!(chart["points"], "12", "{chart}");
    assert_eq!(chart["band"], 24, "p90 out and p10 back: {chart}");
    assert_eq!(chart["median"], 12, "{chart}");
    assert!(
        chart["width"].as_f64().unwrap_or(0.0) > 300.0,
        "rendered: {chart}"
    );
    assert!(
        chart["height"].as_f64().unwrap_or(0.0) > 100.0,
        "rendered: {chart}"
    );
    // describe() and the plugin's own page content.
    let module = until(
        &browser,
        "the module's describe() on its page",
        r#"
const text = document.getElementById('module-status').textContent;
return text.includes('LOADED') ? text : null;
"#,
    )
    .await;
    assert!(
        module.as_str().is_some_and(|t| t.contains("forecast")),
        "{module}"
    );
    let page = browser
        .execute(
            "return [document.getElementById('detail-name').textContent, document.getElementById('detail-permissions').textContent, document.querySelectorAll('#log tbody tr').length, document.getElementById('manifest').textContent.length];",
            vec![],
        )
        .await
        .expect("page");
    assert_eq!(page[0], "forecast");
    assert!(
        page[1].as_str().is_some_and(|t| t.contains("granted")),
        "{page}"
    );
    assert!(page[2].as_u64().unwrap_or(0) >= 1, "log lines: {page}");
    assert!(page[3].as_u64().unwrap_or(0) > 100, "manifest: {page}");
    browser
        .execute(
            "document.querySelector('svg.cone').scrollIntoView({block: 'center'}); return null;",
            vec![],
        )
        .await
        .expect("scroll to the chart");
    screenshot(&browser, "console-forecast.png").await;

    // Reload from the page (token-protected): with the token it is done;
    // without it the page says so and nothing happens.
    click(&browser, "#reload", "reload button").await;
    let result = until(
        &browser,
        "the reload's answer",
        "const t = document.getElementById('action-result').textContent; return t.startsWith('reload:') || t.includes('refused') ? t : null;",
    )
    .await;
    assert!(
        result.as_str().is_some_and(|t| t.starts_with("reload:")),
        "{result}"
    );
    browser
        .execute("sessionStorage.clear(); return null;", vec![])
        .await
        .expect("forget the token");
    click(&browser, "#reload", "reload button").await;
    let result = browser
        .execute(
            "return document.getElementById('action-result').textContent",
            vec![],
        )
        .await
        .expect("result");
    assert!(
        result
            .as_str()
            .is_some_and(|t| t.contains("Set the API token")),
        "{result}"
    );
    browser.close().await.expect("close the browser");
}
