//! The isolated tool call, end to end: real `prx` and `prx-worker`
//! processes, real wasm32-wasip2 plugins.

use crate::common;

use std::time::{Duration, Instant};

use common::{Daemon, Env, echo_manifest, parent_of, stderr, stdout, tool_manifest};
use prx_ipc::GuestErrorKind;
use prx_supervisor::CallError;
use prx_supervisor::plugin::StateKind;

/// How far past `max_execution_time_ms` a deadline error may arrive: the
/// epoch ticks every 5 ms; the rest is scheduling on a busy CI machine.
const DEADLINE_SLACK: Duration = Duration::from_millis(250);

#[test]
fn prx_call_echo_prints_hello_from_a_child_worker() {
    let env = Env::new();
    env.add("echo-tool", "echo-tool", &echo_manifest());
    let daemon = Daemon::start(&env);

    let out = daemon.cli(&["call", "echo", r#"{"text":"hello"}"#]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello\n");

    let list = daemon.cli(&["plugins", "--json"]);
    let plugins: serde_json::Value = serde_json::from_slice(&list.stdout).expect("json");
    let echo = &plugins[0];
    assert_eq!(echo["name"], "echo-tool");
    assert_eq!(echo["state"], "running");
    let pid = echo["pid"].as_u64().expect("worker pid") as u32;
    assert_ne!(pid, daemon.pid(), "the plugin runs in its own process");
    // The plugin runs in process 1 of its own PID namespace, whose parent
    // is the process the supervisor started.
    assert_eq!(
        parent_of(pid).and_then(parent_of),
        Some(daemon.pid()),
        "the supervisor is the worker's parent"
    );

    let table = stdout(&daemon.cli(&["plugins"]));
    assert!(
        table.contains("echo-tool")
            && table.contains("tool:echo")
            && table.contains(&pid.to_string()),
        "{table}"
    );
}

#[test]
fn prx_call_reports_errors_on_stderr_with_exit_1() {
    let env = Env::new();
    env.add("echo-tool", "echo-tool", &echo_manifest());
    let daemon = Daemon::start(&env);

    let out = daemon.cli(&["call", "nope", "{}"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).is_empty());
    assert!(
        stderr(&out).contains("no tool named `nope`; loaded tools: echo"),
        "{}",
        stderr(&out)
    );

    let out = daemon.cli(&["call", "echo", "{}"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("missing 'text' parameter"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn a_trap_is_an_error_naming_the_plugin_and_the_next_call_works() {
    let env = Env::new();
    env.add(
        "faulty",
        "faulty-tool",
        &tool_manifest("faulty", "faulty", ""),
    );
    let sup = env.supervisor().await;
    let pid = sup.plugins()[0].pid;

    let err = sup
        .call_tool("faulty", r#"{"mode":"trap"}"#)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            CallError::Guest {
                kind: GuestErrorKind::Trap,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        text.contains("plugin `faulty`") && text.contains("trapped: wasm `unreachable`"),
        "{text}"
    );

    assert_eq!(
        sup.call_tool("faulty", r#"{"mode":"ok"}"#).await.unwrap(),
        "ok"
    );
    assert_eq!(sup.plugins()[0].pid, pid, "a trap does not cost the worker");
    sup.shutdown().await;
}

#[tokio::test]
async fn an_endless_loop_stops_at_the_deadline_and_the_next_call_works() {
    let env = Env::new();
    // Fuel high enough that the wall clock, not fuel, stops the loop.
    let limits = "[resources]\nmax_fuel = 1_000_000_000_000\nmax_execution_time_ms = 300\n";
    env.add(
        "faulty",
        "faulty-tool",
        &tool_manifest("faulty", "faulty", limits),
    );
    let sup = env.supervisor().await;

    let started = Instant::now();
    let err = sup
        .call_tool("faulty", r#"{"mode":"spin"}"#)
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(
            err,
            CallError::Guest {
                kind: GuestErrorKind::Deadline,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("max_execution_time_ms = 300"),
        "{err}"
    );
    assert!(
        took >= Duration::from_millis(300),
        "stopped early: {took:?}"
    );
    assert!(
        took < Duration::from_millis(300) + DEADLINE_SLACK,
        "stopped late: {took:?}"
    );

    assert_eq!(
        sup.call_tool("faulty", r#"{"mode":"ok"}"#).await.unwrap(),
        "ok"
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn a_loop_in_start_up_code_is_cut_at_the_deadline_and_others_still_load() {
    let env = Env::new();
    let limits = "[resources]\nmax_fuel = 1_000_000_000_000\nmax_execution_time_ms = 400\n";
    env.add(
        "start-loop",
        "start-loop",
        &tool_manifest("start-loop", "never", limits),
    );
    env.add("echo-tool", "echo-tool", &echo_manifest());

    let started = Instant::now();
    let sup = env.supervisor().await;
    let failures = sup.failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(
        failures[0].error.contains("plugin `start-loop`"),
        "{}",
        failures[0].error
    );
    assert!(
        failures[0].error.contains("max_execution_time_ms = 400"),
        "{}",
        failures[0].error
    );
    // Compiling both plus the 400 ms deadline; far less than if it hung.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );

    assert_eq!(
        sup.call_tool("echo", r#"{"text":"still here"}"#)
            .await
            .unwrap(),
        "still here"
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn burning_fuel_names_the_plugin_and_max_fuel() {
    let env = Env::new();
    env.add(
        "faulty",
        "faulty-tool",
        &tool_manifest("faulty", "faulty", ""),
    );
    let sup = env.supervisor().await;

    let err = sup
        .call_tool("faulty", r#"{"mode":"burn"}"#)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CallError::Guest {
                kind: GuestErrorKind::OutOfFuel,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "plugin `faulty` ran out of fuel (max_fuel = 100000000); raise [resources].max_fuel in its plugin.toml if the work is legitimate"
    );
    assert_eq!(sup.call_tool("faulty", "{}").await.unwrap(), "ok");
    sup.shutdown().await;
}

#[tokio::test]
async fn growing_memory_past_the_limit_is_an_error_not_a_crash() {
    let env = Env::new();
    env.add(
        "faulty",
        "faulty-tool",
        &tool_manifest("faulty", "faulty", "[resources]\nmax_memory_mb = 16\n"),
    );
    env.add("echo-tool", "echo-tool", &echo_manifest());
    let sup = env.supervisor().await;
    let before = sup.plugins();

    let err = sup
        .call_tool("faulty", r#"{"mode":"grow"}"#)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CallError::Guest {
                kind: GuestErrorKind::MemoryLimit,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("past max_memory_mb = 16"), "{err}");

    assert_eq!(sup.call_tool("faulty", "{}").await.unwrap(), "ok");
    assert_eq!(sup.call_tool("echo", r#"{"text":"x"}"#).await.unwrap(), "x");
    let after = sup.plugins();
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b.pid, a.pid, "{} lost its worker", a.name);
        assert_eq!(a.restarts, 0);
    }
    sup.shutdown().await;
}

#[tokio::test]
async fn bad_plugins_are_refused_with_the_file_and_the_problem_and_others_load() {
    let env = Env::new();
    env.add("echo-tool", "echo-tool", &echo_manifest());
    env.add(
        "unknown-key",
        "echo-tool",
        &tool_manifest("unknown-key", "a", "[resources]\nmax_cpu = 1\n"),
    );
    env.add("escape", "echo-tool", &tool_manifest("../x", "b", ""));
    let missing = env.add(
        "missing-wasm",
        "echo-tool",
        &tool_manifest("missing-wasm", "c", ""),
    );
    std::fs::remove_file(missing.join("plugin.wasm")).unwrap();
    let hook_manifest = "[plugin]\nname = \"not-a-hook\"\nversion = \"0.1.0\"\nwasm = \"plugin.wasm\"\n\n[[capabilities]]\ntype = \"hook\"\nevents = [\"tool.*\"]\n";
    env.add("not-a-hook", "echo-tool", hook_manifest);

    let sup = env.supervisor().await;
    assert_eq!(
        sup.call_tool("echo", r#"{"text":"ok"}"#).await.unwrap(),
        "ok"
    );

    let failures = sup.failures();
    let find = |dir: &str| {
        failures
            .iter()
            .find(|f| f.dir.ends_with(dir))
            .unwrap_or_else(|| panic!("no failure for {dir}: {failures:?}"))
            .error
            .clone()
    };
    let e = find("unknown-key");
    assert!(
        e.contains("unknown-key/plugin.toml")
            && e.contains("unknown key `max_cpu`")
            && e.contains("line 11"),
        "{e}"
    );
    let e = find("escape");
    assert!(
        e.contains("escape/plugin.toml")
            && e.contains(r#"[plugin].name = "../x" is not a kebab-case name"#),
        "{e}"
    );
    let e = find("missing-wasm");
    assert!(
        e.contains("missing-wasm/plugin.toml") && e.contains("not found at"),
        "{e}"
    );
    let e = find("not-a-hook");
    assert!(
        e.contains("plugin `not-a-hook`")
            && e.contains("does not export prx:plugin/hook-exports@0.1.0")
            && e.contains("it exports prx:plugin/tool-exports@0.1.0"),
        "{e}"
    );
    assert_eq!(failures.len(), 4, "{failures:?}");

    let states: Vec<(String, StateKind)> = sup
        .plugins()
        .into_iter()
        .map(|p| (p.name, p.state))
        .collect();
    assert!(
        states.contains(&("echo-tool".into(), StateKind::Running)),
        "{states:?}"
    );
    assert!(
        states.contains(&("not-a-hook".into(), StateKind::Failed)),
        "{states:?}"
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn a_component_from_plain_wit_bindgen_with_wasi_loads_and_runs() {
    let env = Env::new();
    let manifest = tool_manifest("plain", "plain", "[config]\ngreeting = \"hi\"\n");
    env.add("plain", "plain-wit-bindgen", &manifest);
    let sup = env.supervisor().await;

    let out = sup.call_tool("plain", "{}").await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["greeting"], "hi", "config is served");
    assert_eq!(v["clock_ok"], true, "WASI clocks work");
    assert_eq!(v["env_vars"], 0, "no environment reaches the plugin");
    assert_eq!(
        v["can_list_root"], false,
        "no filesystem reaches the plugin"
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn the_supervisor_kills_a_worker_that_stops_answering() {
    let env = Env::new();
    env.add(
        "echo-tool",
        "echo-tool",
        &tool_manifest(
            "echo-tool",
            "echo",
            "[resources]\nmax_execution_time_ms = 200\n",
        ),
    );
    let mut config = env.config();
    config.deadline_grace = Duration::from_millis(300);
    let sup = prx_supervisor::Supervisor::start(config).await.unwrap();
    let pid = sup.plugins()[0].pid.unwrap();

    // A stopped process cannot run its epoch deadline: only the
    // supervisor's own deadline can end this call.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    let started = Instant::now();
    let err = sup.call_tool("echo", r#"{"text":"x"}"#).await.unwrap_err();
    assert!(matches!(err, CallError::Unresponsive { .. }), "{err:?}");
    assert!(
        err.to_string().contains("did not answer within 500 ms"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(500) + DEADLINE_SLACK,
        "{:?}",
        started.elapsed()
    );

    // The worker was killed and replaced; the plugin serves again.
    assert_eq!(
        sup.call_tool("echo", r#"{"text":"back"}"#).await.unwrap(),
        "back"
    );
    let status = &sup.plugins()[0];
    assert_ne!(status.pid, Some(pid));
    assert_eq!(status.restarts, 1);
    assert_eq!(
        status.last_exit.as_deref(),
        Some("killed by the supervisor: no answer within 500 ms")
    );
    sup.shutdown().await;
}
