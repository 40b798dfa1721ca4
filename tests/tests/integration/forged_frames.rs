//! A worker that lies is a security event: the supervisor survives, kills
//! it, quarantines the plugin at once (no restart), and keeps serving the
//! other plugins. The liar is `src/bin/fake-worker.rs`.

use crate::common;

use std::time::Duration;

use common::{Env, echo_manifest, tool_manifest, with_custom_section};
use prx_supervisor::plugin::StateKind;
use prx_supervisor::{CallError, ReloadOutcome, Supervisor};

/// Starts one plugin on the fake worker (behaving per `mode`) and echo on
/// the real one, in two supervisors sharing nothing.
async fn liar(mode: &str) -> (Env, Supervisor) {
    let env = Env::new();
    env.add(mode, "echo-tool", &tool_manifest(mode, "fake", ""));
    let sup = Supervisor::start(fake_config(&env)).await.expect("start");
    assert_eq!(sup.running(), 1, "{:?}", sup.failures());
    (env, sup)
}

/// The fake worker applies no sandbox: nothing is required of it (it
/// stands for a worker already taken over).
fn fake_config(env: &Env) -> prx_supervisor::SupervisorConfig {
    let mut config = env.config();
    config.worker_binary = Some(env!("CARGO_BIN_EXE_fake-worker").into());
    config.sandbox.required.clear();
    config
}

