//! Every capability at run time, with real workers and real guests: hooks
//! (patterns, host events, loops stopped), middleware chains (order,
//! blocking, fail-open), cron (a controllable clock), providers, storage
//! plugins as the memory backend, and bus modules (RPC, cache, describe).

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use common::*;
use prx_supervisor::clock::ManualClock;
use prx_supervisor::plugin::StateKind;
use prx_supervisor::{CallError, ChatMessage, Supervisor, SupervisorConfig};
use serde_json::{Value, json};

/// The manifest of a plugin of one capability, with extra TOML.
pub(crate) fn manifest(plugin: &str, capability: &str, extra: &str) -> String {
    format!(
        "[plugin]\nname = \"{plugin}\"\nversion = \"0.1.0\"\nwasm = \"plugin.wasm\"\n\n[[capabilities]]\ntype = \"{capability}\"\n{extra}\n"
    )
}

/// Copies an example plugin (its own manifest and the built component).
fn add_example(env: &Env, name: &str) {
    let manifest = std::fs::read_to_string(
        std::path::Path::new(env!("PRX_ROOT")).join(format!("plugins/examples/{name}/plugin.toml")),
    )
    .expect("example manifest");
    env.add(name, name, &manifest);
}

fn kv_number(sup: &Supervisor, plugin: &str, key: &str) -> Option<i64> {
    sup.kv_get(plugin, key)
        .expect("kv")
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|t| t.parse().ok())
}

fn suppressed(sup: &Supervisor, plugin: &str) -> u64 {
    sup.event_stats()
        .iter()
        .find(|s| s.owner.to_string() == plugin)
        .map(|s| s.suppressed)
        .unwrap_or(0)
}

