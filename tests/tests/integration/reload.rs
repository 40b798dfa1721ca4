//! Hot reload with real workers and real guests: a new version takes over
//! under load with no failed call and kv state carried over; broken, torn
//! and over-privileged new versions are refused while the old one serves;
//! directories come and go; manifest subscriptions and middleware order
//! follow the new manifest; `prx reload` and `prx status` show it.

use crate::common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use prx_supervisor::plugin::StateKind;
use prx_supervisor::services::events::Owner;
use prx_supervisor::{CallError, Supervisor};

/// The versioned test tool's manifest: `[plugin] version` and the
/// `[config] version` it answers with, plus extra TOML.
fn versioned(version: &str, answers: &str, extra: &str) -> String {
    format!(
        "[plugin]\nname = \"versioned\"\nversion = \"{version}\"\nwasm = \"plugin.wasm\"\n\n[[capabilities]]\ntype = \"tool\"\nname = \"versioned\"\n\n[permissions]\nrequired = [\"kv\"]\n{extra}\n[config]\nversion = \"{answers}\"\n"
    )
}

/// The versioned guest with a custom section appended: other bytes (a
/// new build, compiled afresh), the same behaviour.
fn rebuilt_wasm(tag: &str) -> Vec<u8> {
    let wasm = std::fs::read(guest("versioned-tool")).expect("guest");
    with_custom_section(wasm, "prx-test-build", tag.as_bytes())
}

/// Writes a file the documented way: beside it, then renamed into place.
fn replace_file(path: &Path, bytes: &[u8]) {
    let staged = path.with_file_name(format!(
        ".{}.new",
        path.file_name().expect("file name").to_string_lossy()
    ));
    std::fs::write(&staged, bytes).expect("write staged file");
    std::fs::rename(&staged, path).expect("rename into place");
}

