//! What many plugins on one machine rely on: an idle worker is never woken
//! (no epoch ticks, heartbeats that back off), and starts take turns.

use crate::common;

use std::time::Duration;

use common::{Env, echo_manifest, status, tool_manifest};
use prx_ipc::GuestErrorKind;
use prx_supervisor::worker_handle::Liveness;
use prx_supervisor::{CallError, Supervisor};

/// Times the threads of `pid` were switched off a CPU, by choice or not:
/// a thread that sleeps without waking adds nothing.
fn context_switches(pid: u32) -> u64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the worker's threads");
    tasks
        .flatten()
        .map(|t| std::fs::read_to_string(t.path().join("status")).unwrap_or_default())
        .flat_map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

/// The faulty test tool with fuel enough that the wall clock ends a spin,
/// and `resources` added to its `[resources]`.
fn faulty_env(resources: &str) -> Env {
    let env = Env::new();
    let limits = format!("[resources]\nmax_fuel = 1_000_000_000_000\n{resources}");
    env.add(
        "faulty",
        "faulty-tool",
        &tool_manifest("faulty", "faulty", &limits),
    );
    env
}

/// A call that never ends meets the worker's own deadline (not the
/// supervisor's backstop kill).
fn assert_deadline(result: Result<String, CallError>) {
    let err = result.expect_err("a spin cannot succeed");
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
}

