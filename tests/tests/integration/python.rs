//! Python plugins (componentize-py, the prx_pdk SDK) in real sandboxed
//! workers: a tool and its exceptions, a hook, the PrismR-style forecast
//! module with the host cache across a restart, and the limits a hostile
//! Python plugin runs into.
//!
//! The components are built by `prx-plugin build` from plugins/examples
//! and plugins/testing; each is compiled once per run into the shared
//! compile cache.

use crate::common;

use std::path::Path;

use common::{Daemon, Env, eventually, python_plugin, stderr, stdout};
use prx_supervisor::Supervisor;
use prx_supervisor::plugin::StateKind;
use serde_json::{Value, json};

/// IBM's monthly closes, 2000-2010: the forecast example's test data.
fn ibm_closes() -> Vec<f64> {
    let csv = Path::new(env!("PRX_ROOT")).join("plugins/examples/forecast/data/ibm-monthly.csv");
    std::fs::read_to_string(&csv)
        .expect("test data")
        .lines()
        .skip(1)
        .map(|line| {
            line.split(',')
                .nth(1)
                .expect("close")
                .parse()
                .expect("number")
        })
        .collect()
}

async fn describe(sup: &Supervisor, plugin: &str) -> (String, Vec<(String, String)>) {
    let module = sup
        .describe_modules()
        .await
        .into_iter()
        .find(|m| m.plugin == plugin)
        .expect("the module is listed");
    (module.status.expect("describe answered"), module.stats)
}

fn stat<'a>(stats: &'a [(String, String)], name: &str) -> &'a str {
    stats
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no stat {name} in {stats:?}"))
}