#[tokio::test]
async fn a_stalled_partial_frame_costs_one_call_and_a_flood_costs_nothing() {
    let honest_env = Env::new();
    honest_env.add("echo-tool", "echo-tool", &echo_manifest());
    let honest = honest_env.supervisor().await;

    // Half a header, then silence: the call's deadline kills the worker
    // (a stalled worker cannot be told from a slow one, so it is a crash,
    // restarted, not a quarantine).
    let env = Env::new();
    env.add(
        "partial-frame",
        "echo-tool",
        &tool_manifest(
            "partial-frame",
            "fake",
            "[resources]\nmax_execution_time_ms = 100\n",
        ),
    );
    let mut config = fake_config(&env);
    config.deadline_grace = Duration::from_millis(100);
    let sup = Supervisor::start(config).await.expect("start");
    let pid = sup.plugins()[0].pid.unwrap();
    let result = sup.call_tool("fake", "{}").await;
    assert!(
        matches!(result, Err(CallError::Unresponsive { .. })),
        "{result:?}"
    );
    let gone = || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z")
    };
    for _ in 0..200 {
        if gone() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(gone(), "the stalled worker was not killed");
    assert_eq!(
        honest.call_tool("echo", r#"{"text":"ok"}"#).await.unwrap(),
        "ok"
    );
    sup.shutdown().await;

    // 100,000 log frames before the answer: the answer arrives, the lines
    // past the rate limit are dropped and counted.
    let (_env, sup) = liar("flood").await;
    assert_eq!(sup.call_tool("fake", "{}").await.unwrap(), "honest");
    let status = sup.plugins()[0].clone();
    assert_eq!(status.state, StateKind::Running);
    assert!(status.log_dropped >= 99_000, "{}", status.log_dropped);
    assert_eq!(
        honest.call_tool("echo", r#"{"text":"ok"}"#).await.unwrap(),
        "ok"
    );
    sup.shutdown().await;
    honest.shutdown().await;
}

/// Starts a supervisor with one plugin whose fake worker acts as `mode`
/// says while it starts, and returns the plugin's quarantine reason: a lie
/// at start-up is a security event, not a failure to retry.
async fn quarantined_at_load(mode: &str) -> String {
    let env = Env::new();
    env.add(mode, "echo-tool", &tool_manifest(mode, "fake", ""));
    let sup = Supervisor::start(fake_config(&env)).await.expect("start");
    assert_eq!(sup.running(), 0);
    let status = sup.plugins()[0].clone();
    assert_eq!(status.state, StateKind::Quarantined, "{mode}: {status:?}");
    assert_eq!(status.restarts, 0, "{mode}: {status:?}");
    sup.shutdown().await;
    status.error.unwrap_or_default()
}

#[tokio::test]
async fn a_worker_that_lies_about_its_sandbox_is_quarantined_at_load() {
    // It claims every layer; the first the kernel contradicts is its PID
    // namespace: the process the supervisor started has no child in one.
    let reason = quarantined_at_load("sandbox-liar").await;
    assert!(
        reason.contains("security event")
            && reason.contains("reports sandbox layer `namespaces` applied, but process")
            && reason.contains("has not exactly one child in a PID namespace"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_worker_claiming_code_it_was_not_given_is_quarantined_at_load() {
    // Sent a component to compile, it says it loaded and mapped code: a
    // compile worker runs nothing, so it has nothing to report but an
    // artifact.
    let reason = quarantined_at_load("code-lie").await;
    assert!(
        reason.contains("security event: the worker broke the protocol")
            && reason.contains("from a compile worker, which runs no plugin code"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_new_version_that_lies_while_starting_is_refused_and_the_old_one_serves() {
    // The running version behaves; the new one (marked bytes) claims code
    // it was not given. The reload is refused as a security event, and
    // quarantining the name would stop the version that did nothing wrong.
    let env = Env::new();
    let dir = env.add(
        "reload-liar",
        "echo-tool",
        &tool_manifest("reload-liar", "fake", ""),
    );
    let mut config = fake_config(&env);
    config.watch = false;
    config.retry_poll = Duration::ZERO;
    let sup = Supervisor::start(config).await.expect("start");
    assert_eq!(sup.running(), 1, "{:?}", sup.failures());
    let pid = sup.plugins()[0].pid;

    let wasm = std::fs::read(dir.join("plugin.wasm")).expect("wasm");
    let wasm = with_custom_section(wasm, "prx-fake-lie", b"");
    std::fs::write(dir.join("plugin.wasm"), &wasm).expect("write the new version");

    let outcomes = sup.reload(Some("reload-liar")).await.expect("reload");
    let [ReloadOutcome::Refused { error, .. }] = outcomes.as_slice() else {
        panic!("{outcomes:?}");
    };
    assert!(
        error.contains("security event: the worker broke the protocol")
            && error.contains("from a compile worker, which runs no plugin code"),
        "{error}"
    );
    let status = sup.plugins()[0].clone();
    assert_eq!(status.state, StateKind::Running, "{status:?}");
    assert_eq!(status.pid, pid, "the old version serves on");
    assert!(
        status
            .reload_error
            .is_some_and(|e| e.contains("security event")),
        "the refusal is in the status"
    );
    assert_eq!(sup.call_tool("fake", "{}").await.unwrap(), "honest");
    sup.shutdown().await;
}

#[tokio::test]
async fn a_quarantine_for_a_forged_frame_is_never_lifted_by_a_timer() {
    let env = Env::new();
    env.add(
        "forge-reply-id",
        "echo-tool",
        &tool_manifest("forge-reply-id", "fake", ""),
    );
    let mut config = fake_config(&env);
    // A crash loop here would be tried again within 0.2 s.
    config.restart.quarantine_cooldown = Duration::from_millis(200);
    config.restart.quarantine_cooldown_max = Duration::from_millis(200);
    let sup = Supervisor::start(config).await.expect("start");
    assert!(sup.call_tool("fake", "{}").await.is_err());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let status = sup.plugins()[0].clone();
    assert_eq!(status.state, StateKind::Quarantined, "{status:?}");
    assert_eq!(status.restart_at_ms, None, "no release is planned");
    assert_eq!(status.restarts, 0);
    let reason = status.error.unwrap();
    assert!(
        reason.contains("release it with `prx release forge-reply-id`")
            && !reason.contains("tried again"),
        "{reason}"
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn each_forged_or_malformed_frame_quarantines_the_plugin() {
    let honest_env = Env::new();
    honest_env.add("echo-tool", "echo-tool", &echo_manifest());
    let honest = honest_env.supervisor().await;

    for (mode, evidence) in [
        ("forge-reply-id", "reply to unknown request id"),
        ("double-reply", "reply to unknown request id"),
        ("unknown-kind", "unknown frame kind 200"),
        ("oversized", "exceeds the 16777216-byte maximum"),
        ("trailing-bytes", "trailing bytes"),
        ("pong-without-ping", "pong 424242 to no ping"),
        (
            "wrong-type",
            "a reply of the wrong type to a call of prx:plugin/tool-exports@0.1.0",
        ),
        (
            "call-not-imported",
            "memory.recall to prx:host/memory@0.1.0, which the component does not import",
        ),
        // Lies in the shared memory the frames travel through.
        ("ring-writer-ahead", "unread bytes, more than its 65536"),
        ("ring-reader-ahead", "the ring's reader claims a position"),
        // A frame on the socket, which carries wake-ups only.
        (
            "socket-frame",
            "on the link's socket, where only wake-ups travel",
        ),
    ] {
        let (_env, sup) = liar(mode).await;
        let pid = sup.plugins()[0].pid.unwrap();
        let result = sup.call_tool("fake", "{}").await;
        if mode == "double-reply" {
            // The first reply is genuine; the second one is the lie.
            assert_eq!(result.unwrap(), "honest");
        } else if mode == "wrong-type" {
            // The reply arrived, but no tool returns that.
            assert!(
                matches!(result, Err(CallError::BadReply { .. })),
                "{mode}: {result:?}"
            );
        } else {
            assert!(
                matches!(result, Err(CallError::Crashed { .. })),
                "{mode}: {result:?}"
            );
        }
        let mut status = sup.plugins()[0].clone();
        for _ in 0..400 {
            if status.state == StateKind::Quarantined {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            status = sup.plugins()[0].clone();
        }
        assert_eq!(status.state, StateKind::Quarantined, "{mode}: {status:?}");
        assert_eq!(
            status.restarts, 0,
            "{mode}: a security event is not restarted"
        );
        let reason = status.error.unwrap_or_default();
        assert!(
            reason.contains("protocol violation") && reason.contains(evidence),
            "{mode}: {reason}"
        );
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .unwrap_or_default()
                    .contains(") Z"),
            "{mode}: the lying worker was not killed"
        );
        let err = sup.call_tool("fake", "{}").await.unwrap_err();
        assert!(err.to_string().contains("quarantined"), "{mode}: {err}");
        // The supervisor is unharmed and other plugins serve.
        assert_eq!(
            honest.call_tool("echo", r#"{"text":"ok"}"#).await.unwrap(),
            "ok"
        );
        sup.shutdown().await;
    }
    honest.shutdown().await;
}

#[tokio::test]
async fn fuel_a_worker_reports_is_capped_at_the_plugins_limit() {
    // A worker can say anything about the fuel a call used; it only feeds
    // the metrics, and each call counts at most the plugin's max_fuel.
    let (_env, sup) = liar("fuel-lie").await;
    for _ in 0..3 {
        assert_eq!(sup.call_tool("fake", "{}").await.unwrap(), "honest");
    }
    let status = sup.plugins()[0].clone();
    let max_fuel = prx_supervisor::manifest::DEFAULT_MAX_FUEL;
    // get-spec at load, then three calls.
    assert_eq!(status.calls.fuel_used, 4 * max_fuel, "{status:?}");
    assert_eq!(status.calls.calls, 3);
    let text = prx_supervisor::api::exposition::render(&sup);
    assert!(
        text.contains(&format!(
            "prx_plugin_fuel_consumed_total{{plugin=\"fuel-lie\"}} {}",
            4 * max_fuel
        )),
        "{text}"
    );
    assert_eq!(
        status.state,
        StateKind::Running,
        "a metric is not a protocol violation"
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn a_compile_worker_that_answers_with_bytes_of_its_own_poisons_no_other_plugin() {
    // The liar compiles the echo component and sends back bytes of its
    // choosing. Its own later starts map them (it only harms itself)...
    let (_env, sup) = liar("evil-compile").await;
    assert_eq!(sup.call_tool("fake", "{}").await.unwrap(), "GOT-EVIL");
    sup.shutdown().await;
    // ...and the same bytes in another plugin, on the same compile cache,
    // are compiled for that plugin: it never maps the liar's artifact.
    let (_env, sup) = liar("copycat").await;
    assert_eq!(sup.call_tool("fake", "{}").await.unwrap(), "honest");
    sup.shutdown().await;
}

#[tokio::test]
async fn a_host_call_before_the_sandbox_is_confirmed_is_a_security_event() {
    // No code of the plugin may run before every layer is in place and
    // checked: a host call before `Confined` can only come from code that
    // ran too early.
    let reason = quarantined_at_load("host-call-before-confined").await;
    assert!(
        reason.contains("security event")
            && reason.contains("before the worker reported its sandbox"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_worker_that_floods_host_calls_and_never_reads_cannot_wedge_its_plugin() {
    // Once loaded, it sends host calls without end and reads nothing: the
    // supervisor's answers fill the socket. No write may wait on it for
    // ever: calls fail within their deadline, the worker is killed and
    // restarted, and shutdown completes.
    let env = Env::new();
    env.add(
        "flood-no-read",
        "echo-tool",
        &tool_manifest(
            "flood-no-read",
            "fake",
            "[resources]\nmax_execution_time_ms = 200\n",
        ),
    );
    let mut config = fake_config(&env);
    config.deadline_grace = Duration::from_millis(200);
    let sup = Supervisor::start(config).await.expect("start");
    for _ in 0..3 {
        let call = tokio::time::timeout(Duration::from_secs(20), sup.call_tool("fake", "{}"))
            .await
            .expect("a call to a worker that does not read came back");
        assert!(call.is_err(), "{call:?}");
    }
    common::eventually("a restart", async || {
        (sup.plugins()[0].restarts >= 1).then_some(())
    })
    .await;
    tokio::time::timeout(Duration::from_secs(20), sup.shutdown())
        .await
        .expect("shutdown completes");
}

#[tokio::test]
async fn fatal_frames_at_socket_speed_are_held_to_the_log_rate() {
    // 100,000 `Fatal` frames before the answer: like log lines, they are
    // dropped and counted past the plugin's rate.
    let (_env, sup) = liar("fatal-flood").await;
    let started = std::time::Instant::now();
    assert_eq!(sup.call_tool("fake", "{}").await.unwrap(), "honest");
    let took = started.elapsed().as_secs_f64();
    let status = sup.plugins()[0].clone();
    assert_eq!(status.state, StateKind::Running);
    // The default rate: a burst of 500 lines, then 100 a second.
    let let_through = 100_000 - status.log_dropped.min(100_000);
    assert!(
        let_through as f64 <= 500.0 + 100.0 * took + 1.0,
        "{let_through} lines let through in {took:.2} s"
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn events_published_outside_any_call_carry_the_publisher_and_are_rate_limited() {
    // After its answer, with no call pending, it publishes 20,000 events
    // as fast as the link allows. Each carries the publisher in its chain
    // (so no loop through it can start), and past the per-plugin rate the
    // rest are refused.
    let env = Env::new();
    env.add(
        "publish-after-reply",
        "echo-tool",
        &tool_manifest(
            "publish-after-reply",
            "fake",
            "[permissions]\nrequired = [\"events\"]\n",
        ),
    );
    let sup = Supervisor::start(fake_config(&env)).await.expect("start");
    let mut ticks = sup.subscribe("loop.tick").expect("subscribe");
    let baseline = sup.events_published();
    assert_eq!(sup.call_tool("fake", "{}").await.unwrap(), "honest");
    let first = tokio::time::timeout(Duration::from_secs(10), ticks.recv())
        .await
        .expect("an event")
        .expect("the bus is open");
    assert_eq!(
        first
            .chain
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>(),
        ["publish-after-reply"]
    );
    let published = common::eventually("the publishing to end", async || {
        let before = sup.events_published();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after = sup.events_published();
        (before == after).then_some(after - baseline)
    })
    .await;
    assert!(
        (2_000..20_000).contains(&published),
        "{published} of 20,000 published (a burst of 2,000, then 1,000/s)"
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn a_worker_cannot_resize_the_shared_memory_under_the_supervisor() {
    // Shrunk, the supervisor's next read of its mapping would fault and
    // kill it; the memory is sealed before the worker gets it.
    let (_env, sup) = liar("ring-resize").await;
    let said = sup.call_tool("fake", "{}").await.unwrap();
    assert!(
        said.contains("refused 0: EPERM") && said.contains("refused 1073741824: EPERM"),
        "{said}"
    );
    assert_eq!(sup.call_tool("fake", "{}").await.unwrap().len(), said.len());
    assert_eq!(sup.plugins()[0].state, StateKind::Running);
    sup.shutdown().await;
}

#[tokio::test]
async fn a_flood_of_wake_ups_does_not_stall_the_supervisor() {
    // The worker's second thread writes wake-ups as fast as it can, for
    // good; the supervisor drains them in its reading task, which must
    // still let every other task run (a single-threaded runtime would
    // otherwise never get to the next call).
    let env = Env::new();
    env.add(
        "wake-flood",
        "echo-tool",
        &tool_manifest("wake-flood", "fake", ""),
    );
    let sup = Supervisor::start(fake_config(&env)).await.expect("start");
    for _ in 0..50 {
        assert_eq!(sup.call_tool("fake", "{}").await.unwrap(), "honest");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let status = sup.plugins()[0].clone();
    assert_eq!(status.state, StateKind::Running, "{status:?}");
    assert_eq!(status.restarts, 0);
    sup.shutdown().await;
}

#[test]
fn an_endless_flood_of_frames_cannot_keep_the_supervisor_from_its_deadlines() {
    // The worker fills the ring with log lines for good, on a
    // single-threaded runtime: the task reading them must still yield, or
    // the call's deadline (and everything else) would never run. The test
    // watches from another thread, so a stall fails it instead of hanging.
    let (done, outcome) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let env = Env::new();
            env.add(
                "frame-flood",
                "echo-tool",
                &tool_manifest(
                    "frame-flood",
                    "fake",
                    "[resources]\nmax_execution_time_ms = 200\n",
                ),
            );
            let mut config = fake_config(&env);
            config.deadline_grace = Duration::from_millis(100);
            let sup = Supervisor::start(config).await.expect("start");
            let result = sup.call_tool("fake", "{}").await;
            let dropped = sup.plugins()[0].log_dropped;
            sup.shutdown().await;
            let _ = done.send(format!("{result:?} dropped={dropped}"));
        });
    });
    let outcome = outcome
        .recv_timeout(Duration::from_secs(60))
        .expect("the supervisor's runtime stalled under the flood");
    assert!(outcome.contains("Unresponsive"), "{outcome}");
    let dropped: u64 = outcome.rsplit('=').next().unwrap().parse().unwrap();
    assert!(dropped > 0, "{outcome}");
}
