//! Supervisors that form one cluster over a real `nats-server` the test
//! starts: events reach each plugin once wherever it runs, calls reach a
//! plugin on another node, a replicated plugin survives one of its nodes
//! being killed with `kill -9`, a JetStream kv counter loses no increment
//! from two nodes at once nor across a restart of the NATS server, and the
//! loop guard holds between nodes.

use std::sync::Arc;
use std::time::Duration;

use prx_ipc::ChatMessage;
use prx_supervisor::cluster::ClusterConfig;
use prx_supervisor::config::KvBackend;
use prx_supervisor::{CallError, Supervisor};
use serde_json::{Value, json};

use crate::common::nats::Nats;
use crate::common::{Daemon, Env, Launch, eventually, tool_manifest};

/// A node's settings: a fast heartbeat (so a node is seen, and a gone one
/// forgotten, within a second) and a short call timeout.
fn cluster(nats: &Nats, node: &str) -> ClusterConfig {
    let mut config = ClusterConfig::new(&nats.url());
    config.node = node.into();
    config.heartbeat = Duration::from_millis(200);
    config.call_timeout = Duration::from_secs(5);
    config
}

async fn node(env: &Env, nats: &Nats, name: &str, kv: KvBackend) -> Supervisor {
    let mut config = env.config();
    config.cluster = Some(cluster(nats, name));
    config.kv_backend = kv;
    Supervisor::start(config).await.expect("node starts")
}

/// Waits until `sup` sees `plugin` serving on `nodes` nodes.
async fn sees(sup: &Supervisor, plugin: &str, nodes: usize) {
    eventually(&format!("{plugin} on {nodes} node(s)"), async || {
        let view = sup.cluster_view().expect("in a cluster");
        let running = view
            .nodes
            .iter()
            .filter(|n| n.alive)
            .filter(|n| {
                n.plugins
                    .iter()
                    .any(|p| p.name == plugin && p.state == "running")
            })
            .count();
        (running == nodes).then_some(())
    })
    .await;
    // The subscriptions go with the heartbeat that announced them; one
    // more heartbeat and they are surely in place.
    tokio::time::sleep(Duration::from_millis(400)).await;
}

/// The relay hook's manifest, as the capabilities tests write it.
fn hook(plugin: &str, patterns: &[&str], forward_to: Option<&str>) -> String {
    use crate::capabilities::{manifest, relay};
    manifest(plugin, "hook", &relay(forward_to, patterns))
}

fn middleware(plugin: &str, tag: &str, priority: i64) -> String {
    format!(
        "[plugin]\nname = \"{plugin}\"\nversion = \"0.1.0\"\nwasm = \"plugin.wasm\"\n\n[[capabilities]]\ntype = \"middleware\"\npriority = {priority}\n\n[permissions]\nrequired = [\"kv\"]\n\n[config]\ntag = \"{tag}\"\n"
    )
}

fn kv_tool() -> String {
    tool_manifest(
        "kv-tool",
        "kv",
        "[permissions]\nrequired = [\"kv\"]\n\n[resources]\nmax_execution_time_ms = 30000\nmax_kv_storage_kb = 512\n",
    )
}

/// A kv value of a plugin as a number, read through `sup` (the embedded
/// store or JetStream, whichever holds it).
async fn number(sup: &Supervisor, plugin: &str, key: &str) -> Option<i64> {
    sup.kv_read(plugin, key)
        .await
        .expect("kv")
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|t| t.parse().ok())
}

