//! JavaScript and TypeScript plugins (componentize-js, the @prx/pdk SDK)
//! in real workers with every sandbox layer required: each world of the
//! SDK, a bus module with RPC and the host cache, a hook receiving
//! events, the TypeScript tool and JavaScript middleware examples through
//! the CLI, exceptions that name the plugin and cost no worker, the
//! limits a hostile script runs into, and plugins written against PRX's
//! own SDKs (Python and TypeScript) built unchanged.
//!
//! The components are built by `prx-plugin build` from plugins/examples
//! and plugins/testing; each is compiled once per run into the shared
//! compile cache.

use crate::common;

use common::{Daemon, Env, eventually, js_plugin, python_plugin, stderr, stdout};
use prx_supervisor::Supervisor;
use prx_supervisor::plugin::{LayerState, StateKind};
use prx_supervisor::worker_handle::verify::Layer;
use serde_json::{Value, json};

/// A supervisor for `env` that refuses to start a worker without every
/// sandbox layer.
async fn fully_sandboxed(env: &Env, memory_backend: Option<&str>) -> Supervisor {
    let mut config = env.config();
    config.sandbox.required = Layer::ALL.into();
    config.memory_backend = memory_backend.map(str::to_owned);
    let sup = Supervisor::start(config).await.expect("supervisor starts");
    for plugin in sup.plugins() {
        assert_eq!(plugin.state, StateKind::Running, "{plugin:?}");
        assert!(
            plugin
                .sandbox
                .iter()
                .all(|(_, s)| *s == LayerState::Applied),
            "{plugin:?}"
        );
    }
    sup
}

async fn stats(sup: &Supervisor, plugin: &str) -> Vec<(String, String)> {
    sup.describe_modules()
        .await
        .into_iter()
        .find(|m| m.plugin == plugin)
        .expect("the module is listed")
        .stats
}

fn stat(stats: &[(String, String)], name: &str) -> String {
    stats
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no stat {name} in {stats:?}"))
}