#[tokio::test]
async fn an_idle_worker_is_never_woken_and_its_deadline_still_holds() {
    let env = faulty_env("max_execution_time_ms = 300\n");
    let mut config = env.config();
    // Heartbeats are the next test's; here only the worker's own threads.
    config.liveness = Liveness {
        interval: Duration::from_secs(60),
        ..Liveness::default()
    };
    let sup = Supervisor::start(config).await.unwrap();
    assert_eq!(
        sup.call_tool("faulty", r#"{"mode":"ok"}"#).await.unwrap(),
        "ok"
    );
    let pid = status(&sup, "faulty").pid.unwrap();

    // The epoch thread lingers 100 ms after a call, then parks.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = context_switches(pid);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = context_switches(pid);
    assert_eq!(
        after,
        before,
        "an idle worker's threads woke {} times in a second",
        after - before
    );

    // Parked is not stopped: a call that never ends still meets the
    // worker's own deadline.
    assert_deadline(sup.call_tool("faulty", r#"{"mode":"spin"}"#).await);
    assert_eq!(
        status(&sup, "faulty").pid,
        Some(pid),
        "the worker was not replaced"
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn heartbeats_back_off_while_a_worker_stays_idle() {
    let env = Env::new();
    env.add("echo-tool", "echo-tool", &echo_manifest());
    let mut config = env.config();
    config.liveness = Liveness {
        interval: Duration::from_millis(100),
        max_interval: Duration::from_millis(800),
        timeout: Duration::from_secs(1),
    };
    let sup = Supervisor::start(config).await.unwrap();
    assert_eq!(
        sup.call_tool("echo", r#"{"text":"hi"}"#).await.unwrap(),
        "hi"
    );
    let pid = status(&sup, "echo-tool").pid.unwrap();
    // Pings at about 0.1, 0.3, 0.7, 1.5, 2.3, 3.1 s after the call: at
    // most two in the window below, where pings every 100 ms would be 15.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let before = context_switches(pid);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = context_switches(pid);
    // A ping wakes the worker's main thread once or twice (the frame,
    // then the short poll for a next one).
    assert!(
        after - before <= 6,
        "{} context switches in 1.5 s of idle: heartbeats did not back off",
        after - before
    );
    // A call starts over from the short gap, and the worker still answers.
    assert_eq!(
        sup.call_tool("echo", r#"{"text":"again"}"#).await.unwrap(),
        "again"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status(&sup, "echo-tool").pid, Some(pid));
    assert_eq!(status(&sup, "echo-tool").restarts, 0);
    sup.shutdown().await;
}

#[tokio::test]
async fn starts_take_turns_and_each_deadline_counts_from_its_turn() {
    use prx_supervisor::plugin::{Runtime, StateKind};
    // Three waves of slow starts (400 ms each) behind the admission; a
    // load timeout of one second is enough for one start but not for
    // waiting through two waves first.
    let turns = Runtime::parallel_starts();
    let env = Env::new();
    for i in 0..turns * 3 {
        let name = format!("slow-start-{i:02}");
        env.add(
            &name,
            "echo-tool",
            &tool_manifest(&name, &format!("slow-{i:02}"), ""),
        );
    }
    let mut config = env.config();
    config.worker_binary = Some(env!("CARGO_BIN_EXE_fake-worker").into());
    config.sandbox.required.clear();
    config.load_timeout = Duration::from_secs(1);
    let started = std::time::Instant::now();
    let sup = Supervisor::start(config).await.unwrap();
    let took = started.elapsed();
    assert!(sup.failures().is_empty(), "{:?}", sup.failures());
    for plugin in sup.plugins() {
        assert_eq!(plugin.state, StateKind::Running, "{}", plugin.name);
        assert_eq!(plugin.restarts, 0, "{}", plugin.name);
    }
    // With more than `turns` at once, the three waves would overlap.
    assert!(
        took >= Duration::from_millis(3 * 400),
        "{} starts of 400 ms each finished in {took:?}: more than {turns} ran at once",
        turns * 3
    );
    sup.shutdown().await;
}

/// True while `pid` runs (a zombie does not).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

#[tokio::test]
async fn an_idle_worker_is_stopped_and_the_next_calls_start_one() {
    use prx_supervisor::plugin::StateKind;
    let env = Env::new();
    env.add(
        "echo-tool",
        "echo-tool",
        &tool_manifest("echo-tool", "echo", "[resources]\nidle_stop_s = 1\n"),
    );
    let sup = env.supervisor().await;
    assert_eq!(
        sup.call_tool("echo", r#"{"text":"hi"}"#).await.unwrap(),
        "hi"
    );
    let first = status(&sup, "echo-tool").pid.unwrap();

    common::until("the idle worker stopped", || {
        status(&sup, "echo-tool").state == StateKind::Idle
    })
    .await;
    let idle = status(&sup, "echo-tool");
    assert_eq!(idle.pid, None);
    assert_eq!(idle.idle_stops, 1);
    assert_eq!(idle.restarts, 0, "an idle stop is not a crash");
    common::until("the stopped worker gone", || !running(first)).await;

    // Calls that find it idle share one new worker.
    let calls = (0..8).map(|i| {
        let sup = sup.clone();
        async move { sup.call_tool("echo", &format!(r#"{{"text":"{i}"}}"#)).await }
    });
    let answers = futures_join_all(calls).await;
    for (i, answer) in answers.into_iter().enumerate() {
        assert_eq!(answer.unwrap(), i.to_string());
    }
    let woken = status(&sup, "echo-tool");
    assert_eq!(woken.state, StateKind::Running);
    assert!(woken.pid.is_some_and(|p| p != first));
    assert!(woken.last_wake_ms.is_some_and(|ms| ms > 0.0), "{woken:?}");
    assert_eq!(woken.restarts, 0);
    assert_eq!(woken.idle_stops, 1);
    sup.shutdown().await;
}

/// Runs the futures side by side and collects their outputs in order.
async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("a call task"));
    }
    out
}

#[tokio::test]
async fn with_two_workers_a_call_is_served_while_the_other_worker_is_busy() {
    use prx_supervisor::plugin::StateKind;
    let env = Env::new();
    let limits =
        "[resources]\nmax_fuel = 1_000_000_000_000\nmax_execution_time_ms = 2000\nworkers = 2\n";
    env.add(
        "faulty",
        "faulty-tool",
        &tool_manifest("faulty", "faulty", limits),
    );
    let sup = env.supervisor().await;
    let s = status(&sup, "faulty");
    assert_eq!(s.state, StateKind::Running);
    assert_eq!(s.spare_pids.len(), 1, "{s:?}");
    let first = s.pid.unwrap();
    let spare = s.spare_pids[0];
    assert_ne!(first, spare);

    // One worker spins until its deadline; the other answers meanwhile.
    // With one worker the second call would wait behind the first.
    let spinning = {
        let sup = sup.clone();
        tokio::spawn(async move { sup.call_tool("faulty", r#"{"mode":"spin"}"#).await })
    };
    common::until("a worker busy with the spin", || {
        sup.plugins().iter().any(|p| p.in_flight > 0) || spinning.is_finished()
    })
    .await;
    assert_eq!(
        sup.call_tool("faulty", r#"{"mode":"ok"}"#).await.unwrap(),
        "ok"
    );
    assert!(
        !spinning.is_finished(),
        "the second call waited for the first: it was not spread to the other worker"
    );
    assert_deadline(spinning.await.expect("the spinning call"));

    // A spare that dies is replaced by its own supervision.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(spare as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    common::until("the spare replaced", || {
        let s = status(&sup, "faulty");
        s.spare_pids.len() == 1 && s.spare_pids[0] != spare
    })
    .await;
    let s = status(&sup, "faulty");
    assert_eq!(s.pid, Some(first), "the first worker was not touched");
    assert_eq!(s.restarts, 1);
    assert_eq!(s.state, StateKind::Running);
    for _ in 0..4 {
        assert_eq!(
            sup.call_tool("faulty", r#"{"mode":"ok"}"#).await.unwrap(),
            "ok"
        );
    }
    sup.shutdown().await;
    for pid in [first, s.spare_pids[0]] {
        common::until("workers gone after shutdown", || !running(pid)).await;
    }
}