async fn increment(sup: &Supervisor, key: &str) -> Result<i64, String> {
    let args = json!({"op": "increment", "key": key}).to_string();
    let out = sup
        .call_tool("kv", &args)
        .await
        .map_err(|e| e.to_string())?;
    let out: Value = serde_json::from_str(&out).expect("json");
    out["ok"].as_i64().ok_or_else(|| out["err"].to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_each_plugin_once_and_calls_reach_plugins_on_other_nodes() {
    let nats = Nats::start();
    let (a, b, c) = (Env::new(), Env::new(), Env::new());
    // `counter` runs on B and C, counting in JetStream (one count for
    // both copies); `other` on C alone.
    for env in [&b, &c] {
        env.add(
            "counter",
            "relay-hook",
            &hook("counter", &["orders.*"], None),
        );
    }
    c.add("other", "relay-hook", &hook("other", &["orders.*"], None));
    b.add_example("echo-tool");
    b.add("mw-b", "tag-middleware", &middleware("mw-b", "b", 20));
    c.add_example("stats-module");
    c.add_example("mock-provider");
    a.add("mw-a", "tag-middleware", &middleware("mw-a", "a", 10));

    let node_a = node(&a, &nats, "node-a", KvBackend::JetStream).await;
    let mut lifecycle = node_a.subscribe("prx.lifecycle.*").expect("subscribe");
    let node_b = node(&b, &nats, "node-b", KvBackend::JetStream).await;
    let node_c = node(&c, &nats, "node-c", KvBackend::JetStream).await;
    sees(&node_a, "counter", 2).await;
    sees(&node_a, "other", 1).await;
    sees(&node_a, "mw-b", 1).await;

    // Host events of another node reach this node's host subscribers,
    // with their node.
    let loaded = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let event = lifecycle.recv().await.expect("an event");
            let payload: Value = serde_json::from_str(&event.payload).expect("json");
            if payload["node"] == "node-b" {
                return payload;
            }
        }
    })
    .await
    .expect("a lifecycle event of node-b");
    assert!(loaded["plugin"].is_string(), "{loaded}");

    // 20 events published on A: the replicated hook counts each once,
    // across its two copies; `other` once each too.
    for i in 0..20 {
        node_a
            .publish("orders.created", &json!({ "n": i }).to_string())
            .expect("publish");
    }
    for plugin in ["counter", "other"] {
        eventually(&format!("{plugin} heard 20 events"), async || {
            (number(&node_a, plugin, "seen").await == Some(20)).then_some(())
        })
        .await;
    }
    // ... and no more, however long one waits for a second copy.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(number(&node_a, "counter", "seen").await, Some(20));
    assert_eq!(number(&node_c, "other", "seen").await, Some(20));
    let (served_b, served_c) = (handled(&node_b, "counter"), handled(&node_c, "counter"));
    assert_eq!(
        served_b + served_c,
        20,
        "each event once: {served_b} on B, {served_c} on C"
    );

    // A tool on B answers a call made on A; a tool nowhere says so.
    let out = node_a
        .call_tool("echo", r#"{"text":"across"}"#)
        .await
        .expect("echo through node-b");
    assert_eq!(out, "across");
    let error = node_a
        .call_tool("nowhere", "{}")
        .await
        .expect_err("no such tool");
    assert!(matches!(error, CallError::NotInCluster { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with("no tool named `nowhere` on any node of the cluster"),
        "{error}"
    );
    assert_eq!(error.kind(), "unknown_tool");
    // A failure there comes back as that node's error, naming it.
    let error = node_a
        .call_tool("echo", "not json")
        .await
        .expect_err("bad args");
    assert!(error.to_string().ends_with("(on node node-b)"), "{error}");

    // RPC and chat to C, middleware across A and B, all from A.
    let out = node_a
        .rpc("stats.summary", r#"{"values":[1,2,3,6]}"#)
        .await
        .expect("rpc on node-c");
    assert_eq!(
        serde_json::from_str::<Value>(&out).expect("json")["mean"],
        3.0
    );
    let user = vec![ChatMessage {
        role: "user".into(),
        content: "hello".into(),
    }];
    let reply = node_a
        .chat("mock-llm", user, "small", 0.2)
        .await
        .expect("chat");
    assert_eq!(reply.text.as_deref(), Some("[mock small] hello"));
    assert_eq!(
        node_a.middleware_chain(),
        vec![(10, "mw-a".to_owned()), (20, "mw-b".to_owned())]
    );
    let out = node_a.run_middleware("inbound", "{}").await.expect("chain");
    assert_eq!(
        serde_json::from_str::<Value>(&out).expect("json")["trail"],
        json!(["a", "b"])
    );
    let blocked = node_a
        .run_middleware("inbound", r#"{"fail_at":"b"}"#)
        .await
        .expect_err("b refuses");
    assert!(
        matches!(&blocked, CallError::Blocked { plugin, .. } if plugin == "mw-b"),
        "{blocked:?}"
    );

    // Operators see it: nodes, plugins, calls per node, in /metrics too.
    let view = node_a.cluster_view().expect("view");
    let out_to_b = view
        .calls
        .iter()
        .find(|c| c.direction == "out" && c.peer == "node-b")
        .expect("calls to node-b");
    // echo and mw-b's step went through; the bad arguments and mw-b's
    // refusal failed there.
    assert_eq!((out_to_b.ok, out_to_b.failed), (2, 2), "{out_to_b:?}");
    let metrics = prx_supervisor::api::exposition::render(&node_a);
    assert!(
        metrics
            .contains("prx_cluster_calls_total{direction=\"out\",peer=\"node-b\",result=\"ok\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("prx_cluster_node_up{node=\"node-c\"} 1"),
        "{metrics}"
    );

    for node in [&node_a, &node_b, &node_c] {
        node.shutdown().await;
    }
}

/// Events a plugin's handler was given on this node.
fn handled(sup: &Supervisor, plugin: &str) -> u64 {
    sup.event_stats()
        .iter()
        .find(|s| s.owner.to_string() == plugin)
        .map_or(0, |s| s.delivered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hooks_on_two_nodes_echoing_each_other_stop_after_one_round() {
    let nats = Nats::start();
    let (a, b, c) = (Env::new(), Env::new(), Env::new());
    b.add(
        "ping-a",
        "relay-hook",
        &hook("ping-a", &["ping.a"], Some("ping.b")),
    );
    c.add(
        "ping-b",
        "relay-hook",
        &hook("ping-b", &["ping.b"], Some("ping.a")),
    );
    let node_a = node(&a, &nats, "node-a", KvBackend::Embedded).await;
    let node_b = node(&b, &nats, "node-b", KvBackend::Embedded).await;
    let node_c = node(&c, &nats, "node-c", KvBackend::Embedded).await;
    sees(&node_a, "ping-a", 1).await;
    sees(&node_a, "ping-b", 1).await;

    node_a.publish("ping.a", r#"{"hop":0}"#).expect("publish");
    // ping-a (B) forwards to ping.b, ping-b (C) forwards back to ping.a:
    // that echo carries ping-a in its chain, so B holds it back.
    eventually("the echo held back on node-b", async || {
        let held = node_b
            .event_stats()
            .iter()
            .find(|s| s.owner.to_string() == "ping-a")
            .map_or(0, |s| s.suppressed);
        (held == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(number(&node_b, "ping-a", "seen").await, Some(1));
    assert_eq!(number(&node_c, "ping-b", "seen").await, Some(1));
    for node in [&node_a, &node_b, &node_c] {
        assert_eq!(node.events_too_deep(), 0);
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_plugin_keeps_serving_while_one_of_its_nodes_is_killed() {
    let nats = Nats::start();
    let (a, b, c) = (Env::new(), Env::new(), Env::new());
    let node_a = node(&a, &nats, "node-a", KvBackend::Embedded).await;
    let mut daemons = Vec::new();
    for (env, name) in [(&b, "node-b"), (&c, "node-c")] {
        env.add_example("echo-tool");
        let url = nats.url();
        daemons.push(Daemon::launch(
            env,
            Launch {
                args: &["--cluster", &url, "--node", name],
                ..Launch::default()
            },
        ));
    }
    sees(&node_a, "echo-tool", 2).await;

    let served = |node: &str| {
        node_a
            .cluster_view()
            .expect("view")
            .calls
            .iter()
            .find(|c| c.direction == "out" && c.peer == node)
            .map_or(0, |c| c.ok)
    };
    // Calls go to both copies (queue groups spread them).
    for _ in 0..40 {
        node_a
            .call_tool("echo", r#"{"text":"x"}"#)
            .await
            .expect("echo");
    }
    assert!(served("node-b") > 0 && served("node-c") > 0, "both serve");

    // kill -9 node-b while calls go on, one after another.
    let killed = daemons.remove(0);
    let before_c = served("node-c");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(killed.pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9");
    let (mut ok, mut failed) = (0, Vec::new());
    for _ in 0..60 {
        match node_a.call_tool("echo", r#"{"text":"y"}"#).await {
            Ok(out) => {
                assert_eq!(out, "y");
                ok += 1;
            }
            Err(e) => failed.push(e.to_string()),
        }
    }
    drop(killed);
    // At most the call in flight at the kill is lost (it waits out the
    // call timeout); every other one is served by node-c.
    assert!(failed.len() <= 1, "{failed:?}");
    assert_eq!(ok + failed.len(), 60);
    assert!(served("node-c") - before_c >= 59, "node-c served the rest");
    // And node-b is soon gone from the table.
    eventually("node-b no longer up", async || {
        let view = node_a.cluster_view().expect("view");
        (!view.nodes.iter().any(|n| n.node == "node-b" && n.alive)).then_some(())
    })
    .await;
    node_a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_incremented_from_two_nodes_at_once_loses_no_increment() {
    let nats = Nats::start();
    let (b, c) = (Env::new(), Env::new());
    b.add("kv-tool", "kv-tool", &kv_tool());
    c.add("kv-tool", "kv-tool", &kv_tool());
    let node_b = Arc::new(node(&b, &nats, "node-b", KvBackend::JetStream).await);
    let node_c = Arc::new(node(&c, &nats, "node-c", KvBackend::JetStream).await);
    // Each node calls its own copy (a node serves the tools it runs): two
    // workers, two supervisors, one bucket.
    let mut tasks = tokio::task::JoinSet::new();
    for sup in [&node_b, &node_c] {
        for _ in 0..4 {
            let sup = sup.clone();
            tasks.spawn(async move {
                for _ in 0..25 {
                    increment(&sup, "hits").await.expect("increment");
                }
            });
        }
    }
    tasks.join_all().await;
    assert_eq!(number(&node_b, "kv-tool", "hits").await, Some(200));
    assert_eq!(number(&node_c, "kv-tool", "hits").await, Some(200));
    // A value rewritten near the quota is counted once, as the embedded
    // store counts it.
    let set = |size: u64| json!({"op": "set", "key": "big", "size": size}).to_string();
    for _ in 0..3 {
        let out = node_c.call_tool("kv", &set(300 << 10)).await.expect("call");
        assert_eq!(
            out, r#"{"ok":null}"#,
            "a rewrite of 300 KiB under a 512 KiB quota"
        );
    }
    node_c
        .call_tool("kv", &json!({"op": "delete", "key": "big"}).to_string())
        .await
        .expect("delete");
    // A key far past the limit is refused before it reaches NATS (escaped
    // into a subject past the server's control-line limit, it would cost
    // the node its connection), and the node stays connected.
    let long = json!({"op": "increment", "key": "é".repeat(50_000)}).to_string();
    let out = node_b.call_tool("kv", &long).await.expect("call");
    assert!(out.contains("longer than the 1024-byte maximum"), "{out}");
    assert_eq!(increment(&node_b, "hits").await, Ok(201));
    assert!(node_b.cluster_view().expect("view").connected);
    // The same keys on both nodes; the quota holds there too.
    let out = node_c.call_tool("kv", &set(700 << 10)).await.expect("call");
    assert!(out.contains("over quota"), "{out}");
    assert_eq!(
        node_b.kv_keys("kv-tool", "").await.expect("keys"),
        vec!["hits"]
    );
    node_b.shutdown().await;
    node_c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_reconnect_after_the_nats_server_restarts_and_acknowledged_writes_stay() {
    let mut nats = Nats::start();
    let (b, c) = (Env::new(), Env::new());
    b.add("kv-tool", "kv-tool", &kv_tool());
    c.add_example("echo-tool");
    let node_b = Arc::new(node(&b, &nats, "node-b", KvBackend::JetStream).await);
    let node_c = node(&c, &nats, "node-c", KvBackend::JetStream).await;
    sees(&node_b, "echo-tool", 1).await;

    // Writers go on while the server is killed and started again.
    let acked = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let highest = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let (sup, acked, highest, stop) =
            (node_b.clone(), acked.clone(), highest.clone(), stop.clone());
        writers.spawn(async move {
            let mut attempts = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                attempts += 1;
                if let Ok(n) = increment(&sup, "acked").await {
                    acked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    highest.fetch_max(n, std::sync::atomic::Ordering::SeqCst);
                }
            }
            attempts
        });
    }
    eventually("writes before the restart", async || {
        (acked.load(std::sync::atomic::Ordering::SeqCst) >= 30).then_some(())
    })
    .await;
    nats.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    nats.restart();
    let after = acked.load(std::sync::atomic::Ordering::SeqCst);
    eventually("writes after the restart", async || {
        (acked.load(std::sync::atomic::Ordering::SeqCst) >= after + 30).then_some(())
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let attempts: i64 = writers.join_all().await.into_iter().sum();

    // Every acknowledged increment is there: the counter is at least the
    // number acknowledged and the highest value any of them returned (an
    // increment whose answer the outage swallowed may be there too, never
    // more than were tried).
    let acked = acked.load(std::sync::atomic::Ordering::SeqCst);
    let value = number(&node_b, "kv-tool", "acked")
        .await
        .expect("the counter");
    assert!(
        value >= acked && value >= highest.load(std::sync::atomic::Ordering::SeqCst),
        "{value} < {acked} acknowledged"
    );
    assert!(value <= attempts, "{value} > {attempts} tried");
    // Both nodes are back in the cluster: calls cross again.
    let out = node_b
        .call_tool("echo", r#"{"text":"back"}"#)
        .await
        .expect("echo on node-c");
    assert_eq!(out, "back");
    assert!(node_b.cluster_view().expect("view").connected);
    node_b.shutdown().await;
    node_c.shutdown().await;
}

/// Sends raw NATS protocol to the server: whatever another node with
/// credentials could send, bytes and subjects of its choosing.
fn raw_publish(nats: &Nats, messages: &[(&str, &str, Vec<u8>)]) {
    raw_publish_as(nats, "{\"verbose\":false,\"headers\":true}", messages);
}

/// [`raw_publish`] with the given CONNECT options (a user and password);
/// returns what the server said before answering the final PING.
fn raw_publish_as(nats: &Nats, connect: &str, messages: &[(&str, &str, Vec<u8>)]) -> Vec<String> {
    use std::io::{BufRead, BufReader, Write};
    let stream = std::net::TcpStream::connect(("127.0.0.1", nats.port)).expect("connect");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    reader.read_line(&mut line).expect("INFO");
    let mut out = stream;
    out.write_all(format!("CONNECT {connect}\r\n").as_bytes())
        .expect("connect");
    for (subject, reply, payload) in messages {
        out.write_all(format!("PUB {subject} {reply} {}\r\n", payload.len()).as_bytes())
            .expect("pub");
        out.write_all(payload).expect("payload");
        out.write_all(b"\r\n").expect("crlf");
    }
    out.write_all(b"PING\r\n").expect("ping");
    let mut said = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).expect("read");
        if line.starts_with("PONG") {
            return said;
        }
        said.push(line.trim_end().to_owned());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_messages_on_the_link_are_refused_and_reach_no_plugin() {
    use prx_supervisor::cluster::wire::{self, Announce, CallBody, CallMsg, EventMsg};
    let nats = Nats::start();
    let a = Env::new();
    a.add(
        "counter",
        "relay-hook",
        &hook("counter", &["orders.*"], None),
    );
    a.add_example("echo-tool");
    let node_a = node(&a, &nats, "node-a", KvBackend::Embedded).await;
    sees(&node_a, "counter", 1).await;
    let good = EventMsg {
        node: "node-x".into(),
        topic: "orders.created".into(),
        payload: "{}".into(),
        source: None,
        chain: Vec::new(),
        published_at_ms: 0,
    };
    let event = |e: EventMsg| wire::encode(&e);
    let call = |body: CallBody| {
        wire::encode(&CallMsg {
            from: "node-x".into(),
            deadline_ms: 5000,
            body,
        })
    };
    let echo = CallBody::Tool {
        tool: "echo".into(),
        args: r#"{"text":"x"}"#.into(),
    };
    let (on, inbox) = ("prx.event.node-x.orders.created", "_INBOX.node-x.1");
    let forged = [
        // Bytes that are no message at all.
        (on, inbox, b"\xff\xfe garbage".to_vec()),
        // A message whose topic is not its subject's (it would slip past
        // a subject permission on the topic), or whose node is not.
        (
            on,
            inbox,
            event(EventMsg {
                topic: "orders.paid".into(),
                ..good.clone()
            }),
        ),
        (
            on,
            inbox,
            event(EventMsg {
                node: "node-a".into(),
                ..good.clone()
            }),
        ),
        // A chain naming what no plugin can be named.
        (
            on,
            inbox,
            event(EventMsg {
                chain: vec!["../../etc".into()],
                ..good.clone()
            }),
        ),
        // A payload that is not JSON, and one over the 64 KiB limit.
        (
            on,
            inbox,
            event(EventMsg {
                payload: "{".into(),
                ..good.clone()
            }),
        ),
        (
            on,
            inbox,
            event(EventMsg {
                payload: format!("\"{}\"", "x".repeat(70_000)),
                ..good.clone()
            }),
        ),
        // A call that is not one; a well-formed call whose answer would
        // be published into a plugin's kv bucket; one on the echo tool's
        // subject asking for something else; one whose reply is another
        // node's inbox.
        ("prx.call.tool.echo", inbox, b"\x00\x01\x02".to_vec()),
        (
            "prx.call.tool.echo",
            "$KV.prx-kv-counter.kx",
            call(echo.clone()),
        ),
        (
            "prx.call.tool.echo",
            inbox,
            call(CallBody::Middleware {
                plugin: "counter".into(),
                stage: "inbound".into(),
                data: "{}".into(),
            }),
        ),
        ("prx.call.tool.echo", "_INBOX.node-a.1", call(echo.clone())),
        // A heartbeat under another's name.
        (
            "prx.node.node-x",
            inbox,
            wire::encode(&Announce {
                node: "node-a".into(),
                started_at_ms: 0,
                leaving: true,
                plugins: Vec::new(),
            }),
        ),
    ];
    // A host subscriber here, so that the host listener reads (and must
    // refuse) the forged events too.
    let _tail = node_a.subscribe("*").expect("subscribe");
    raw_publish(&nats, &forged);
    eventually("every forged message refused", async || {
        // The six events are read twice (the plugin's queue group and the
        // host listener), the four calls and the heartbeat once.
        (node_a.cluster_view().expect("view").refused >= 17).then_some(())
    })
    .await;
    // None of the calls was served.
    assert!(node_a.cluster_view().expect("view").calls.is_empty());
    // A well-formed event from a node with credentials is delivered: the
    // checks refuse what is malformed, not what is unwelcome.
    raw_publish(&nats, &[(on, inbox, wire::encode(&good))]);
    eventually("the good event", async || {
        (number(&node_a, "counter", "seen").await == Some(1)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(number(&node_a, "counter", "seen").await, Some(1));
    // The forged "leaving" in node-a's name did not remove it.
    let view = node_a.cluster_view().expect("view");
    assert!(
        view.nodes.iter().any(|n| n.node == "node-a" && n.alive),
        "{view:?}"
    );
    assert_eq!(
        node_a
            .call_tool("echo", r#"{"text":"still"}"#)
            .await
            .expect("echo"),
        "still"
    );
    node_a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_of_a_clustered_node_cannot_reach_the_nats_server() {
    let nats = Nats::start();
    let a = Env::new();
    a.add_example("echo-tool");
    let mut config = a.config();
    config.cluster = Some(cluster(&nats, "node-a"));
    config.test_probe = Some(format!("connect-loopback:{}", nats.port));
    let node_a = Supervisor::start(config).await.expect("node starts");
    // The worker tries to connect to NATS itself: its sandbox has no
    // network (a refused socket, or the seccomp filter's SIGSYS).
    match node_a.call_tool("echo", "{}").await {
        Ok(out) => assert!(out.starts_with("blocked"), "{out}"),
        Err(e) => assert!(matches!(e, CallError::Crashed { .. }), "{e:?}"),
    }
    node_a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_readied_with_jetstream_kv_writes_nothing_unless_it_takes_over() {
    use crate::reload::{accept_slow_module, refuse_slow_module, slow_module};
    let nats = Nats::start();
    let a = Env::new();
    let dir = a.add("slow-module", "slow-module", &slow_module(""));
    let node_a = node(&a, &nats, "node-a", KvBackend::JetStream).await;
    // Its on-load writes a key, then refuses to load: the bucket, shared
    // with every node, has no trace of it.
    refuse_slow_module(
        &node_a,
        &dir,
        "write_on_load = \"written\"\nrefuse_load = \"not this one\"\n",
    )
    .await;
    assert_eq!(node_a.kv_read("slow-module", "written").await, Ok(None));
    // Accepted, what it wrote while readied is in the bucket.
    accept_slow_module(&node_a, &dir, "write_on_load = \"written\"\n").await;
    assert_eq!(
        node_a.kv_read("slow-module", "written").await,
        Ok(Some(b"from on-load".to_vec()))
    );
    node_a.shutdown().await;
}

/// The subject permissions docs/cluster.md gives node `node`.
fn node_user(node: &str) -> String {
    format!(
        "{{ user: {node}, password: \"pw-{node}\", permissions: {{\n\
         publish: [\"prx.event.{node}.>\", \"prx.call.>\", \"_INBOX.>\", \"prx.node.{node}\", \"$JS.API.>\", \"$KV.>\"]\n\
         subscribe: [\"prx.event.>\", \"prx.call.>\", \"_INBOX.{node}.>\", \"prx.node.*\", \"$KV.>\"]\n}} }}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_work_within_the_documented_subject_permissions_and_cannot_speak_for_each_other() {
    let nats = Nats::start_with(&format!(
        "authorization {{\n  users = [\n    {},\n    {}\n  ]\n}}",
        node_user("node-a"),
        node_user("node-b")
    ));
    let (a, b) = (Env::new(), Env::new());
    a.add_example("echo-tool");
    a.add("kv-tool", "kv-tool", &kv_tool());
    b.add(
        "counter",
        "relay-hook",
        &hook("counter", &["orders.*"], None),
    );
    let start = async |env: &Env, name: &str| {
        let mut config = env.config();
        let mut settings = cluster(&nats, name);
        settings.servers = vec![format!("nats://{name}:pw-{name}@127.0.0.1:{}", nats.port)];
        config.cluster = Some(settings);
        config.kv_backend = KvBackend::JetStream;
        Supervisor::start(config).await.expect("node starts")
    };
    let node_a = start(&a, "node-a").await;
    let node_b = start(&b, "node-b").await;
    sees(&node_b, "kv-tool", 1).await;
    sees(&node_a, "counter", 1).await;

    // Calls, events and JetStream kv all work within the permissions.
    let out = node_b
        .call_tool("echo", r#"{"text":"allowed"}"#)
        .await
        .expect("echo");
    assert_eq!(out, "allowed");
    for n in 1..=3 {
        assert_eq!(increment(&node_b, "n").await, Ok(n));
    }
    let list = json!({"op": "list", "key": ""}).to_string();
    assert_eq!(
        node_b.call_tool("kv", &list).await.expect("list"),
        r#"{"ok":["n"]}"#
    );
    node_a.publish("orders.created", "{}").expect("publish");
    eventually("node-a's event at node-b's hook", async || {
        (number(&node_b, "counter", "seen").await == Some(1)).then_some(())
    })
    .await;

    // With node-b's credentials, an event in node-a's name, a heartbeat
    // in its name and an answer into its inbox are refused by the server.
    let said = raw_publish_as(
        &nats,
        r#"{"verbose":false,"headers":true,"user":"node-b","pass":"pw-node-b"}"#,
        &[
            (
                "prx.event.node-a.orders.created",
                "_INBOX.node-b.1",
                b"{}".to_vec(),
            ),
            ("prx.node.node-a", "_INBOX.node-b.1", b"{}".to_vec()),
        ],
    );
    let violations = said
        .iter()
        .filter(|l| l.contains("Permissions Violation"))
        .count();
    assert_eq!(violations, 2, "{said:?}");
    node_b.shutdown().await;
    node_a.shutdown().await;
}