#[tokio::test]
async fn every_world_of_the_javascript_sdk_answers_from_a_real_worker() {
    let env = Env::new();
    env.add_built("js-worlds", &js_plugin("testing/js-worlds"), None);
    let sup = fully_sandboxed(&env, Some("js-worlds")).await;

    assert_eq!(
        sup.call_tool("js_worlds", r#"{"a":[1,2]}"#).await.unwrap(),
        r#"{"echo":{"a":[1,2]}}"#
    );
    assert_eq!(
        sup.run_middleware("inbound", r#"{"text":"hi"}"#)
            .await
            .unwrap(),
        r#"{"text":"hi","js_worlds":"inbound"}"#
    );
    let blocked = sup
        .run_middleware("inbound", r#"{"block":true}"#)
        .await
        .expect_err("blocked");
    assert!(
        blocked.to_string().contains(
            "middleware `js-worlds` blocked the inbound chain: Error: blocked on request"
        ),
        "{blocked}"
    );
    assert_eq!(sup.run_cron("js-worlds").await.unwrap(), "cron run 1");

    common::chat_and_memory_answer(&sup, "js-worlds", "js_worlds").await;

    // The bus module: RPCs, the host cache, its panel.
    assert_eq!(
        sup.rpc("worlds.echo", r#"{"k":"v"}"#).await.unwrap(),
        r#"{"k":"v"}"#
    );
    for _ in 0..2 {
        assert_eq!(
            sup.rpc("worlds.square", r#"{"x":7}"#).await.unwrap(),
            r#"{"square":49}"#
        );
    }
    assert_eq!(stat(&stats(&sup, "js-worlds").await, "cache hits"), "1");

    // The hook and the module's handler both receive an event.
    sup.publish("worlds.tick", r#"{"n":1}"#).unwrap();
    sup.publish("worlds.tick", r#"{"n":2}"#).unwrap();
    eventually("the hook and the module saw both events", async || {
        let seen = sup.kv_get("js-worlds", "seen:worlds.tick").unwrap()?;
        let last = sup.kv_get("js-worlds", "last:worlds.tick").unwrap()?;
        let events = stat(&stats(&sup, "js-worlds").await, "events");
        (seen == b"2" && last == br#"{"n":2}"# && events == "2").then_some(())
    })
    .await;
    sup.shutdown().await;
    drop(sup);

    // The cache outlives the supervisor: a new one answers from it (and
    // the first, whose memory backend was this plugin, let the database go).
    let sup = env.supervisor().await;
    assert_eq!(
        sup.rpc("worlds.square", r#"{"x":7}"#).await.unwrap(),
        r#"{"square":49}"#
    );
    assert_eq!(stat(&stats(&sup, "js-worlds").await, "cache hits"), "1");
    sup.shutdown().await;
}

#[tokio::test]
async fn a_javascript_exception_names_the_plugin_and_costs_no_worker() {
    let env = Env::new();
    env.add_built("js-worlds", &js_plugin("testing/js-worlds"), None);
    let sup = fully_sandboxed(&env, None).await;
    let pid = sup.plugins()[0].pid;

    let err = sup
        .call_tool("js_worlds", r#"{"throw":"no such thing"}"#)
        .await
        .expect_err("thrown");
    assert_eq!(
        err.to_string(),
        "tool `js_worlds` of plugin `js-worlds` failed: RangeError: no such thing"
    );
    let deep = sup
        .call_tool("js_worlds", r#"{"nested":50}"#)
        .await
        .expect_err("thrown deep");
    assert!(
        deep.to_string().ends_with("failed: Error: deep failure"),
        "{deep}"
    );
    let rpc = sup
        .rpc("worlds.square", r#"{"y":1}"#)
        .await
        .expect_err("no x");
    assert!(
        rpc.to_string()
            .contains("plugin `js-worlds` refused the RPC `worlds.square`: TypeError:"),
        "{rpc}"
    );
    // The same worker, no restart, answers the next call.
    assert_eq!(
        sup.call_tool("js_worlds", r#"{"ok":1}"#).await.unwrap(),
        r#"{"echo":{"ok":1}}"#
    );
    let after = &sup.plugins()[0];
    assert_eq!(
        (after.pid, after.restarts, after.state),
        (pid, 0, StateKind::Running)
    );
    sup.shutdown().await;
}

/// js-worlds as a plugin with only its tool, named `name`, with `limits`.
fn limited(name: &str, limits: &str) -> String {
    format!(
        "[plugin]\nname = \"{name}\"\nversion = \"0.1.0\"\nwasm = \"plugin.wasm\"\n\n[[capabilities]]\ntype = \"tool\"\nname = \"{name}\"\n\n[resources]\nmax_memory_mb = 32\n{limits}\n"
    )
}

#[tokio::test]
async fn a_javascript_plugin_past_its_fuel_memory_or_time_limit_fails_cleanly() {
    let env = Env::new();
    let worlds = js_plugin("testing/js-worlds");
    env.add_built(
        "fuel",
        &worlds,
        Some(&limited("fuel", "max_fuel = 200_000_000")),
    );
    env.add_built(
        "clock",
        &worlds,
        Some(&limited(
            "clock",
            "max_fuel = 1_000_000_000_000\nmax_execution_time_ms = 400",
        )),
    );
    let sup = fully_sandboxed(&env, None).await;
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
            "recurse",
            "tool `fuel` of plugin `fuel` failed: InternalError: too much recursion",
        ),
    ];
    for (tool, mode, expected) in cases {
        let err = sup
            .call_tool(tool, &json!({ "mode": mode }).to_string())
            .await
            .expect_err(mode)
            .to_string();
        assert!(err.contains(expected), "{tool} {mode}: {err}");
        assert_eq!(
            sup.call_tool(tool, r#"{"mode":"fine"}"#)
                .await
                .as_deref()
                .ok(),
            Some("fine"),
            "{tool} after {mode}"
        );
    }
    for plugin in sup.plugins() {
        assert_eq!(
            (plugin.state, plugin.restarts),
            (StateKind::Running, 0),
            "limits end calls, not workers: {plugin:?}"
        );
    }
    sup.shutdown().await;
}

#[test]
fn the_typescript_tool_and_the_javascript_middleware_examples_answer_through_the_cli() {
    let env = Env::new();
    env.add_built("text-stats-ts", &js_plugin("examples/text-stats-ts"), None);
    env.add_built("redact-js", &js_plugin("examples/redact-js"), None);
    let daemon = Daemon::start(&env);

    let out = daemon.cli(&[
        "call",
        "text_stats",
        r#"{"text":"The cat sat. The cat ran!","top":2}"#,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stats: Value = serde_json::from_str(stdout(&out).trim()).expect("JSON");
    assert_eq!(
        stats,
        json!({"words": 6, "sentences": 2, "top": [["cat", 2], ["the", 2]], "reading_seconds": 2, "texts_seen": 1})
    );
    let bad = daemon.cli(&["call", "text_stats", r#"{"text":"x","top":99}"#]);
    assert_eq!(
        stderr(&bad).trim(),
        r#"prx: tool `text_stats` of plugin `text-stats-ts` failed: RangeError: "top" must be a whole number from 0 to 50"#
    );

    let out = daemon.cli(&[
        "middleware",
        "inbound",
        r#"{"content":"mail ada@example.org or +44 20 7946 0958","user":"u"}"#,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        r#"{"content":"mail [email] or [phone]","user":"u"}"#
    );
    let blocked = daemon.cli(&[
        "middleware",
        "inbound",
        r#"{"content":"the SECRET is out"}"#,
    ]);
    assert!(!blocked.status.success());
    assert!(
        stderr(&blocked).contains(
            r#"middleware `redact-js` blocked the inbound chain: Error: the message contains the banned word "secret""#
        ),
        "{}",
        stderr(&blocked)
    );
    let count = |key: &str| {
        stdout(&daemon.cli(&["kv", "get", "redact-js", key]))
            .trim()
            .to_owned()
    };
    assert_eq!(
        (count("redacted"), count("blocked")),
        ("2".into(), "1".into())
    );
}

#[tokio::test]
async fn plugins_written_against_prx_own_sdks_build_unchanged_and_answer() {
    let env = Env::new();
    // Python: PRX's decorator and result names, and its manifest's short
    // form ([plugin] capability, [http_allowlist] table, no wasm key).
    env.add_built("prx-sdk-py", &python_plugin("testing/prx-sdk-py"), None);
    // TypeScript: getSpec/execute exported, resultOk/resultErr, a
    // package.json whose @prx/pdk points nowhere.
    env.add_built("prx-sdk-ts", &js_plugin("testing/prx-sdk-ts"), None);
    let sup = fully_sandboxed(&env, None).await;

    // The Python tool is routed by the name its get-spec gives.
    assert_eq!(
        sup.call_tool(
            "convert_temperature",
            r#"{"value":100,"from":"C","to":"F"}"#
        )
        .await
        .unwrap(),
        "212.0 F"
    );
    let refused = sup
        .call_tool("convert_temperature", r#"{"value":1,"from":"X","to":"C"}"#)
        .await
        .expect_err("unknown scale");
    assert_eq!(
        refused.to_string(),
        "tool `convert_temperature` of plugin `prx-sdk-py` failed: unknown scale: use one of C, F, K"
    );
    assert_eq!(
        sup.kv_get("prx-sdk-py", "conversions").unwrap().as_deref(),
        Some(&b"1"[..])
    );

    assert_eq!(
        sup.call_tool("slugify", r#"{"title":"Hello, World!"}"#)
            .await
            .unwrap(),
        "hello-world"
    );
    let err = sup
        .call_tool("slugify", r#"{"title":"explode"}"#)
        .await
        .expect_err("thrown");
    assert_eq!(
        err.to_string(),
        "tool `slugify` of plugin `prx-sdk-ts` failed: Error: asked to explode"
    );
    let err = sup
        .call_tool("slugify", r#"{"title":""}"#)
        .await
        .expect_err("refused");
    assert!(
        err.to_string()
            .ends_with(r#"failed: "title" must be a non-empty string"#),
        "{err}"
    );
    sup.shutdown().await;
}
