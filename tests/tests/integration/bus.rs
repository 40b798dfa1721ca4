//! Events, memory, config and logs through real workers: what a plugin
//! publishes reaches the library's subscribers, what it may not publish is
//! refused, its memories are recalled by relevance, and its log flood is
//! cut by the supervisor.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Daemon, Env, op, stderr, stdout, tool_manifest};
use prx_supervisor::Supervisor;
use prx_supervisor::manifest::Permission;
use serde_json::{Value, json};

fn bus_manifest(plugin: &str, tool: &str) -> String {
    tool_manifest(
        plugin,
        tool,
        "[permissions]\noptional = [\"events\", \"memory\"]\n\n[config]\ngreeting = \"hello\"\n",
    )
}

async fn started(env: &Env) -> Supervisor {
    let mut config = env.config();
    config.ephemeral_kv = true;
    Supervisor::start(config).await.expect("supervisor starts")
}

#[tokio::test]
async fn plugin_events_reach_library_subscribers_and_bad_ones_are_refused() {
    let env = Env::new();
    env.add("bus", "bus-tool", &bus_manifest("bus", "bus"));
    let sup = started(&env).await;
    let mut all = sup.subscribe("*").unwrap();
    let mut mine = sup.subscribe("weather.*").unwrap();

    let ok = op(
        &sup,
        "bus",
        json!({"op":"publish","topic":"weather.paris","payload":"{\"rain\":true}"}),
    )
    .await;
    assert_eq!(ok, json!({"ok": null}));
    let event = tokio::time::timeout(Duration::from_secs(5), mine.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&*event.topic, "weather.paris");
    assert_eq!(&*event.payload, "{\"rain\":true}");
    assert_eq!(
        event.source.as_deref(),
        Some("bus"),
        "the source is the plugin"
    );

    // Exactly 64 KiB passes; one byte more, invalid JSON and host topics
    // are refused with the reason, and nothing is delivered for them.
    let fits = op(
        &sup,
        "bus",
        json!({"op":"publish","topic":"big.one","size":65536}),
    )
    .await;
    assert_eq!(fits, json!({"ok": null}));
    let refusals = [
        (
            json!({"op":"publish","topic":"big.two","size":65537}),
            "events.publish: payload of 65537 bytes is larger than the 64 KiB maximum",
        ),
        (
            json!({"op":"publish","topic":"a.b","payload":"{nope"}),
            "events.publish: payload is not valid JSON",
        ),
        (
            json!({"op":"publish","topic":"prx.lifecycle.loaded","payload":"{}"}),
            "events.publish: topic \"prx.lifecycle.loaded\" is reserved to the host (prx.*)",
        ),
        (
            json!({"op":"publish","topic":"a..b","payload":"{}"}),
            "events.publish: invalid topic \"a..b\"",
        ),
    ];
    for (args, why) in refusals {
        let err = op(&sup, "bus", args.clone()).await;
        let text = err["err"].as_str().unwrap_or_default();
        assert!(text.starts_with(why), "{args}: {err}");
    }
    // What the plugin published, among the host's own tool events.
    let topics: Vec<String> = std::iter::from_fn(|| all.try_recv())
        .map(|e| e.topic.to_string())
        .filter(|t| !t.starts_with("tool."))
        .collect();
    assert_eq!(topics, ["weather.paris", "big.one"]);

    // The host may publish its own topics.
    sup.publish("prx.test.ping", "{}").unwrap();
    assert_eq!(&*all.recv().await.unwrap().topic, "prx.test.ping");
    sup.shutdown().await;
}