pub(crate) fn relay(forward_to: Option<&str>, patterns: &[&str]) -> String {
    let events: Vec<String> = patterns.iter().map(|p| format!("{p:?}")).collect();
    let config = forward_to
        .map(|t| format!("[config]\nforward_to = \"{t}\"\n"))
        .unwrap_or_default();
    format!(
        "events = [{}]\n\n[permissions]\nrequired = [\"kv\", \"events\"]\n\n{config}",
        events.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_see_their_patterns_and_loops_between_them_stop() {
    let env = Env::new();
    add_example(&env, "audit-hook");
    add_example(&env, "echo-tool");
    env.add(
        "ping-a",
        "relay-hook",
        &manifest("ping-a", "hook", &relay(Some("ping.b"), &["ping.a"])),
    );
    env.add(
        "ping-b",
        "relay-hook",
        &manifest("ping-b", "hook", &relay(Some("ping.a"), &["ping.b"])),
    );
    env.add(
        "exact",
        "relay-hook",
        &manifest("exact", "hook", &relay(None, &["ping.a"])),
    );
    env.add(
        "errors",
        "relay-hook",
        &manifest("errors", "hook", &relay(None, &["error"])),
    );
    let sup = env.supervisor().await;
    let mut errors = sup.subscribe("error").expect("subscribe");
    assert_eq!(sup.running(), 6, "{:#?}", sup.plugins());

    // The audit hook heard every plugin load (it subscribed first).
    let loaded = eventually("loaded events", async || {
        kv_number(&sup, "audit-hook", "count:prx.lifecycle.loaded").filter(|n| *n == 6)
    })
    .await;
    assert_eq!(loaded, 6);

    // A tool call: tool.call and tool.result reach the audit hook.
    sup.call_tool("echo", r#"{"text":"hi"}"#)
        .await
        .expect("echo");
    eventually("tool events", async || {
        kv_number(&sup, "audit-hook", "count:tool.result").filter(|n| *n == 1)
    })
    .await;
    assert_eq!(kv_number(&sup, "audit-hook", "count:tool.call"), Some(1));

    // ping-a forwards to ping.b, ping-b forwards back to ping.a: one round,
    // then ping-a would hear its own echo and is not given it.
    sup.publish("ping.a", r#"{"hop":0}"#).expect("publish");
    eventually("the echo held back", async || {
        (suppressed(&sup, "ping-a") == 1).then_some(())
    })
    .await;
    // `exact` (pattern ping.a) saw both ping.a events, nothing else.
    sup.publish("ping", "{}").expect("publish");
    sup.publish("ping.a.x", "{}").expect("publish");
    sup.publish("ping.b", r#"{"fail":true}"#).expect("publish");
    eventually("exact deliveries", async || {
        kv_number(&sup, "exact", "seen").filter(|n| *n == 2)
    })
    .await;
    eventually("ping-b's deliveries", async || {
        kv_number(&sup, "ping-b", "seen").filter(|n| *n == 2)
    })
    .await;
    assert_eq!(kv_number(&sup, "exact", "seen:ping.a"), Some(2));
    assert_eq!(kv_number(&sup, "ping-a", "seen"), Some(1));
    assert_eq!(sup.events_too_deep(), 0);

    // ping-b's refusal is published as an `error` event (not to ping-b).
    let error = tokio::time::timeout(Duration::from_secs(30), errors.recv())
        .await
        .expect("an error event")
        .expect("the bus");
    let payload: Value = serde_json::from_str(&error.payload).expect("json");
    assert_eq!(payload["plugin"], "ping-b");
    assert_eq!(payload["context"], "hook");
    assert!(
        payload["message"]
            .as_str()
            .unwrap_or_default()
            .contains("refused ping.b on purpose"),
        "{payload}"
    );
    assert_eq!(&*error.chain, &[Arc::<str>::from("ping-b")]);
    eventually("the error seen by a hook", async || {
        kv_number(&sup, "errors", "seen").filter(|n| *n == 1)
    })
    .await;
    eventually("the audit hook's last error", async || {
        sup.kv_get("audit-hook", "last-error").expect("kv")
    })
    .await;
    let status = sup.plugins();
    let b = status.iter().find(|p| p.name == "ping-b").expect("ping-b");
    assert_eq!((b.events_handled, b.handler_failures), (2, 1));
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_through_many_plugins_stops_at_the_depth_limit() {
    let env = Env::new();
    for (i, next) in [
        (1, Some("hop.2")),
        (2, Some("hop.3")),
        (3, Some("hop.4")),
        (4, None),
    ] {
        let name = format!("hop-{i}");
        let topic = format!("hop.{i}");
        env.add(
            &name,
            "relay-hook",
            &manifest(&name, "hook", &relay(next, &[&topic])),
        );
    }
    let mut config = env.config();
    config.event_max_depth = 3;
    let sup = Supervisor::start(config).await.expect("start");
    sup.publish("hop.1", "{}").expect("publish");
    eventually("the drop at depth 3", async || {
        (sup.events_too_deep() == 1).then_some(())
    })
    .await;
    for (plugin, seen) in [
        ("hop-1", Some(1)),
        ("hop-2", Some(1)),
        ("hop-3", Some(1)),
        ("hop-4", None),
    ] {
        assert_eq!(kv_number(&sup, plugin, "seen"), seen, "{plugin}");
    }
    assert_eq!(suppressed(&sup, "hop-4"), 1);
    sup.shutdown().await;
}

fn tagger(plugin: &str, tag: &str, priority: Option<i64>) -> String {
    let priority = priority
        .map(|p| format!("priority = {p}\n"))
        .unwrap_or_default();
    manifest(
        plugin,
        "middleware",
        &format!(
            "{priority}\n[permissions]\nrequired = [\"kv\"]\n\n[resources]\nmax_execution_time_ms = 300\n\n[config]\ntag = \"{tag}\"\n"
        ),
    )
}

async fn trail(sup: &Supervisor, data: Value) -> Result<Vec<String>, CallError> {
    let out = sup.run_middleware("inbound", &data.to_string()).await?;
    let out: Value = serde_json::from_str(&out).expect("json");
    Ok(out["trail"]
        .as_array()
        .expect("trail")
        .iter()
        .map(|t| t.as_str().unwrap_or_default().to_owned())
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn middleware_runs_in_priority_then_name_order_and_errors_block() {
    let env = Env::new();
    // Priorities 50 (unset), 10, 50: b first, then a and c by name.
    env.add("mw-a", "tag-middleware", &tagger("mw-a", "a", None));
    env.add("mw-b", "tag-middleware", &tagger("mw-b", "b", Some(10)));
    env.add("mw-c", "tag-middleware", &tagger("mw-c", "c", Some(50)));
    let mut config = env.config();
    config.middleware_fail_open.insert("mw-c".into());
    let sup = Supervisor::start(config).await.expect("start");
    assert_eq!(
        sup.middleware_chain(),
        [
            (10, "mw-b".into()),
            (50, "mw-a".into()),
            (50, "mw-c".into())
        ]
    );
    for _ in 0..5 {
        let order = trail(&sup, json!({"text": "hi"})).await.expect("chain");
        assert_eq!(order, ["b", "a", "c"]);
    }

    // The second refuses: the caller gets its error and name; the third
    // never runs.
    let calls_c = kv_number(&sup, "mw-c", "calls");
    let err = trail(&sup, json!({"fail_at": "a"})).await.unwrap_err();
    assert!(
        matches!(&err, CallError::Blocked { plugin, .. } if plugin == "mw-a"),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "middleware `mw-a` blocked the inbound chain: a refuses at inbound"
    );
    assert_eq!(kv_number(&sup, "mw-c", "calls"), calls_c, "the third ran");

    // A crash blocks too (fail-closed) ...
    let err = trail(&sup, json!({"trap_at": "a"})).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("middleware `mw-a` blocked the inbound chain: plugin `mw-a` trapped")
            && text.ends_with("(fail-closed)"),
        "{text}"
    );
    // ... unless the operator made the plugin fail-open: then it is
    // skipped, after a crash and after a time-out alike.
    let order = trail(&sup, json!({"trap_at": "c"}))
        .await
        .expect("fail-open");
    assert_eq!(order, ["b", "a"]);
    let order = trail(&sup, json!({"stall_at": "c"}))
        .await
        .expect("fail-open");
    assert_eq!(order, ["b", "a"]);
    // An unknown stage or data that is not JSON is the caller's mistake.
    let err = sup.run_middleware("sideways", "{}").await.unwrap_err();
    assert!(
        err.to_string()
            .contains("inbound, outbound, llm_request, llm_response"),
        "{err}"
    );
    assert!(matches!(
        sup.run_middleware("inbound", "{").await,
        Err(CallError::BadRequest(_))
    ));
    sup.shutdown().await;
}

fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
        .single()
        .expect("a time")
}

fn cron_stat(sup: &Supervisor, plugin: &str) -> prx_supervisor::metrics::CronStats {
    sup.cron_jobs()
        .into_iter()
        .find(|j| j.plugin == plugin)
        .map(|j| j.stats)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_fires_on_schedule_by_a_controllable_clock_and_never_overlaps() {
    let env = Env::new();
    let job = |schedule: &str, sleep_ms: u64| {
        format!(
            "schedule = \"{schedule}\"\n\n[permissions]\nrequired = [\"kv\"]\n\n[config]\nsleep_ms = \"{sleep_ms}\"\n"
        )
    };
    env.add(
        "minutely",
        "slow-cron",
        &manifest("minutely", "cron", &job("*/1 * * * *", 0)),
    );
    env.add(
        "mondays",
        "slow-cron",
        &manifest("mondays", "cron", &job("0 9 * * 1", 0)),
    );
    env.add(
        "slow",
        "slow-cron",
        &manifest("slow", "cron", &job("*/1 * * * *", 3000)),
    );
    // Sunday 2026-11-22, 08:58:30 UTC.
    let clock = Arc::new(ManualClock::new(at(2026, 11, 22, 8, 58, 30)));
    let mut config = env.config();
    config.clock = clock.clone();
    let sup = Supervisor::start(config).await.expect("start");
    let mut completed = sup.subscribe("prx.cron.completed").expect("subscribe");
    eventually("schedules armed", async || {
        ["minutely", "mondays", "slow"]
            .iter()
            .all(|p| cron_stat(&sup, p).next.is_some())
            .then_some(())
    })
    .await;
    // 0 9 * * 1 is Monday 09:00, not Sunday's 09:00.
    assert_eq!(
        cron_stat(&sup, "mondays").next.as_deref(),
        Some("2026-11-23T09:00:00+00:00")
    );
    assert_eq!(
        cron_stat(&sup, "minutely").next.as_deref(),
        Some("2026-11-22T08:59:00+00:00")
    );

    // The first minute: `minutely` runs, and `slow` starts its long run.
    clock.advance(chrono::Duration::minutes(1));
    eventually("the first runs", async || {
        (cron_stat(&sup, "minutely").runs == 1 && kv_number(&sup, "slow", "runs") == Some(1))
            .then_some(())
    })
    .await;
    let event = completed.recv().await.expect("a completion event");
    let payload: Value = serde_json::from_str(&event.payload).expect("json");
    assert_eq!(payload["plugin"], "minutely");
    assert_eq!(payload["trigger"], "schedule");
    assert_eq!(payload["success"], true);
    assert_eq!(payload["scheduled_for"], "2026-11-22T08:59:00+00:00");

    // `slow` sleeps three seconds a run: the minutes that pass meanwhile
    // are skipped and a manual run is refused; it never runs twice at once.
    let err = sup.run_cron("slow").await.unwrap_err();
    assert!(matches!(err, CallError::Busy { .. }), "{err}");
    // Every minute for four more minutes: four more runs of `minutely`.
    for minute in 2..=5 {
        clock.advance(chrono::Duration::minutes(1));
        eventually("a minutely run", async || {
            (cron_stat(&sup, "minutely").runs == minute).then_some(())
        })
        .await;
    }
    assert_eq!(kv_number(&sup, "minutely", "runs"), Some(5));
    let slow = cron_stat(&sup, "slow");
    assert!(slow.skipped >= 1, "{slow:?}");
    assert_eq!(
        kv_number(&sup, "slow", "runs"),
        Some(1),
        "a second run started"
    );
    eventually("the slow run's end", async || {
        (cron_stat(&sup, "slow").runs == 1).then_some(())
    })
    .await;
    assert_eq!(cron_stat(&sup, "mondays").runs, 0, "fired on a Sunday");

    // Monday 09:00 comes: `mondays` runs once, and then waits a week.
    clock.set(at(2026, 11, 23, 9, 0, 0));
    eventually("the Monday run", async || {
        (cron_stat(&sup, "mondays").runs == 1).then_some(())
    })
    .await;
    eventually("the next Monday", async || {
        cron_stat(&sup, "mondays")
            .next
            .filter(|n| n == "2026-11-30T09:00:00+00:00")
    })
    .await;

    // Run now, off schedule.
    let out = sup.run_cron("mondays").await.expect("run now");
    assert_eq!(out, "run 2");
    assert!(matches!(
        sup.run_cron("minutelyy").await,
        Err(CallError::NotFound { .. })
    ));
    sup.shutdown().await;
}

fn user(text: &str) -> Vec<ChatMessage> {
    vec![ChatMessage {
        role: "user".into(),
        content: text.into(),
    }]
}

/// The example plugins, with kv-memory as the memory backend.
fn examples_env() -> (Env, SupervisorConfig) {
    let env = Env::new();
    for name in [
        "audit-hook",
        "content-filter",
        "hourly-report",
        "mock-provider",
        "kv-memory",
        "stats-module",
        "echo-tool",
    ] {
        add_example(&env, name);
    }
    env.add(
        "bus",
        "bus-tool",
        &common::tool_manifest("bus", "bus", "[permissions]\nrequired = [\"memory\"]\n"),
    );
    let mut config = env.config();
    config.memory_backend = Some("kv-memory".into());
    (env, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_answers_through_the_library() {
    let (_env, config) = examples_env();
    let sup = Supervisor::start(config).await.expect("start");
    assert_eq!(sup.running(), 8, "{:#?}", sup.plugins());

    // middleware: content-filter marks what it lets through, blocks the rest.
    let out = sup
        .run_middleware("inbound", r#"{"text":"hello"}"#)
        .await
        .expect("inbound");
    let out: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(out["processed_by"], "content-filter/0.1.0");
    let err = sup
        .run_middleware("inbound", r#"{"text":"this is forbidden"}"#)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "middleware `content-filter` blocked the inbound chain: content policy violation: \"forbidden\" is not allowed"
    );

    // provider: mock-llm, by its manifest name.
    let reply = sup
        .chat("mock-llm", user("hello"), "small", 0.2)
        .await
        .expect("chat");
    assert_eq!(reply.text.as_deref(), Some("[mock small] hello"));
    let reply = sup
        .chat("mock-llm", user(r#"call echo {"text":"x"}"#), "m", 0.2)
        .await
        .expect("chat");
    assert_eq!(reply.tool_calls[0].name, "echo");
    let err = sup.chat("mock-llm", vec![], "m", 0.2).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("plugin `mock-provider` refused the chat: no user message"),
        "{err}"
    );
    let err = sup.chat("gpt", user("hi"), "m", 0.2).await.unwrap_err();
    assert_eq!(err.to_string(), "no provider named `gpt`; loaded: mock-llm");

    // cron: run now.
    assert_eq!(
        sup.run_cron("hourly-report").await.expect("run"),
        "report #1 done"
    );

    // storage: the library's memory and plugins' memory calls both reach
    // kv-memory (its kv holds them).
    let key = sup
        .store_memory("the deploy key rotates on mondays", "fact")
        .await
        .expect("store");
    assert!(
        sup.kv_get("kv-memory", &format!("mem:{key}"))
            .expect("kv")
            .is_some()
    );
    let stored = sup
        .call_tool(
            "bus",
            r#"{"op":"remember","text":"staging runs on tuesdays","category":"fact"}"#,
        )
        .await
        .expect("remember");
    let stored: Value = serde_json::from_str(&stored).expect("json");
    let plugin_key = stored["ok"].as_str().expect("a key").to_owned();
    assert!(
        sup.kv_get("kv-memory", &format!("mem:{plugin_key}"))
            .expect("kv")
            .is_some()
    );
    let found = sup.recall_memory("deploy key", 5).await.expect("recall");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, key);
    assert_eq!(found[0].text, "the deploy key rotates on mondays");
    let recalled = sup
        .call_tool("bus", r#"{"op":"recall","query":"staging","limit":5}"#)
        .await
        .expect("recall");
    assert!(recalled.contains("staging runs on tuesdays"), "{recalled}");
    assert_eq!(sup.count_memories().await.expect("count"), 2);
    assert!(sup.forget_memory(&key).await.expect("forget"));
    assert_eq!(sup.count_memories().await.expect("count"), 1);

    // module: RPCs, the cache, event handlers, describe.
    let out = sup
        .rpc("stats.summary", r#"{"values":[1,2,3,6]}"#)
        .await
        .expect("rpc");
    let out: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        (out["mean"].as_f64(), out["count"].as_u64()),
        (Some(3.0), Some(4))
    );
    sup.rpc("stats.summary", r#"{"values":[1,2,3,6]}"#)
        .await
        .expect("rpc");
    sup.publish("prices.ABC", r#"{"price":12.5}"#)
        .expect("publish");
    let price = eventually("the price in the cache", async || {
        let out = sup
            .rpc("stats.last_price", r#"{"symbol":"ABC"}"#)
            .await
            .expect("rpc");
        (out != "null").then_some(out)
    })
    .await;
    assert_eq!(price, r#"{"price":12.5}"#);
    let modules = sup.describe_modules().await;
    assert_eq!(modules.len(), 1);
    assert_eq!(modules[0].status.as_deref(), Some("LOADED"));
    assert_eq!(
        modules[0].rpcs,
        ["stats.summary", "stats.last_price", "stats.clear"]
    );
    let stat = |name: &str| {
        modules[0]
            .stats
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(stat("cache_hits").as_deref(), Some("1"));
    assert_eq!(stat("prices_seen").as_deref(), Some("1"));
    let cleared = sup.rpc("stats.clear", "{}").await.expect("clear");
    assert_eq!(cleared, r#"{"removed":1}"#);
    let err = sup.rpc("stats.median", "{}").await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("no RPC named `stats.median`; loaded: "),
        "{err}"
    );
    let err = sup
        .rpc("stats.summary", r#"{"values":[]}"#)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin `stats-module` refused the RPC `stats.summary`: \"values\" is empty"
    );

    // hook: the audit hook counted lifecycle and tool events all along.
    eventually("the audit counts", async || {
        kv_number(&sup, "audit-hook", "count:tool.result").filter(|n| *n >= 2)
    })
    .await;
    assert_eq!(
        kv_number(&sup, "audit-hook", "count:prx.lifecycle.loaded"),
        Some(8)
    );
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_storage_backend_is_an_error_never_a_silent_loss() {
    let env = Env::new();
    env.add(
        "faulty",
        "storage-faults",
        &manifest(
            "faulty",
            "storage",
            "name = \"faulty\"\n\n[permissions]\nrequired = [\"kv\"]\n",
        ),
    );
    let mut config = env.config();
    config.memory_backend = Some("faulty".into());
    config.storage_health_interval = Duration::from_millis(200);
    let sup = Supervisor::start(config).await.expect("start");
    let kept = sup
        .store_memory("kept through it all", "fact")
        .await
        .expect("store");

    // The backend refuses: the caller is told, naming it.
    let err = sup.store_memory("!error", "fact").await.unwrap_err();
    assert_eq!(
        err,
        "the memory backend `faulty` (plugin `faulty`) refused: the backend refused the write"
    );
    // It reports itself unhealthy: calls fail at once, then work again
    // once it is healthy.
    sup.store_memory("!unhealthy", "").await.expect("store");
    let err = eventually("an unhealthy backend", async || {
        sup.store_memory("while unhealthy", "fact").await.err()
    })
    .await;
    assert!(err.contains("reports itself unhealthy"), "{err}");
    // Refused while unhealthy: never stored (the plugin was not called).
    let err = sup
        .store_memory("refused while unhealthy", "fact")
        .await
        .unwrap_err();
    assert!(err.contains("reports itself unhealthy"), "{err}");
    eventually("a healthy backend", async || {
        sup.store_memory("after recovery", "fact").await.ok()
    })
    .await;
    // It crashes: the call fails; what it stored before is still there
    // once it is back.
    let err = sup.store_memory("!trap", "fact").await.unwrap_err();
    assert!(
        err.starts_with("the memory backend `faulty` failed: plugin `faulty`"),
        "{err}"
    );
    let found = eventually("the backend back", async || {
        sup.recall_memory("kept", 5).await.ok()
    })
    .await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, kept);
    let refused = sup.recall_memory("refused", 5).await.expect("recall");
    assert!(
        refused.is_empty(),
        "a refused write was stored: {refused:?}"
    );
    sup.shutdown().await;

    // A backend that is not loaded at all is an error too, not the
    // built-in store.
    let env = Env::new();
    let mut config = env.config();
    config.memory_backend = Some("missing".into());
    let sup = Supervisor::start(config).await.expect("start");
    let err = sup.store_memory("anything", "fact").await.unwrap_err();
    assert!(
        err.starts_with("the memory backend `missing` is not loaded"),
        "{err}"
    );
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_names_are_unique_across_plugins() {
    let env = Env::new();
    let module = manifest(
        "stats-a",
        "module",
        "\n[permissions]\nrequired = [\"kv\", \"events\"]\n",
    );
    env.add("stats-a", "stats-module", &module);
    env.add(
        "stats-b",
        "stats-module",
        &module.replace("stats-a", "stats-b"),
    );
    let sup = env.supervisor().await;
    let status = sup.plugins();
    let b = status
        .iter()
        .find(|p| p.name == "stats-b")
        .expect("stats-b");
    assert_eq!(b.state, StateKind::Failed);
    let error = b.error.as_deref().unwrap_or_default();
    assert!(
        error.contains("registers the RPC `stats.summary`, which plugin `stats-a` already serves"),
        "{error}"
    );
    // The first keeps serving.
    sup.rpc("stats.summary", r#"{"values":[2]}"#)
        .await
        .expect("rpc");
    sup.shutdown().await;
}

#[test]
fn operators_drive_every_capability_from_the_cli() {
    let (env, _) = examples_env();
    let config = env.state().with_file_name("prx.toml");
    std::fs::write(&config, "[memory]\nbackend = \"kv-memory\"\n").expect("config");
    let daemon = Daemon::start_with(&env, &["--config", config.to_str().expect("utf-8")]);
    let ok = |args: &[&str]| {
        let out = daemon.cli(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out)
    };
    let out = ok(&["middleware", "inbound", r#"{"text":"hello"}"#]);
    assert!(
        out.contains("\"processed_by\":\"content-filter/0.1.0\""),
        "{out}"
    );
    let blocked = daemon.cli(&["middleware", "inbound", r#"{"text":"forbidden"}"#]);
    assert!(!blocked.status.success());
    assert!(
        stderr(&blocked).contains("middleware `content-filter` blocked"),
        "{}",
        stderr(&blocked)
    );
    let out = ok(&[
        "chat",
        "mock-llm",
        r#"[{"role":"user","content":"hello"}]"#,
        "--model",
        "small",
    ]);
    assert_eq!(out.trim(), "[mock small] hello");
    let out = ok(&["rpc", "stats.summary", r#"{"values":[1,3]}"#]);
    assert!(out.contains("\"mean\":2.0"), "{out}");
    let out = ok(&["cron", "run", "hourly-report"]);
    assert_eq!(out.trim(), "report #1 done");
    let out = ok(&["cron"]);
    assert!(
        out.contains("hourly-report") && out.contains("0 * * * *"),
        "{out}"
    );
    let out = ok(&["modules"]);
    assert!(out.contains("stats-module (running): LOADED"), "{out}");
    let out = ok(&["memory", "store", "the deploy key rotates on mondays"]);
    assert!(out.starts_with("stored memory mem-"), "{out}");
    let out = ok(&["memory", "recall", "deploy key"]);
    assert!(out.contains("the deploy key rotates on mondays"), "{out}");
    let out = ok(&["kv", "get", "audit-hook", "count:prx.lifecycle.loaded"]);
    assert_eq!(out.trim(), "8", "the audit hook counts every plugin loaded");
    let out = ok(&["memory", "count"]);
    assert!(
        out.starts_with("1 memories (backend: \"kv-memory\")"),
        "{out}"
    );

    // `events tail` follows the bus live.
    let mut tail = std::process::Command::new(bin("prx"))
        .args(["events", "tail", "audit.*", "--count", "1", "--state"])
        .arg(&daemon.state)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("tail");
    // Publish until the tail has subscribed and printed one event.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        ok(&["publish", "audit.note", r#"{"n":1}"#]);
        if let Some(status) = tail.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "prx events tail printed nothing");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
    let mut printed = String::new();
    std::io::Read::read_to_string(&mut tail.stdout.take().expect("stdout"), &mut printed)
        .expect("read");
    let event: Value = serde_json::from_str(printed.trim()).expect("a JSON line");
    assert_eq!(event["topic"], "audit.note");
    assert_eq!(event["payload"]["n"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_pipelined_into_one_worker_each_get_their_host_calls_answered() {
    let env = Env::new();
    add_example(&env, "visit-counter");
    let sup = env.supervisor().await;
    // Sixteen calls at once into one worker, each making host calls while
    // the next ones are already queued behind it.
    let calls = (0..16).map(|_| {
        let sup = sup.clone();
        tokio::spawn(async move { sup.call_tool("visit", r#"{"name":"ada"}"#).await })
    });
    let mut counts = Vec::new();
    for call in calls {
        let out = call.await.expect("join").expect("visit");
        let count: u32 = out
            .split_whitespace()
            .nth(3)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{out}"));
        counts.push(count);
    }
    counts.sort_unstable();
    assert_eq!(counts, (1..=16).collect::<Vec<u32>>());
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_events_follow_a_plugin_from_load_to_quarantine_and_release() {
    let env = Env::new();
    env.add(
        "faulty",
        "faulty-tool",
        &common::tool_manifest("faulty", "faulty", ""),
    );
    let mut config = env.config();
    config.test_abort_marker = Some("prx-test-abort".into());
    config.restart.max_crashes = 1;
    config.restart.backoff_initial = Duration::from_millis(10);
    let sup = Supervisor::start(config).await.expect("start");
    let mut lifecycle = sup.subscribe("prx.lifecycle.*").expect("subscribe");
    // Crash, restart, crash again: quarantined. Each wait is for the
    // supervisor to have acted on the crash, not just for a state that the
    // plugin also has before it noticed.
    let _ = sup.call_tool("faulty", r#"{"mode":"crash"}"#).await;
    eventually("a restarted worker", async || {
        let plugin = &sup.plugins()[0];
        (plugin.state == StateKind::Running && plugin.restarts >= 1).then_some(())
    })
    .await;
    let _ = sup.call_tool("faulty", r#"{"mode":"crash"}"#).await;
    eventually("quarantine", async || {
        (sup.plugins()[0].state == StateKind::Quarantined).then_some(())
    })
    .await;
    sup.release("faulty").await.expect("release");
    sup.shutdown().await;
    let mut topics = Vec::new();
    while let Some(event) = lifecycle.try_recv() {
        let payload: Value = serde_json::from_str(&event.payload).expect("json");
        assert_eq!(payload["plugin"], "faulty", "{payload}");
        topics.push(event.topic.to_string());
    }
    assert_eq!(
        topics,
        [
            "prx.lifecycle.crashed",
            "prx.lifecycle.restarted",
            "prx.lifecycle.crashed",
            "prx.lifecycle.quarantined",
            "prx.lifecycle.released",
            "prx.lifecycle.unloaded",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_directory_with_a_hooks_name_adds_no_subscription_to_it() {
    let env = Env::new();
    env.add(
        "a-first",
        "relay-hook",
        &manifest("dup", "hook", &relay(None, &["a.one"])),
    );
    env.add(
        "b-second",
        "relay-hook",
        &manifest("dup", "hook", &relay(None, &["b.*"])),
    );
    let sup = env.supervisor().await;
    let failure = sup.failures();
    assert_eq!(failure.len(), 1);
    assert!(
        failure[0]
            .error
            .contains("plugin name `dup` is already used"),
        "{failure:?}"
    );
    let stats = sup.event_stats();
    let dup = stats
        .iter()
        .find(|s| s.owner.to_string() == "dup")
        .expect("dup subscribes");
    let patterns: Vec<&str> = dup.patterns.iter().map(|(_, p)| p.as_str()).collect();
    assert_eq!(patterns, ["a.one"]);
    sup.shutdown().await;
}