#[test]
fn the_python_hello_tool_answers_prx_call_and_an_exception_names_the_plugin() {
    let env = Env::new();
    env.add_built("hello-py", &python_plugin("examples/hello-py"), None);
    let daemon = Daemon::start(&env);

    let ok = daemon.cli(&["call", "hello", r#"{"name":"Ada"}"#]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert_eq!(stdout(&ok).trim(), "Hello, Ada! (greeting #1)");

    let bad = daemon.cli(&["call", "hello", r#"{"name":42}"#]);
    assert_eq!(bad.status.code(), Some(1));
    assert_eq!(
        stderr(&bad).trim(),
        "prx: tool `hello` of plugin `hello-py` failed: ValueError: name must be a non-empty string, not 42"
    );

    // The exception cost nothing: the same instance answers, kv intact.
    let again = daemon.cli(&["call", "hello", "{}"]);
    assert_eq!(stdout(&again).trim(), "Hello, world! (greeting #2)");
    let status = stdout(&daemon.cli(&["status"]));
    let line = status
        .lines()
        .find(|l| l.starts_with("hello-py"))
        .expect("listed");
    assert!(
        line.contains("running") && line.split_whitespace().nth(3) == Some("0"),
        "no restart: {line}"
    );
}

#[tokio::test]
async fn a_python_hook_sees_the_events_of_its_manifest() {
    let env = Env::new();
    env.add_built("events-py", &python_plugin("examples/events-py"), None);
    let sup = env.supervisor().await;
    sup.publish("prices.ibm", r#"{"close":125.55}"#).unwrap();
    sup.publish("prices.ibm", r#"{"close":126.1}"#).unwrap();
    sup.publish("news.ibm", r#"{"ignored":true}"#).unwrap();
    // A payload the hook refuses with an exception is its error, not a crash.
    sup.publish("prices.ibm", "[1,2]").unwrap();
    sup.publish("prices.ibm", r#"{"close":127.0}"#).unwrap();
    // The hook counts, then stores the payload: wait for both writes of the
    // last event, not just the count.
    eventually("three prices counted and the last one kept", async || {
        let seen = sup.kv_get("events-py", "seen:prices.ibm").expect("kv")?;
        let last = sup.kv_get("events-py", "last:prices.ibm").expect("kv")?;
        (seen == b"3" && last == br#"{"close":127.0}"#).then_some(())
    })
    .await;
    assert_eq!(sup.kv_get("events-py", "seen:news.ibm").unwrap(), None);
    let plugin = sup
        .plugins()
        .into_iter()
        .find(|p| p.name == "events-py")
        .unwrap();
    assert_eq!((plugin.state, plugin.restarts), (StateKind::Running, 0));
    sup.shutdown().await;
}

#[tokio::test]
async fn the_forecast_module_returns_an_ordered_cone_and_caches_it_across_a_restart() {
    let env = Env::new();
    env.add_built("forecast", &python_plugin("examples/forecast"), None);
    let closes = ibm_closes();
    assert_eq!(closes.len(), 123);
    let payload = json!({"closes": closes, "horizon": 12}).to_string();

    let sup = env.supervisor().await;
    let first: Value =
        serde_json::from_str(&sup.rpc("forecast", &payload).await.expect("forecast")).unwrap();
    let series = |name: &str| -> Vec<f64> {
        first[name]
            .as_array()
            .unwrap_or_else(|| panic!("{name} in {first}"))
            .iter()
            .map(|v| v.as_f64().expect("number"))
            .collect()
    };
    let (p10, p50, p90) = (series("p10"), series("p50"), series("p90"));
    assert_eq!((p10.len(), p50.len(), p90.len()), (12, 12, 12));
    for step in 0..12 {
        assert!(
            0.0 < p10[step] && p10[step] <= p50[step] && p50[step] <= p90[step],
            "step {step}: {} {} {}",
            p10[step],
            p50[step],
            p90[step]
        );
    }
    // A bootstrap from the last close (125.55): the cone starts around it
    // and widens.
    assert!(p10[0] < 125.55 && 125.55 < p90[0], "{p10:?} {p90:?}");
    assert!(p90[11] - p10[11] > p90[0] - p10[0]);

    let second = sup.rpc("forecast", &payload).await.expect("again");
    assert_eq!(serde_json::from_str::<Value>(&second).unwrap(), first);
    let (status, stats) = describe(&sup, "forecast").await;
    assert_eq!(status, "LOADED");
    assert!(stat(&stats, "model").starts_with("bootstrap of log returns (1000 paths"));
    assert_eq!(
        (stat(&stats, "calls"), stat(&stats, "cache hits")),
        ("2", "1")
    );

    // Bad input is the caller's error, named after the plugin.
    let err = sup
        .rpc("forecast", r#"{"closes":[1,2,3],"horizon":0}"#)
        .await
        .expect_err("horizon 0");
    assert!(
        err.to_string()
            .contains("plugin `forecast` refused the RPC `forecast`: ValueError: horizon must be"),
        "{err}"
    );
    sup.shutdown().await;
    drop(sup);

    // A new supervisor on the same state: the answer comes from the cache.
    let sup = env.supervisor().await;
    let after = sup.rpc("forecast", &payload).await.expect("after restart");
    assert_eq!(serde_json::from_str::<Value>(&after).unwrap(), first);
    let (_, stats) = describe(&sup, "forecast").await;
    assert_eq!(
        (stat(&stats, "calls"), stat(&stats, "cache hits")),
        ("1", "1")
    );
    sup.shutdown().await;
}

/// py-faults under `name`, with `limits` for [resources].
fn faults_manifest(name: &str, limits: &str) -> String {
    format!(
        "[plugin]\nname = \"{name}\"\nversion = \"0.1.0\"\nwasm = \"plugin.wasm\"\n\n[[capabilities]]\ntype = \"tool\"\nname = \"{name}\"\n\n[resources]\nmax_memory_mb = 32\n{limits}\n"
    )
}

#[tokio::test]
async fn a_python_plugin_past_its_fuel_memory_or_time_limit_fails_cleanly() {
    let env = Env::new();
    let faults = python_plugin("testing/py-faults");
    env.add_built(
        "fuel",
        &faults,
        Some(&faults_manifest("fuel", "max_fuel = 200_000_000")),
    );
    let sup = env.supervisor().await;
    // The same component with other limits loads from the compile cache.
    env.add_built(
        "clock",
        &faults,
        Some(&faults_manifest(
            "clock",
            "max_fuel = 1_000_000_000_000\nmax_execution_time_ms = 400",
        )),
    );
    sup.reload(None).await.expect("reload");
    assert_eq!(sup.running(), 2, "{:?}", sup.failures());

    let call = async |tool: &str, mode: &str| {
        sup.call_tool(tool, &json!({ "mode": mode }).to_string())
            .await
            .map_err(|e| e.to_string())
    };
    let cases = [
        (
            "fuel",
            "spin",
            "plugin `fuel` ran out of fuel (max_fuel = 200000000); raise [resources].max_fuel",
        ),
        (
            "fuel",
            "alloc",
            "past max_memory_mb = 32; raise [resources].max_memory_mb",
        ),
        (
            "clock",
            "spin",
            "plugin `clock` exceeded its time limit (max_execution_time_ms = 400)",
        ),
        (
            "fuel",
            "raise",
            "tool `fuel` of plugin `fuel` failed: RuntimeError: asked to fail",
        ),
        (
            "fuel",
            "exit",
            "tool `fuel` of plugin `fuel` failed: SystemExit: 3",
        ),
        (
            "fuel",
            "recurse",
            "failed: RecursionError: maximum recursion depth exceeded",
        ),
    ];
    for (tool, mode, expected) in cases {
        let err = call(tool, mode).await.expect_err(mode);
        assert!(err.contains(expected), "{tool} {mode}: {err}");
        // And the plugin serves the next call.
        assert_eq!(
            call(tool, "ok").await.as_deref(),
            Ok("ok"),
            "{tool} after {mode}"
        );
    }
    for plugin in sup.plugins() {
        assert_eq!(plugin.state, StateKind::Running, "{plugin:?}");
        assert_eq!(
            plugin.restarts, 0,
            "limits end calls, not workers: {plugin:?}"
        );
    }
    sup.shutdown().await;
}

#[tokio::test]
async fn every_world_of_the_python_sdk_answers_from_a_real_worker() {
    let env = Env::new();
    env.add_built("py-worlds", &python_plugin("testing/py-worlds"), None);
    let mut config = env.config();
    config.memory_backend = Some("py-worlds".into());
    let sup = Supervisor::start(config).await.expect("supervisor starts");
    assert_eq!(sup.running(), 1, "{:?}", sup.failures());

    assert_eq!(
        sup.call_tool("py_worlds", r#"{"a":[1,2]}"#).await.unwrap(),
        r#"{"echo":{"a":[1,2]}}"#
    );
    assert_eq!(
        sup.run_middleware("inbound", r#"{"text":"hi"}"#)
            .await
            .unwrap(),
        r#"{"text":"hi","py_worlds":"inbound"}"#
    );
    let blocked = sup
        .run_middleware("inbound", r#"{"block":true}"#)
        .await
        .expect_err("blocked");
    assert!(
        blocked.to_string().contains(
            "middleware `py-worlds` blocked the inbound chain: PermissionError: blocked on request"
        ),
        "{blocked}"
    );
    assert_eq!(sup.run_cron("py-worlds").await.unwrap(), "cron run 1");

    common::chat_and_memory_answer(&sup, "py-worlds", "py_worlds").await;

    assert_eq!(
        sup.rpc("worlds.echo", r#"{"k":"v"}"#).await.unwrap(),
        r#"{"k":"v"}"#
    );
    sup.publish("worlds.tick", r#"{"n":1}"#).unwrap();
    eventually("the hook and the module saw the event", async || {
        let hook = sup.kv_get("py-worlds", "seen:worlds.tick").unwrap()?;
        let (_, stats) = describe(&sup, "py-worlds").await;
        (hook == b"1" && stat(&stats, "events") == "1").then_some(())
    })
    .await;
    sup.shutdown().await;
}