/// The supervisor of a test with the versioned tool at version 1. The
/// poll is off: the watcher alone must notice changes.
async fn start_versioned(env: &Env) -> (Supervisor, std::path::PathBuf) {
    let dir = env.add("versioned", "versioned-tool", &versioned("1.0.0", "1", ""));
    let mut config = env.config();
    config.retry_poll = Duration::ZERO;
    let sup = Supervisor::start(config).await.expect("supervisor starts");
    assert_eq!(
        sup.call_tool("versioned", "{}").await.expect("v1 answers"),
        "1:1"
    );
    (sup, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_takes_over_under_load_without_a_failed_call_and_keeps_kv() {
    let env = Env::new();
    let (sup, dir) = start_versioned(&env).await;
    let old_pid = status(&sup, "versioned").pid.expect("pid");

    // Two clients call without pause; some calls are in flight (5 ms of
    // work each) whenever the switch happens.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let answers = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for _ in 0..2 {
        let (sup, stop, failures, answers) =
            (sup.clone(), stop.clone(), failures.clone(), answers.clone());
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                match sup.call_tool("versioned", r#"{"wait_ms":5}"#).await {
                    Ok(answer) => answers.lock().expect("answers").push(answer),
                    Err(e) => {
                        eprintln!("failed call: {e}");
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }));
    }
    until("calls under way", || {
        answers.lock().expect("answers").len() >= 20
    })
    .await;

    let replaced = Instant::now();
    replace_file(&dir.join("plugin.wasm"), &rebuilt_wasm("v2"));
    replace_file(
        &dir.join("plugin.toml"),
        versioned("2.0.0", "2", "").as_bytes(),
    );
    until("version 2 answering", || {
        answers
            .lock()
            .expect("answers")
            .iter()
            .any(|a| a.starts_with("2:"))
    })
    .await;
    eprintln!(
        "file replaced -> version 2 answering: {} ms (under load)",
        replaced.elapsed().as_millis()
    );
    let seen = answers.lock().expect("answers").len();
    until("more calls on version 2", || {
        answers.lock().expect("answers").len() >= seen + 20
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.expect("client");
    }

    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "calls failed during the reload"
    );
    // One kv counter across both versions: every call counted once, none
    // lost, none counted twice (the first call before the load counted 1).
    let mut counts: Vec<u64> = answers
        .lock()
        .expect("answers")
        .iter()
        .map(|a| {
            a.split(':')
                .nth(1)
                .and_then(|n| n.parse().ok())
                .expect("count")
        })
        .collect();
    counts.sort_unstable();
    let expected: Vec<u64> = (2..2 + counts.len() as u64).collect();
    assert_eq!(counts, expected, "kv counter lost or repeated calls");
    assert_eq!(
        sup.call_tool("versioned", "{}").await.expect("v2 answers"),
        format!("2:{}", counts.len() + 2)
    );

    let now = status(&sup, "versioned");
    assert_eq!(
        (now.version.as_str(), now.state),
        ("2.0.0", StateKind::Running)
    );
    assert!(now.reloads >= 1, "{now:?}");
    assert_eq!(now.reload_error, None);
    assert_ne!(now.pid, Some(old_pid));
    // The old worker finished its calls and exited.
    until("the old worker gone", || {
        !Path::new(&format!("/proc/{old_pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{old_pid}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    })
    .await;
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_torn_and_core_module_versions_are_refused_while_the_old_one_serves() {
    let env = Env::new();
    let (sup, dir) = start_versioned(&env).await;
    let mut lifecycle = sup.subscribe("prx.lifecycle.*").expect("subscribe");
    let digest = status(&sup, "versioned").digest;

    let refused = |needle: &'static str| {
        let sup = sup.clone();
        move || {
            status(&sup, "versioned")
                .reload_error
                .is_some_and(|e| e.contains(needle))
        }
    };
    let serves_v1 = async |sup: &Supervisor| {
        let answer = sup.call_tool("versioned", "{}").await.expect("v1 serves");
        assert!(answer.starts_with("1:"), "{answer}");
        let s = status(sup, "versioned");
        assert_eq!((s.version.as_str(), s.state), ("1.0.0", StateKind::Running));
        assert_eq!(s.reloads, 0);
    };

    // A manifest that does not parse.
    replace_file(&dir.join("plugin.toml"), b"[plugin\nname = \"versioned\"\n");
    until("the bad manifest refused", refused("plugin.toml")).await;
    serves_v1(&sup).await;

    // A component that does not compile (the component first, so the
    // new manifest never meets the old component).
    let mut garbage = b"\0asm\x0d\0\x01\0".to_vec();
    garbage.extend_from_slice(&[0xff; 64]);
    replace_file(&dir.join("plugin.wasm"), &garbage);
    replace_file(
        &dir.join("plugin.toml"),
        versioned("2.0.0", "2", "").as_bytes(),
    );
    until(
        "the uncompilable component refused",
        refused("did not start"),
    )
    .await;
    serves_v1(&sup).await;

    // A core module instead of a component.
    replace_file(&dir.join("plugin.wasm"), b"\0asm\x01\0\0\0");
    until(
        "the core module refused",
        refused("core WebAssembly module"),
    )
    .await;
    serves_v1(&sup).await;

    // A torn write: half of a good component, written in place.
    let good = rebuilt_wasm("v2");
    std::fs::write(dir.join("plugin.wasm"), &good[..good.len() / 2]).expect("torn write");
    until("the torn component refused", refused("did not start")).await;
    serves_v1(&sup).await;
    assert_eq!(status(&sup, "versioned").digest, digest);

    // The write completes: now it loads.
    std::fs::write(dir.join("plugin.wasm"), &good).expect("complete write");
    until("version 2 serving", || {
        status(&sup, "versioned").version == "2.0.0"
    })
    .await;
    let answer = sup.call_tool("versioned", "{}").await.expect("v2 serves");
    assert!(answer.starts_with("2:"), "{answer}");
    assert_eq!(status(&sup, "versioned").reload_error, None);

    // Each refusal was announced, then the reload.
    let mut topics = Vec::new();
    while let Some(event) = lifecycle.try_recv() {
        topics.push(event.topic.to_string());
    }
    assert!(
        topics
            .iter()
            .filter(|t| *t == "prx.lifecycle.reload_failed")
            .count()
            >= 4,
        "{topics:?}"
    );
    assert_eq!(
        topics.last().map(String::as_str),
        Some("prx.lifecycle.reloaded")
    );
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_asking_for_more_than_the_policy_grants_is_refused() {
    let env = Env::new();
    let dir = env.add("versioned", "versioned-tool", &versioned("1.0.0", "1", ""));
    let mut config = env.config();
    config.retry_poll = Duration::ZERO;
    config.permissions.default = Some([prx_supervisor::manifest::Permission::Kv].into());
    config.permissions.http_allowlist.insert(
        "versioned".into(),
        vec!["https://api.example.com/v1".into()],
    );
    let sup = Supervisor::start(config).await.expect("supervisor starts");

    // One more permission, which the policy does not allow.
    replace_file(
        &dir.join("plugin.toml"),
        versioned(
            "2.0.0",
            "2",
            "optional = [\"http-outbound\"]\nhttp_allowlist = [\"https://api.example.com/v1/x\"]\n",
        )
        .as_bytes(),
    );
    until("the escalation refused", || {
        status(&sup, "versioned").reload_error.is_some()
    })
    .await;
    let why = status(&sup, "versioned").reload_error.expect("why");
    assert!(
        why.contains("http-outbound") && why.contains("+http-outbound") && why.contains("policy"),
        "{why}"
    );
    assert!(
        sup.call_tool("versioned", "{}")
            .await
            .expect("v1")
            .starts_with("1:")
    );

    sup.shutdown().await;

    // An allowlist wider than the operator's ceiling is refused too (on a
    // supervisor whose policy grants the permission itself).
    let env = Env::new();
    let dir = env.add("versioned", "versioned-tool", &versioned("1.0.0", "1", ""));
    let mut config = env.config();
    config.retry_poll = Duration::ZERO;
    config.permissions.http_allowlist.insert(
        "versioned".into(),
        vec!["https://api.example.com/v1".into()],
    );
    let sup = Supervisor::start(config).await.expect("supervisor starts");
    assert_eq!(status(&sup, "versioned").state, StateKind::Running);
    replace_file(
        &dir.join("plugin.toml"),
        versioned(
            "2.0.0",
            "2",
            "optional = [\"http-outbound\"]\nhttp_allowlist = [\"https://api.example.com/admin\"]\n",
        )
        .as_bytes(),
    );
    until("the wider allowlist refused", || {
        status(&sup, "versioned")
            .reload_error
            .is_some_and(|e| e.contains("beyond what the operator's policy allows"))
    })
    .await;
    let why = status(&sup, "versioned").reload_error.expect("why");
    assert!(why.contains("https://api.example.com:443/admin"), "{why}");
    assert_eq!(status(&sup, "versioned").version, "1.0.0");

    // Within the ceiling it loads.
    replace_file(
        &dir.join("plugin.toml"),
        versioned(
            "2.0.0",
            "2",
            "optional = [\"http-outbound\"]\nhttp_allowlist = [\"https://api.example.com/v1/forecast\"]\n",
        )
        .as_bytes(),
    );
    until("version 2 serving", || {
        status(&sup, "versioned").version == "2.0.0"
    })
    .await;
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_directories_come_and_go_and_subscriptions_and_order_follow_the_manifest() {
    let env = Env::new();
    let hook = |patterns: &str| {
        format!(
            "[plugin]\nname = \"relay\"\nversion = \"0.1.0\"\nwasm = \"plugin.wasm\"\n\n[[capabilities]]\ntype = \"hook\"\nevents = [{patterns}]\n\n[permissions]\nrequired = [\"kv\", \"events\"]\n"
        )
    };
    let tagger = |name: &str, priority: u32| {
        format!(
            "[plugin]\nname = \"{name}\"\nversion = \"0.1.0\"\nwasm = \"plugin.wasm\"\n\n[[capabilities]]\ntype = \"middleware\"\npriority = {priority}\n\n[permissions]\nrequired = [\"kv\"]\n\n[config]\ntag = \"{name}\"\n"
        )
    };
    let relay_dir = env.add("relay", "relay-hook", &hook("\"a.*\""));
    env.add("tag-a", "tag-middleware", &tagger("tag-a", 10));
    let tag_b = env.add("tag-b", "tag-middleware", &tagger("tag-b", 20));
    let mut config = env.config();
    config.retry_poll = Duration::ZERO;
    let sup = Supervisor::start(config).await.expect("supervisor starts");
    let seen = |topic: &str| -> i64 {
        sup.kv_get("relay", &format!("seen:{topic}"))
            .expect("kv")
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|t| t.parse().ok())
            .unwrap_or(0)
    };
    let order = || -> Vec<String> { sup.middleware_chain().into_iter().map(|(_, n)| n).collect() };
    assert_eq!(order(), ["tag-a", "tag-b"]);

    sup.publish("a.one", "{}").expect("publish");
    until("a.one delivered", || seen("a.one") == 1).await;

    // The new manifest subscribes to b.* instead of a.*.
    replace_file(&relay_dir.join("plugin.toml"), hook("\"b.*\"").as_bytes());
    until("relay reloaded", || status(&sup, "relay").reloads == 1).await;
    sup.publish("a.two", "{}").expect("publish");
    sup.publish("b.one", "{}").expect("publish");
    until("b.one delivered", || seen("b.one") == 1).await;
    assert_eq!(seen("a.two"), 0, "the old pattern still matched");
    assert_eq!(seen("a.one"), 1, "kv state lost");

    // tag-b moves to the front of the chain.
    replace_file(&tag_b.join("plugin.toml"), tagger("tag-b", 5).as_bytes());
    until("the chain reordered", || order() == ["tag-b", "tag-a"]).await;

    // A new directory loads; a removed one unloads.
    env.add("versioned", "versioned-tool", &versioned("1.0.0", "1", ""));
    until("the new plugin running", || {
        sup.plugins()
            .iter()
            .any(|p| p.name == "versioned" && p.state == StateKind::Running)
    })
    .await;
    assert!(
        sup.call_tool("versioned", "{}")
            .await
            .expect("new plugin")
            .starts_with("1:")
    );
    std::fs::remove_dir_all(env.plugins().join("versioned")).expect("remove");
    until("the removed plugin gone", || {
        sup.plugins().iter().all(|p| p.name != "versioned")
    })
    .await;
    let gone = sup.call_tool("versioned", "{}").await.unwrap_err();
    assert!(matches!(gone, CallError::UnknownTool { .. }), "{gone:?}");

    // A hidden directory (an install being staged) is left alone: once a
    // reload of the whole directory has looked at everything, it is still
    // not loaded.
    env.add(".staging", "versioned-tool", &versioned("1.0.0", "1", ""));
    let outcomes = sup.reload(None).await.expect("reload");
    assert!(outcomes.is_empty(), "{outcomes:?}");
    assert!(sup.plugins().iter().all(|p| p.name != "versioned"));
    sup.shutdown().await;
}

#[test]
fn prx_reload_forces_a_reload_and_prx_status_shows_a_refused_version() {
    let env = Env::new();
    let dir = env.add("versioned", "versioned-tool", &versioned("1.0.0", "1", ""));
    let daemon = Daemon::start_with(&env, &[]);

    let out = daemon.cli(&["reload"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "nothing changed");

    let out = daemon.cli(&["reload", "versioned"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("versioned: reloaded 1.0.0 -> 1.0.0 in "),
        "{}",
        stdout(&out)
    );
    let out = daemon.cli(&["call", "versioned", "{}"]);
    assert_eq!(stdout(&out).trim(), "1:1", "{}", stderr(&out));

    // A broken manifest: `prx reload` applies it (unless the watcher was
    // first) and says it was refused, with a failing exit code.
    std::fs::write(dir.join("plugin.toml"), "[plugin]\nname = 3\n").expect("write");
    let out = daemon.cli(&["reload"]);
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("versioned: new version refused, the old one serves on: "),
        "{}",
        stdout(&out)
    );
    let out = daemon.cli(&["status"]);
    assert!(
        stdout(&out).contains("versioned: version 1.0.0")
            && stdout(&out).contains("the newer files were refused"),
        "{}",
        stdout(&out)
    );
    let out = daemon.cli(&["reload", "nope"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no plugin named `nope`"),
        "{}",
        stderr(&out)
    );
}

/// The slow-module test guest's manifest, with `[config]` lines `config`.
pub(crate) fn slow_module(config: &str) -> String {
    format!(
        "[plugin]\nname = \"slow-module\"\nversion = \"0.1.0\"\nwasm = \"plugin.wasm\"\n\n[[capabilities]]\ntype = \"module\"\n\n[permissions]\nrequired = [\"events\", \"kv\"]\n\n[config]\n{config}\n"
    )
}

/// A supervisor serving slow-module with no `[config]`; its directory.
async fn start_slow_module(env: &Env) -> (Supervisor, std::path::PathBuf) {
    let dir = env.add("slow-module", "slow-module", &slow_module(""));
    let mut config = env.config();
    config.ephemeral_kv = true;
    let sup = Supervisor::start(config).await.expect("start");
    assert_eq!(sup.running(), 1, "{:?}", sup.failures());
    (sup, dir)
}

/// Writes slow-module's new manifest and reloads it; the outcome.
async fn reload_slow_module(
    sup: &Supervisor,
    dir: &Path,
    config: &str,
) -> prx_supervisor::ReloadOutcome {
    replace_file(&dir.join("plugin.toml"), slow_module(config).as_bytes());
    let mut outcomes = sup.reload(Some("slow-module")).await.expect("reload");
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    outcomes.remove(0)
}

/// Reloads slow-module with `config` (which makes it refuse to load) and
/// checks the new version was refused.
pub(crate) async fn refuse_slow_module(sup: &Supervisor, dir: &Path, config: &str) {
    let outcome = reload_slow_module(sup, dir, config).await;
    assert!(
        matches!(outcome, prx_supervisor::ReloadOutcome::Refused { .. }),
        "{config}: {outcome:?}"
    );
}

/// Reloads slow-module with `config` and checks the new version serves.
pub(crate) async fn accept_slow_module(sup: &Supervisor, dir: &Path, config: &str) {
    let outcome = reload_slow_module(sup, dir, config).await;
    assert!(
        matches!(outcome, prx_supervisor::ReloadOutcome::Reloaded { .. }),
        "{config}: {outcome:?}"
    );
}

#[tokio::test]
async fn a_refused_version_leaves_no_subscription_with_the_live_one() {
    // The new version's on-load subscribes to `probe.*`, then refuses to
    // load. The live version never subscribed to it: no `probe.*` event
    // may reach it afterwards.
    let env = Env::new();
    let (sup, dir) = start_slow_module(&env).await;
    refuse_slow_module(
        &sup,
        &dir,
        "subscribe = \"probe.*\"\nrefuse_load = \"not this one\"\n",
    )
    .await;
    // The bus holds no subscription of the plugin's to `probe.*` any more,
    // so publishing one queues nothing for it (publishing is synchronous).
    let held: Vec<(u64, String)> = sup
        .event_stats()
        .into_iter()
        .filter(|s| s.owner == Owner::Plugin("slow-module".into()))
        .flat_map(|s| s.patterns)
        .collect();
    assert!(held.iter().all(|(_, p)| p != "probe.*"), "{held:?}");
    sup.publish("probe.one", "{}").expect("publish");
    let live = status(&sup, "slow-module");
    assert_eq!(live.state, StateKind::Running);
    assert_eq!(live.events_handled, 0, "{live:?}");
    sup.shutdown().await;
}

#[tokio::test]
async fn a_refused_version_leaves_nothing_in_the_live_kv_and_an_accepted_one_keeps_its_writes() {
    // The new version's on-load writes a kv key. Refused, it must leave
    // no trace in the live plugin's kv; accepted, what it wrote while it
    // was readied is the plugin's.
    let env = Env::new();
    let (sup, dir) = start_slow_module(&env).await;
    refuse_slow_module(
        &sup,
        &dir,
        "write_on_load = \"written\"\nrefuse_load = \"not this one\"\n",
    )
    .await;
    assert_eq!(sup.kv_get("slow-module", "written"), Ok(None));
    accept_slow_module(&sup, &dir, "write_on_load = \"written\"\n").await;
    assert_eq!(
        sup.kv_get("slow-module", "written"),
        Ok(Some(b"from on-load".to_vec()))
    );
    sup.shutdown().await;
}

/// What slow-module's cache namespace `load` holds under `key`, read from
/// the store where the host keeps a plugin's cache.
fn load_cache(sup: &Supervisor, key: &str) -> Option<Vec<u8>> {
    sup.kv_get("slow-module\u{1f}cache", &format!("load\u{1f}{key}"))
        .expect("read the cache")
}

#[tokio::test]
async fn a_refused_version_neither_fills_nor_clears_the_live_cache() {
    // An accepted version's on-load puts a cache entry: it is there once
    // that version serves. A refused version that clears the namespace,
    // and one that puts another entry, change nothing the live one sees.
    let env = Env::new();
    let (sup, dir) = start_slow_module(&env).await;
    accept_slow_module(&sup, &dir, "cache_on_load = \"kept\"\n").await;
    assert_eq!(load_cache(&sup, "kept"), Some(b"from on-load".to_vec()));
    for config in [
        "clear_cache_on_load = \"yes\"\nrefuse_load = \"not this one\"\n",
        "cache_on_load = \"refused\"\nrefuse_load = \"not this one\"\n",
    ] {
        refuse_slow_module(&sup, &dir, config).await;
    }
    assert_eq!(load_cache(&sup, "kept"), Some(b"from on-load".to_vec()));
    assert_eq!(load_cache(&sup, "refused"), None);
    sup.shutdown().await;
}
