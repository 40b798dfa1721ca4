//! Supervision with real processes: crashes come back by themselves, crash
//! loops stop in quarantine, stuck workers are found, nothing is left
//! behind, and shutdown drains.

use crate::common;

use std::time::{Duration, Instant};

use common::{Daemon, Env, echo_manifest, parent_of, status, stdout, tool_manifest, until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use prx_supervisor::config::RestartPolicy;
use prx_supervisor::plugin::{CodeOrigin, StateKind};
use prx_supervisor::worker_handle::Liveness;
use prx_supervisor::{CallError, PluginStatus, Supervisor};

/// Long calls: the wall clock, not fuel, ends them.
const LONG: &str = "[resources]\nmax_fuel = 1_000_000_000_000\nmax_execution_time_ms = 5000\n";

fn alive(pid: u32) -> bool {
    // A zombie still has a /proc entry; it is not running.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Children of `parent` that are zombies.
fn zombies_of(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        if fields.first() == Some(&"Z")
            && fields.get(1).and_then(|p| p.parse().ok()) == Some(parent)
        {
            out.push(pid);
        }
    }
    out
}

#[tokio::test]
async fn kill_9_during_a_long_call_fails_it_fast_and_the_plugin_comes_back() {
    let env = Env::new();
    env.add(
        "faulty",
        "faulty-tool",
        &tool_manifest("faulty", "faulty", LONG),
    );
    let sup = env.supervisor().await;
    let pid = status(&sup, "faulty").pid.unwrap();

    let call = tokio::spawn({
        let sup = sup.clone();
        async move { sup.call_tool("faulty", r#"{"mode":"spin"}"#).await }
    });
    until("the call under way", || {
        status(&sup, "faulty").in_flight == 1
    })
    .await;
    let killed = Instant::now();
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    let err = call.await.unwrap().unwrap_err();
    assert!(
        killed.elapsed() < Duration::from_secs(1),
        "{:?}",
        killed.elapsed()
    );
    assert!(matches!(err, CallError::Crashed { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "plugin `faulty` crashed (signal SIGKILL); restarting"
    );

    assert_eq!(sup.call_tool("faulty", "{}").await.unwrap(), "ok");
    let s = status(&sup, "faulty");
    assert_eq!(s.restarts, 1);
    assert_eq!(s.state, StateKind::Running);
    assert_eq!(s.last_exit.as_deref(), Some("signal SIGKILL"));
    assert_ne!(s.pid, Some(pid));
    sup.shutdown().await;
}

#[tokio::test]
async fn a_crash_loop_backs_off_then_quarantines_while_others_keep_serving() {
    let env = Env::new();
    env.add(
        "faulty",
        "faulty-tool",
        &tool_manifest("faulty", "faulty", ""),
    );
    env.add("echo-tool", "echo-tool", &echo_manifest());
    let mut config = env.config();
    config.test_abort_marker = Some("prx-test-abort".into());
    config.restart = RestartPolicy {
        backoff_initial: Duration::from_millis(40),
        backoff_max: Duration::from_millis(400),
        healthy_after: Duration::from_secs(30),
        max_crashes: 3,
        crash_window: Duration::from_secs(60),
        // Released by the operator below, not by a timer.
        quarantine_cooldown: Duration::ZERO,
        ..RestartPolicy::default()
    };
    let sup = Supervisor::start(config).await.unwrap();

    let started = Instant::now();
    let mut crashes = 0;
    let mut echo_calls = 0;
    for _ in 0..20 {
        match sup.call_tool("faulty", r#"{"mode":"crash"}"#).await {
            Err(CallError::Crashed { cause, .. }) => {
                // The worker is process 1 of its PID namespace, which a
                // signal it sends itself cannot end: abort() then ends in
                // the fault glibc falls back to.
                assert!(
                    cause == "signal SIGABRT" || cause == "signal SIGSEGV",
                    "{cause}"
                );
                crashes += 1;
            }
            Err(CallError::NotRunning { state, .. }) if state == "quarantined" => break,
            other => panic!("unexpected: {other:?}"),
        }
        // The other plugin serves every call throughout.
        assert_eq!(
            sup.call_tool("echo", r#"{"text":"fine"}"#).await.unwrap(),
            "fine"
        );
        echo_calls += 1;
    }
    assert_eq!(crashes, 4, "max_crashes = 3: the fourth crash quarantines");
    assert_eq!(echo_calls, 4);
    // Restarts 2 and 3 waited about 40 and 80 ms (±25 %).
    assert!(
        started.elapsed() >= Duration::from_millis(90),
        "{:?}",
        started.elapsed()
    );

    let s = status(&sup, "faulty");
    assert_eq!(s.state, StateKind::Quarantined);
    assert_eq!(s.restarts, 3);
    assert_eq!(s.pid, None);
    let reason = s.error.unwrap();
    assert!(
        reason.contains("4 crashes within 60 s") && reason.contains("prx release faulty"),
        "{reason}"
    );
    let err = sup.call_tool("faulty", "{}").await.unwrap_err();
    assert!(err.to_string().contains("is quarantined"), "{err}");

    sup.release("faulty").await.unwrap();
    assert_eq!(status(&sup, "faulty").state, StateKind::Running);
    assert_eq!(sup.call_tool("faulty", "{}").await.unwrap(), "ok");
    assert!(
        sup.release("faulty")
            .await
            .unwrap_err()
            .contains("not quarantined")
    );
    sup.shutdown().await;
}

/// A plugin directory `faulty` with the faulty tool; the env and the
/// directory.
fn faulty_env() -> (Env, std::path::PathBuf) {
    let env = Env::new();
    let dir = env.add(
        "faulty",
        "faulty-tool",
        &tool_manifest("faulty", "faulty", ""),
    );
    (env, dir)
}

/// Crashes `faulty` until it is quarantined; returns the quarantine's
/// status. The other calls in between are refused, never served.
async fn crash_until_quarantined(sup: &Supervisor) -> PluginStatus {
    for _ in 0..20 {
        match sup.call_tool("faulty", r#"{"mode":"crash"}"#).await {
            Err(CallError::Crashed { .. }) => {}
            Err(CallError::NotRunning { state, .. }) if state == "quarantined" => {
                return status(sup, "faulty");
            }
            other => panic!("unexpected: {other:?}"),
        }
    }
    panic!("faulty was not quarantined after 20 crashes");
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

#[tokio::test]
async fn a_quarantine_for_crashes_lifts_itself_after_a_cooldown_that_doubles() {
    let (env, _) = faulty_env();
    let mut config = env.config();
    config.test_abort_marker = Some("prx-test-abort".into());
    config.restart = RestartPolicy {
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(20),
        max_crashes: 2,
        quarantine_cooldown: Duration::from_secs(1),
        quarantine_cooldown_max: Duration::from_secs(8),
        ..RestartPolicy::default()
    };
    let sup = Supervisor::start(config).await.unwrap();

    // First quarantine: tried again after 1 s, with no operator.
    let first = crash_until_quarantined(&sup).await;
    let at = first
        .restart_at_ms
        .expect("the status says when it is tried again");
    let wait = at.saturating_sub(now_ms());
    assert!((500..=1000).contains(&wait), "next start in {wait} ms");
    assert!(first.error.unwrap().contains("tried again in 1 s"));
    let quarantined = Instant::now();
    until("faulty released by its cool-down", || {
        status(&sup, "faulty").state == StateKind::Running
    })
    .await;
    assert!(quarantined.elapsed() >= Duration::from_millis(800));
    assert_eq!(sup.call_tool("faulty", "{}").await.unwrap(), "ok");

    // Quarantined again soon after: the cool-down doubles.
    let second = crash_until_quarantined(&sup).await;
    let wait = second.restart_at_ms.unwrap().saturating_sub(now_ms());
    assert!((1500..=2000).contains(&wait), "next start in {wait} ms");
    // An operator can still release it at once; the pending timer then
    // has nothing to lift.
    sup.release("faulty").await.unwrap();
    let pid = status(&sup, "faulty").pid;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = status(&sup, "faulty");
    assert_eq!(after.state, StateKind::Running);
    assert_eq!(
        after.pid, pid,
        "the timer must not restart a running plugin"
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn a_quarantined_version_replaced_by_new_files_is_not_released_by_its_old_timer() {
    let (env, dir) = faulty_env();
    let mut config = env.config();
    config.test_abort_marker = Some("prx-test-abort".into());
    config.retry_poll = Duration::from_millis(50);
    config.restart = RestartPolicy {
        max_crashes: 0,
        quarantine_cooldown: Duration::from_millis(600),
        quarantine_cooldown_max: Duration::from_millis(600),
        ..RestartPolicy::default()
    };
    let sup = Supervisor::start(config).await.unwrap();
    let mut lifecycle = sup.subscribe("prx.lifecycle.*").expect("subscribe");
    crash_until_quarantined(&sup).await;
    // A deploy before the cool-down ends: the new files load at once.
    std::fs::write(
        dir.join("plugin.toml"),
        tool_manifest("faulty", "faulty", "# fixed\n"),
    )
    .unwrap();
    until("the new version running", || {
        status(&sup, "faulty").state == StateKind::Running
    })
    .await;
    let pid = status(&sup, "faulty").pid;
    // Past the old version's cool-down: it must start nothing.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut topics = Vec::new();
    while let Some(event) = lifecycle.try_recv() {
        topics.push(event.topic.to_string());
    }
    assert!(
        !topics.iter().any(|t| t == "prx.lifecycle.released"),
        "the replaced version was released: {topics:?}"
    );
    assert_eq!(status(&sup, "faulty").pid, pid);
    assert_eq!(sup.call_tool("faulty", "{}").await.unwrap(), "ok");
    sup.shutdown().await;
}

#[tokio::test]
async fn a_quarantined_tool_being_redeployed_is_never_an_unknown_tool() {
    let (env, dir) = faulty_env();
    let mut config = env.config();
    config.test_abort_marker = Some("prx-test-abort".into());
    config.retry_poll = Duration::from_millis(50);
    config.restart.max_crashes = 0;
    let sup = Supervisor::start(config).await.unwrap();
    crash_until_quarantined(&sup).await;
    // New code (not in the compile cache: its load compiles) replaces the
    // quarantined plugin. While it loads, a call hears that the plugin is
    // out, never that the tool does not exist.
    let wasm = std::fs::read(dir.join("plugin.wasm")).unwrap();
    let fresh = common::with_custom_section(wasm, "redeploy", b"2");
    std::fs::write(dir.join(".plugin.wasm.tmp"), fresh).unwrap();
    std::fs::rename(dir.join(".plugin.wasm.tmp"), dir.join("plugin.wasm")).unwrap();
    let began = Instant::now();
    let mut refused = 0;
    loop {
        match sup.call_tool("faulty", "{}").await {
            Ok(answer) => {
                assert_eq!(answer, "ok");
                break;
            }
            Err(CallError::NotRunning { .. }) => refused += 1,
            Err(other) => panic!("during the redeploy: {other:?}"),
        }
        assert!(began.elapsed() < Duration::from_secs(60), "not redeployed");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(refused > 0, "the redeploy was over before a call saw it");
    sup.shutdown().await;
}

#[tokio::test]
async fn a_stopped_worker_misses_its_heartbeat_and_is_replaced() {
    let env = Env::new();
    env.add("echo-tool", "echo-tool", &echo_manifest());
    let mut config = env.config();
    config.liveness = Liveness {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(200),
        ..Liveness::default()
    };
    let sup = Supervisor::start(config).await.unwrap();
    let pid = status(&sup, "echo-tool").pid.unwrap();

    kill(Pid::from_raw(pid as i32), Signal::SIGSTOP).unwrap();
    let stopped = Instant::now();
    until("echo-tool restarted and running", || {
        let s = status(&sup, "echo-tool");
        s.state == StateKind::Running && s.pid.is_some_and(|p| p != pid)
    })
    .await;
    // Interval + timeout + restart: well within a second.
    assert!(
        stopped.elapsed() < Duration::from_secs(1),
        "{:?}",
        stopped.elapsed()
    );
    let s = status(&sup, "echo-tool");
    assert_eq!(s.restarts, 1);
    assert_eq!(
        s.last_exit.as_deref(),
        Some("killed by the supervisor: no heartbeat within 200 ms")
    );
    assert!(!alive(pid), "the stopped worker was killed");
    assert_eq!(
        sup.call_tool("echo", r#"{"text":"back"}"#).await.unwrap(),
        "back"
    );
    sup.shutdown().await;
}

#[test]
fn kill_9_of_the_supervisor_leaves_no_worker() {
    let env = Env::new();
    env.add("echo-tool", "echo-tool", &echo_manifest());
    env.add(
        "faulty",
        "faulty-tool",
        &tool_manifest("faulty", "faulty", ""),
    );
    let mut daemon = Daemon::start(&env);
    let list: serde_json::Value =
        serde_json::from_slice(&daemon.cli(&["status", "--json"]).stdout).unwrap();
    let pids: Vec<u32> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pid"].as_u64().unwrap() as u32)
        .collect();
    assert_eq!(pids.len(), 2);
    assert!(pids.iter().all(|p| alive(*p)));

    kill(Pid::from_raw(daemon.pid() as i32), Signal::SIGKILL).unwrap();
    let _ = daemon.child.wait();
    let start = Instant::now();
    while pids.iter().any(|p| alive(*p)) && start.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "workers outlived the supervisor: {left:?}");
}

#[tokio::test]
async fn crashed_workers_are_reaped_no_zombie_stays() {
    let env = Env::new();
    env.add("echo-tool", "echo-tool", &echo_manifest());
    let sup = env.supervisor().await;
    // The processes this supervisor started (with a PID namespace, the
    // parent of the one that runs the plugin): the children it must reap.
    let mut ours = Vec::new();
    let launched = |pid: u32| {
        parent_of(pid)
            .filter(|p| *p != std::process::id())
            .unwrap_or(pid)
    };
    for round in 1..=3u32 {
        let pid = status(&sup, "echo-tool").pid.unwrap();
        ours.push(launched(pid));
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
        until("echo-tool restarted and running", || {
            let s = status(&sup, "echo-tool");
            s.restarts == round && s.state == StateKind::Running
        })
        .await;
    }
    assert_eq!(sup.call_tool("echo", r#"{"text":"x"}"#).await.unwrap(), "x");
    ours.push(launched(status(&sup, "echo-tool").pid.unwrap()));
    // Other tests in this process start and stop workers too; only the
    // processes of this test are looked at.
    let none_of_ours = || {
        let zombies = zombies_of(std::process::id());
        ours.iter().all(|pid| !zombies.contains(pid))
    };
    until("the killed workers reaped", none_of_ours).await;
    sup.shutdown().await;
    until("every worker reaped after shutdown", none_of_ours).await;
}

#[test]
fn workers_started_from_a_thread_that_exits_stay_alive() {
    let env = Env::new();
    env.add("echo-tool", "echo-tool", &echo_manifest());
    // Blocking-pool threads end 50 ms after their last task: the trap that
    // PR_SET_PDEATHSIG sets for a worker spawned from such a thread.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_keep_alive(Duration::from_millis(50))
        .build()
        .unwrap();
    let config = env.config();
    let handle = rt.handle().clone();
    let starter = rt.spawn_blocking(move || handle.block_on(Supervisor::start(config)));
    let sup = rt.block_on(starter).unwrap().unwrap();
    let pid = sup.plugins()[0].pid.unwrap();
    // Let the blocking thread that started it time out and exit.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        alive(pid),
        "the worker died with the thread that started it"
    );
    rt.block_on(async {
        assert_eq!(sup.call_tool("echo", r#"{"text":"x"}"#).await.unwrap(), "x");
        assert_eq!(sup.plugins()[0].restarts, 0);
        sup.shutdown().await;
    });
}

#[test]
fn sigterm_lets_calls_in_flight_finish_then_exits_0_with_no_worker_left() {
    let env = Env::new();
    env.add(
        "faulty",
        "faulty-tool",
        &tool_manifest("faulty", "faulty", LONG),
    );
    let mut daemon = Daemon::start(&env);
    let list: serde_json::Value =
        serde_json::from_slice(&daemon.cli(&["status", "--json"]).stdout).unwrap();
    let worker = list[0]["pid"].as_u64().unwrap() as u32;

    let call = std::process::Command::new(common::bin("prx"))
        .args(["call", "faulty", r#"{"mode":"wait","ms":700}"#, "--state"])
        .arg(&daemon.state)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        let list: serde_json::Value =
            serde_json::from_slice(&daemon.cli(&["status", "--json"]).stdout).unwrap();
        if list[0]["in_flight"] == 1 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the call never started"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    kill(Pid::from_raw(daemon.pid() as i32), Signal::SIGTERM).unwrap();

    let out = call.wait_with_output().unwrap();
    assert!(out.status.success(), "the call in flight was cut: {out:?}");
    assert_eq!(stdout(&out), "waited 700 ms\n");
    let status = daemon.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(!alive(worker), "the worker outlived a clean shutdown");
}

#[test]
fn prx_status_shows_state_pid_restarts_and_the_last_exit() {
    let env = Env::new();
    env.add("echo-tool", "echo-tool", &echo_manifest());
    let daemon = Daemon::start(&env);
    let before: serde_json::Value =
        serde_json::from_slice(&daemon.cli(&["status", "--json"]).stdout).unwrap();
    let pid = before[0]["pid"].as_u64().unwrap() as u32;
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    let start = Instant::now();
    loop {
        let now: serde_json::Value =
            serde_json::from_slice(&daemon.cli(&["status", "--json"]).stdout).unwrap();
        if now[0]["restarts"] == 1 && now[0]["state"] == "running" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{now}");
        std::thread::sleep(Duration::from_millis(10));
    }
    let table = stdout(&daemon.cli(&["status"]));
    let line = table.lines().find(|l| l.starts_with("echo-tool")).unwrap();
    assert!(
        line.contains("running") && line.contains("signal SIGKILL"),
        "{table}"
    );
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cells[3], "1", "restarts column: {table}");
    assert_ne!(cells[2], pid.to_string(), "a new worker: {table}");

    let out = daemon.cli(&["release", "echo-tool"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is running, not quarantined"));
}

#[tokio::test]
async fn a_change_to_its_files_retries_a_quarantined_or_failed_plugin() {
    let env = Env::new();
    let faulty_dir = env.add(
        "faulty",
        "faulty-tool",
        &tool_manifest("faulty", "faulty", ""),
    );
    let broken_dir = env.add(
        "broken",
        "echo-tool",
        &tool_manifest("broken", "echo", "[resources]\nmax_cpu = 1\n"),
    );
    let mut config = env.config();
    config.test_abort_marker = Some("prx-test-abort".into());
    config.restart.max_crashes = 0;
    config.retry_poll = Duration::from_millis(50);
    let sup = Supervisor::start(config).await.unwrap();
    assert_eq!(sup.failures().len(), 1);

    let err = sup
        .call_tool("faulty", r#"{"mode":"crash"}"#)
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Crashed { .. }), "{err:?}");
    until("faulty quarantined", || {
        status(&sup, "faulty").state == StateKind::Quarantined
    })
    .await;
    // Files unchanged: it stays quarantined.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(status(&sup, "faulty").state, StateKind::Quarantined);

    // A new version of the manifest (a deploy) retries it.
    let manifest = tool_manifest("faulty", "faulty", "# fixed\n");
    std::fs::write(faulty_dir.join("plugin.toml"), manifest).unwrap();
    until("faulty running again", || {
        status(&sup, "faulty").state == StateKind::Running
    })
    .await;
    assert_eq!(sup.call_tool("faulty", "{}").await.unwrap(), "ok");

    // A manifest that was refused loads once it is fixed.
    std::fs::write(
        broken_dir.join("plugin.toml"),
        tool_manifest("broken", "echo", ""),
    )
    .unwrap();
    until("broken running", || {
        sup.plugins()
            .iter()
            .any(|p| p.name == "broken" && p.state == StateKind::Running)
    })
    .await;
    assert!(sup.failures().is_empty(), "{:?}", sup.failures());
    assert_eq!(
        sup.call_tool("echo", r#"{"text":"fixed"}"#).await.unwrap(),
        "fixed"
    );
    sup.shutdown().await;
}

/// Kills the plugin's worker with SIGKILL and waits for its replacement.
async fn kill_and_wait_for_restart(sup: &Supervisor, name: &str) -> PluginStatus {
    let before = status(sup, name);
    let pid = before.pid.expect("running");
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("kill");
    until("the plugin running again", || {
        let s = status(sup, name);
        s.state == StateKind::Running && s.pid.is_some_and(|p| p != pid)
    })
    .await;
    status(sup, name)
}

#[tokio::test]
async fn a_restart_maps_the_cached_code_and_a_damaged_cache_entry_is_compiled_again() {
    use std::os::unix::fs::FileExt;
    let env = Env::new();
    env.add("echo-tool", "echo-tool", &echo_manifest());
    // A cache of its own, so the first start compiles.
    let cache = env.state().join("compile-cache");
    let mut config = env.config();
    config.cache_dir = Some(cache.clone());
    let sup = Supervisor::start(config).await.expect("start");
    let first = status(&sup, "echo-tool");
    assert_eq!(first.code, Some(CodeOrigin::Compiled), "{first:?}");
    let entry = || {
        let mut entries: Vec<_> = std::fs::read_dir(&cache)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
            .collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
        entries.pop().unwrap()
    };

    // The replacement is started from the compile cache: the worker maps
    // the stored artifact through the descriptor it inherits.
    let s = kill_and_wait_for_restart(&sup, "echo-tool").await;
    assert_eq!(s.code, Some(CodeOrigin::Mapped));
    assert_eq!(
        sup.call_tool("echo", r#"{"text":"mapped"}"#).await.unwrap(),
        "mapped"
    );

    // Cut short on disk: the supervisor sees a file it has not checked,
    // checks it, refuses it, and compiles again.
    let path = entry();
    let whole = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(whole / 2)
        .unwrap();
    let s = kill_and_wait_for_restart(&sup, "echo-tool").await;
    assert_eq!(s.code, Some(CodeOrigin::Compiled));
    assert_eq!(sup.call_tool("echo", r#"{"text":"a"}"#).await.unwrap(), "a");
    assert_eq!(
        std::fs::metadata(entry()).unwrap().len(),
        whole,
        "stored again"
    );

    // One byte of the code changed in place, the length kept: refused too.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(entry())
        .unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, whole - 100).unwrap();
    file.write_all_at(&[byte[0] ^ 0xff], whole - 100).unwrap();
    drop(file);
    let s = kill_and_wait_for_restart(&sup, "echo-tool").await;
    assert_eq!(s.code, Some(CodeOrigin::Compiled));
    assert_eq!(sup.call_tool("echo", r#"{"text":"b"}"#).await.unwrap(), "b");

    // And the entry stored after that is mapped again.
    let s = kill_and_wait_for_restart(&sup, "echo-tool").await;
    assert_eq!(s.code, Some(CodeOrigin::Mapped));
    assert_eq!(sup.call_tool("echo", r#"{"text":"c"}"#).await.unwrap(), "c");
    sup.shutdown().await;
}