#[tokio::test]
async fn plugins_own_their_subscriptions() {
    let env = Env::new();
    env.add("one", "bus-tool", &bus_manifest("one", "bus1"));
    env.add("two", "bus-tool", &bus_manifest("two", "bus2"));
    let sup = started(&env).await;
    let id1 = op(&sup, "bus1", json!({"op":"subscribe","pattern":"tool.*"})).await["ok"]
        .as_u64()
        .unwrap();
    let id2 = op(&sup, "bus2", json!({"op":"subscribe","pattern":"*"})).await["ok"]
        .as_u64()
        .unwrap();
    let bad = op(&sup, "bus1", json!({"op":"subscribe","pattern":"a.*.b"})).await;
    assert!(
        bad["err"].as_str().unwrap().contains("invalid pattern"),
        "{bad}"
    );

    // One cannot remove the other's subscription, nor a made-up one.
    for id in [id2, 999_999] {
        let err = op(&sup, "bus1", json!({"op":"unsubscribe","id":id})).await;
        assert_eq!(
            err["err"],
            format!("events.unsubscribe: no subscription {id} belongs to this plugin")
        );
    }
    let owners: BTreeSet<String> = sup
        .event_stats()
        .iter()
        .map(|s| s.owner.to_string())
        .collect();
    assert_eq!(owners, BTreeSet::from(["one".into(), "two".into()]));
    assert_eq!(
        op(&sup, "bus1", json!({"op":"unsubscribe","id":id1})).await,
        json!({"ok": null})
    );
    let stats = sup.event_stats();
    let one = stats.iter().find(|s| s.owner.to_string() == "one").unwrap();
    assert!(one.patterns.is_empty(), "{stats:?}");
    let two = stats.iter().find(|s| s.owner.to_string() == "two").unwrap();
    assert_eq!(two.patterns, [(id2, "*".to_owned())]);
    sup.shutdown().await;
}

#[tokio::test]
async fn memory_recall_ranks_the_best_match_first() {
    let env = Env::new();
    env.add("one", "bus-tool", &bus_manifest("one", "bus1"));
    env.add("two", "bus-tool", &bus_manifest("two", "bus2"));
    let sup = started(&env).await;
    let texts = [
        ("bus1", "The weather in Paris is rainy", "note"),
        ("bus2", "Paris is the capital of France", "fact"),
        ("bus1", "Berlin is the capital of Germany", "fact"),
    ];
    let mut ids = Vec::new();
    for (tool, text, category) in texts {
        let stored = op(
            &sup,
            tool,
            json!({"op":"remember","text":text,"category":category}),
        )
        .await;
        ids.push(stored["ok"].as_str().expect("an id").to_owned());
    }
    let found = op(
        &sup,
        "bus1",
        json!({"op":"recall","query":"capital of France","limit":5}),
    )
    .await;
    let found = found["ok"].as_array().expect("entries").clone();
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0]["id"], ids[1].as_str());
    assert_eq!(found[0]["text"], "Paris is the capital of France");
    assert_eq!(found[0]["category"], "fact");
    assert_eq!(found[0]["importance"], 1.0);
    assert_eq!(found[1]["id"], ids[2].as_str());
    assert!(found[1]["importance"].as_f64().unwrap() < 1.0);

    // The library sees the same store, and which plugin stored what.
    let recalled = sup.recall_memory("rainy weather", 1).await.unwrap();
    assert_eq!(recalled[0].plugin.as_deref(), Some("one"));
    sup.store_memory("rainy days in Rome", "note")
        .await
        .unwrap();
    let recalled = sup.recall_memory("rainy weather", 2).await.unwrap();
    assert_eq!(recalled.len(), 2);
    sup.shutdown().await;
}

#[tokio::test]
async fn optional_permissions_refused_by_policy_fail_the_calls() {
    let env = Env::new();
    env.add("bus", "bus-tool", &bus_manifest("bus", "bus"));
    let mut config = env.config();
    config.ephemeral_kv = true;
    config.permissions.default = Some(BTreeSet::from([Permission::Kv]));
    let sup = Supervisor::start(config).await.unwrap();
    let cases = [
        (
            json!({"op":"publish","topic":"a.b","payload":"{}"}),
            "events",
        ),
        (json!({"op":"subscribe","pattern":"*"}), "events"),
        (json!({"op":"remember","text":"t","category":""}), "memory"),
        (json!({"op":"recall","query":"t"}), "memory"),
    ];
    for (args, permission) in cases {
        assert_eq!(
            op(&sup, "bus", args).await,
            json!({"err": format!("permission denied: {permission}")})
        );
    }
    // Config is always granted, and comes from the manifest.
    assert_eq!(
        op(&sup, "bus", json!({"op":"config","key":"greeting"})).await,
        json!({"ok": "hello"})
    );
    assert_eq!(
        op(&sup, "bus", json!({"op":"config"})).await,
        json!({"ok": [["greeting", "hello"]]})
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn a_log_flood_is_cut_and_counted() {
    let env = Env::new();
    env.add("bus", "bus-tool", &bus_manifest("bus", "bus"));
    let sup = started(&env).await;
    // At `error`, which passes the worker's level filter even when the
    // supervisor logs nothing (no tracing subscriber in tests).
    let flood = json!({"op":"flood","lines":20000,"level":"error"});
    let flooded = op(&sup, "bus", flood).await;
    assert_eq!(flooded, json!({"ok": 20000}));
    let status = sup.plugins().into_iter().find(|p| p.name == "bus").unwrap();
    // The burst (500) and whatever the rate (100/s) earned while the call
    // ran got through; the rest was dropped and counted.
    assert!(
        (19_000..=19_500).contains(&status.log_dropped),
        "{} dropped",
        status.log_dropped
    );
    // The plugin is not punished: it keeps working.
    assert_eq!(
        op(&sup, "bus", json!({"op":"config","key":"greeting"})).await,
        json!({"ok": "hello"})
    );
    sup.shutdown().await;
}

#[test]
fn operators_publish_and_see_the_bus_from_the_cli() {
    let env = Env::new();
    env.add(
        "visit-counter",
        "visit-counter",
        &std::fs::read_to_string(
            std::path::Path::new(env!("PRX_ROOT"))
                .join("plugins/examples/visit-counter/plugin.toml"),
        )
        .unwrap(),
    );
    let daemon = Daemon::start(&env);
    let out = daemon.cli(&["publish", "ops.note", r#"{"hello":"world"}"#]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("published ops.note (event "),
        "{}",
        stdout(&out)
    );

    let out = daemon.cli(&["publish", "ops.note", "{broken"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("payload is not valid JSON"),
        "{}",
        stderr(&out)
    );
    let out = daemon.cli(&["publish", "bad topic", "{}"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("invalid topic"), "{}", stderr(&out));

    // The example counts a visit in kv and publishes it.
    let out = daemon.cli(&["call", "visit", r#"{"name":"ada"}"#]);
    assert_eq!(
        stdout(&out).trim(),
        "ada has visited 1 time (last visitor: nobody)",
        "{}",
        stderr(&out)
    );
    // The plugin's load, ops.note and visit-counter.visited (the host
    // builds tool.call and tool.result only for a subscriber).
    let out = daemon.cli(&["events"]);
    let published: u64 = stdout(&out)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_default();
    assert_eq!(published, 3, "{}", stdout(&out));

    let out = daemon.cli(&["memory", "store", "the deploy key rotates on mondays"]);
    assert!(
        stdout(&out).starts_with("stored memory "),
        "{}",
        stderr(&out)
    );
    let out = daemon.cli(&["memory", "recall", "when does the key rotate"]);
    assert!(
        stdout(&out).contains("the deploy key rotates on mondays"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn the_permission_policy_comes_from_the_config_file() {
    let env = Env::new();
    env.add(
        "needs-kv",
        "kv-tool",
        &tool_manifest("needs-kv", "kv", "[permissions]\nrequired = [\"kv\"]\n"),
    );
    env.add("bus", "bus-tool", &bus_manifest("bus", "bus"));
    let config = env.state().with_file_name("prx.toml");
    std::fs::write(
        &config,
        "[permissions]\ndefault = [\"memory\"]\n\n[kv]\nephemeral = true\n",
    )
    .unwrap();
    let config = config.to_str().unwrap().to_owned();
    let daemon = Daemon::start_with(&env, &["--config", &config]);

    let plugins = stdout(&daemon.cli(&["plugins"]));
    assert!(
        plugins.contains(
            "plugin `needs-kv` requires permission `kv`, which the operator's policy does not allow for it"
        ),
        "{plugins}"
    );
    let call = |args: Value| {
        let out = daemon.cli(&["call", "bus", &args.to_string()]);
        serde_json::from_str::<Value>(stdout(&out).trim()).expect("json")
    };
    assert_eq!(
        call(json!({"op":"publish","topic":"a.b","payload":"{}"})),
        json!({"err": "permission denied: events"})
    );
    let stored = call(json!({"op":"remember","text":"allowed by the file","category":""}));
    assert!(stored["ok"].is_string(), "{stored}");
}
