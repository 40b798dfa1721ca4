//! Supervision of a running plugin's worker: what an exit means, when to
//! restart and after how long, when to quarantine. One task per plugin
//! watches its worker from start to stop.
//!
//! The loop ([`watch`]) sees a worker only through [`Supervised`] and the
//! plugin only through [`Keeper`], so its unit tests drive it with fakes:
//! no process is started.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use crate::config::RestartPolicy;
use crate::worker_handle::{ExitCause, StartError, Worker};

use super::heal::Quarantine;
use super::{Plugin, PluginState, Runtime};

/// Why a worker ended, as the operator should read it.
enum Exit {
    /// The worker broke the protocol or was killed by seccomp: a security
    /// event, quarantined at once.
    Security(String),
    /// Anything else unexpected: restarted with backoff.
    Crash(String),
}

/// What a worker's end means: `violation` is the protocol violation the
/// supervisor saw (if any), `kill_reason` why the supervisor killed it (if
/// it did), `status` how the process ended.
fn classify_exit(
    violation: Option<String>,
    kill_reason: Option<String>,
    status: &ExitCause,
) -> Exit {
    if let Some(what) = violation {
        return Exit::Security(format!("protocol violation: {what}"));
    }
    if status.is_seccomp_kill() {
        return Exit::Security("killed by seccomp (a forbidden system call)".into());
    }
    Exit::Crash(kill_reason.unwrap_or_else(|| status.to_string()))
}

/// Why a new worker that failed to get ready (`error`) is taken out: a
/// protocol violation or a forbidden system call while it started up is a
/// security event, anything else one more crash. Kills it first.
pub(super) async fn init_failed<W: Supervised>(worker: &W, error: String) -> Quarantine {
    worker.kill();
    let status = worker.exited().await;
    match classify_exit(worker.violation_seen(), None, &status) {
        Exit::Security(why) => Quarantine::Security(why),
        Exit::Crash(_) => Quarantine::Crashes(error),
    }
}

/// The restart decisions of one plugin's supervision, apart from any
/// process: crashes are counted in a sliding window, restarts are spaced
/// by [`backoff`], and a plugin that crashes too often is quarantined.
#[derive(Debug)]
struct Restarts {
    policy: RestartPolicy,
    /// When each crash inside the window happened.
    crashes: VecDeque<Instant>,
    /// Restarts since the last worker that ran long enough to be healthy.
    consecutive: u32,
}

/// What to do after a crash.
#[derive(Debug, PartialEq)]
enum Next {
    /// Start a new worker after this long.
    RestartAfter(Duration),
    /// Too many crashes in the window: stop restarting, for this reason.
    Quarantine(Quarantine),
}

impl Restarts {
    fn new(policy: RestartPolicy) -> Self {
        Self {
            policy,
            crashes: VecDeque::new(),
            consecutive: 0,
        }
    }

    /// A worker that served for `uptime` ended: one that ran long enough
    /// to count as healthy starts the backoff afresh.
    fn worker_ended(&mut self, uptime: Duration) {
        if uptime >= self.policy.healthy_after {
            self.consecutive = 0;
        }
    }

    /// One more crash at `now` (a worker's end, or a restart that failed),
    /// whose cause was `cause`.
    fn crashed(&mut self, now: Instant, cause: &str) -> Next {
        self.crashes.push_back(now);
        while self
            .crashes
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.policy.crash_window)
        {
            self.crashes.pop_front();
        }
        if self.crashes.len() > self.policy.max_crashes as usize {
            return Next::Quarantine(Quarantine::Crashes(format!(
                "{} crashes within {} s (last: {cause})",
                self.crashes.len(),
                self.policy.crash_window.as_secs()
            )));
        }
        let delay = backoff(&self.policy, self.consecutive);
        self.consecutive += 1;
        Next::RestartAfter(delay)
    }
}

/// The wait before restart number `consecutive` (0 = the first after a
/// healthy run): none, then `initial`, doubling up to `max`, each with
/// ±25 % jitter so plugins that crashed together do not restart together.
pub fn backoff(policy: &RestartPolicy, consecutive: u32) -> Duration {
    if consecutive == 0 {
        return Duration::ZERO;
    }
    let doublings = (consecutive - 1).min(20);
    let base = policy
        .backoff_initial
        .saturating_mul(1 << doublings)
        .min(policy.backoff_max);
    base.mul_f64(0.75 + fastrand::f64() * 0.5)
        .min(policy.backoff_max)
}

/// What supervision needs of a worker process: the real [`Worker`], or a
/// fake in the tests below.
pub(super) trait Supervised: Send + Sync + 'static {
    /// Resolves once the process has ended, with how it ended.
    fn exited(&self) -> impl Future<Output = ExitCause> + Send;
    /// The protocol violation the supervisor saw, if any.
    fn violation_seen(&self) -> Option<String>;
    /// Why the supervisor killed it, if it did.
    fn kill_reason(&self) -> Option<String>;
    fn uptime(&self) -> Duration;
    fn kill(&self);
    /// The plugin stopped it (an idle stop): its exit is no crash.
    fn stopped_on_purpose(&self) -> bool;
}

impl Supervised for Worker {
    fn exited(&self) -> impl Future<Output = ExitCause> + Send {
        Worker::exited(self)
    }
    fn violation_seen(&self) -> Option<String> {
        Worker::violation_seen(self)
    }
    fn kill_reason(&self) -> Option<String> {
        Worker::kill_reason(self)
    }
    fn uptime(&self) -> Duration {
        Worker::uptime(self)
    }
    fn stopped_on_purpose(&self) -> bool {
        Worker::stopped_on_purpose(self)
    }
    fn kill(&self) {
        Worker::kill(self)
    }
}

/// What supervision does to the plugin it watches: the effects of its
/// decisions, apart from the decisions themselves.
pub(super) trait Keeper: Send + Sync {
    type Worker: Supervised;
    /// The plugin is being stopped: supervision ends.
    fn is_stopping(&self) -> bool;
    /// Its worker ended and serves no more; `cause` is recorded and
    /// announced (`security` when it is a security event).
    fn lost(&self, worker: &Self::Worker, cause: &str, security: bool);
    /// Takes the plugin out (a crash loop lifts itself after a cool-down).
    fn quarantine(&self, why: Quarantine);
    /// Start-up fails the same way each time: the plugin is failed.
    fn fail(&self, reason: String);
    /// Waits `delay` before a restart (cut short when an operator wakes it).
    fn back_off(&self, delay: Duration) -> impl Future<Output = ()> + Send;
    /// A restart begins (counted).
    fn restarting(&self);
    fn start(&self) -> impl Future<Output = Result<Arc<Self::Worker>, StartError>> + Send;
    /// Readies a new worker to serve (a tool's spec, a module's on-load).
    fn init(&self, worker: &Self::Worker) -> impl Future<Output = Result<(), String>> + Send;
    /// A start that failed with `cause` and will be tried again.
    fn start_failed(&self, cause: &str);
    /// The new worker serves, `took` after the restart began.
    fn serving(&self, worker: Arc<Self::Worker>, took: Duration);
}

/// One-for-one supervision of a plugin's worker: waits for it to exit and
/// starts a new one, with backoff; quarantines a plugin that keeps
/// crashing or whose worker breaks the protocol.
pub(super) async fn supervise(plugin: Arc<Plugin>, rt: Runtime, worker: Arc<Worker>) {
    let policy = rt.restart;
    watch(&Live { plugin, rt }, policy, worker).await;
}

/// The supervision loop over any [`Keeper`].
pub(super) async fn watch<K: Keeper>(
    keeper: &K,
    policy: RestartPolicy,
    mut worker: Arc<K::Worker>,
) {
    let mut restarts = Restarts::new(policy);
    loop {
        let status = worker.exited().await;
        if keeper.is_stopping() || worker.stopped_on_purpose() {
            return;
        }
        let exit = classify_exit(worker.violation_seen(), worker.kill_reason(), &status);
        let (cause, security) = match &exit {
            Exit::Security(c) => (c.clone(), true),
            Exit::Crash(c) => (c.clone(), false),
        };
        keeper.lost(&worker, &cause, security);
        if security {
            keeper.quarantine(Quarantine::Security(cause));
            return;
        }
        restarts.worker_ended(worker.uptime());
        // Restart attempts: a worker that cannot even be started counts as
        // one more crash and goes round again.
        let mut cause = cause;
        worker = loop {
            let delay = match restarts.crashed(Instant::now(), &cause) {
                Next::RestartAfter(delay) => delay,
                Next::Quarantine(why) => {
                    keeper.quarantine(why);
                    return;
                }
            };
            if !delay.is_zero() {
                keeper.back_off(delay).await;
            }
            if keeper.is_stopping() {
                return;
            }
            keeper.restarting();
            let started = Instant::now();
            match keeper.start().await {
                Ok(new) => {
                    if let Err(e) = keeper.init(&new).await {
                        match init_failed(&*new, e).await {
                            security @ Quarantine::Security(_) => {
                                keeper.quarantine(security);
                                return;
                            }
                            // One more crash: the instance never served.
                            Quarantine::Crashes(e) => {
                                cause = e;
                                continue;
                            }
                        }
                    }
                    if keeper.is_stopping() {
                        new.kill();
                        return;
                    }
                    keeper.serving(new.clone(), started.elapsed());
                    break new;
                }
                Err(e) if e.is_security_event() => {
                    keeper.quarantine(Quarantine::Security(e.reason()));
                    return;
                }
                Err(e @ (StartError::Load { .. } | StartError::Sandbox(_))) => {
                    // The same bytes fail the same way: retrying cannot help.
                    keeper.fail(format!("restart failed: {e}"));
                    return;
                }
                Err(e) => {
                    cause = e.to_string();
                    keeper.start_failed(&cause);
                }
            }
        };
    }
}

/// The [`Keeper`] of a real plugin.
struct Live {
    plugin: Arc<Plugin>,
    rt: Runtime,
}

impl Keeper for Live {
    type Worker = Worker;

    fn is_stopping(&self) -> bool {
        self.plugin.stopping.load(Ordering::SeqCst)
    }

    fn lost(&self, worker: &Worker, cause: &str, security: bool) {
        let plugin = &self.plugin;
        plugin.worker.send_replace(None);
        *plugin.last_exit.lock().unwrap_or_else(|p| p.into_inner()) = Some(cause.to_owned());
        plugin.announce(
            "prx.lifecycle.crashed",
            serde_json::json!({
                "pid": worker.pid(),
                "cause": cause,
                "security": security,
            }),
        );
        if security {
            tracing::error!(plugin = %plugin.name, pid = worker.pid(), event = "prx.lifecycle.crashed",
                security = true, reason = %cause, "worker stopped for a security reason");
        } else {
            tracing::warn!(plugin = %plugin.name, pid = worker.pid(), event = "prx.lifecycle.crashed",
                %cause, "worker exited unexpectedly");
        }
    }

    fn quarantine(&self, why: Quarantine) {
        self.plugin.quarantine(&self.rt, why);
    }

    fn fail(&self, reason: String) {
        self.plugin.fail_logged(reason);
    }

    fn back_off(&self, delay: Duration) -> impl Future<Output = ()> + Send {
        let plugin = &self.plugin;
        plugin.set_state(PluginState::BackingOff {
            until: SystemTime::now() + delay,
        });
        tracing::info!(plugin = %plugin.name, delay_ms = delay.as_millis() as u64,
            "backing off before restarting");
        async move {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = plugin.wake.notified() => {}
            }
        }
    }

    fn restarting(&self) {
        let plugin = &self.plugin;
        plugin.set_state(PluginState::Restarting);
        plugin.restarts.fetch_add(1, Ordering::Relaxed);
        plugin.stats().count_restart();
    }

    fn start(&self) -> impl Future<Output = Result<Arc<Worker>, StartError>> + Send {
        self.plugin.start_worker(&self.rt)
    }

    async fn init(&self, worker: &Worker) -> Result<(), String> {
        let ready = self.plugin.init_worker(worker, &self.rt).await;
        if let Err(e) = &ready {
            tracing::warn!(plugin = %self.plugin.name, "restarted worker failed to initialise: {e}");
        }
        ready
    }

    fn start_failed(&self, cause: &str) {
        tracing::warn!(plugin = %self.plugin.name, "restart failed: {cause}");
        *self
            .plugin
            .last_exit
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(cause.to_owned());
    }

    fn serving(&self, worker: Arc<Worker>, took: Duration) {
        let plugin = &self.plugin;
        tracing::info!(plugin = %plugin.name, pid = worker.pid(), event = "prx.lifecycle.restarted",
            took_ms = took.as_millis() as u64, "worker restarted");
        plugin.announce(
            "prx.lifecycle.restarted",
            serde_json::json!({
                "pid": worker.pid(),
                "restarts": plugin.restarts.load(Ordering::Relaxed),
            }),
        );
        plugin.worker.send_replace(Some(worker));
        plugin.set_state(PluginState::Running);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker_handle::ExitHow;

    #[test]
    fn backoff_is_immediate_then_doubles_with_jitter_up_to_the_cap() {
        let policy = RestartPolicy::default();
        assert_eq!(backoff(&policy, 0), Duration::ZERO);
        for (n, base_ms) in [(1u32, 100u64), (2, 200), (3, 400), (4, 800)] {
            for _ in 0..50 {
                let d = backoff(&policy, n).as_millis() as u64;
                assert!(
                    d >= base_ms * 3 / 4 && d <= base_ms * 5 / 4,
                    "restart {n}: {d} ms"
                );
            }
        }
        for _ in 0..50 {
            assert!(backoff(&policy, 30) <= policy.backoff_max);
            assert!(backoff(&policy, 30) >= policy.backoff_max.mul_f64(0.75));
        }
    }

    fn policy() -> RestartPolicy {
        RestartPolicy {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            healthy_after: Duration::from_secs(30),
            max_crashes: 3,
            crash_window: Duration::from_secs(60),
            ..RestartPolicy::default()
        }
    }

    fn delay(next: Next) -> Duration {
        match next {
            Next::RestartAfter(delay) => delay,
            Next::Quarantine(why) => panic!("quarantined: {why:?}"),
        }
    }

    #[test]
    fn crashes_past_the_limit_within_the_window_quarantine() {
        let mut restarts = Restarts::new(policy());
        let t0 = Instant::now();
        // The first restart is immediate, the next ones back off.
        assert_eq!(delay(restarts.crashed(t0, "a")), Duration::ZERO);
        assert!(delay(restarts.crashed(t0 + Duration::from_secs(1), "b")) > Duration::ZERO);
        assert!(delay(restarts.crashed(t0 + Duration::from_secs(2), "c")) > Duration::ZERO);
        // The fourth within 60 s is one too many.
        assert_eq!(
            restarts.crashed(t0 + Duration::from_secs(3), "d"),
            Next::Quarantine(Quarantine::Crashes(
                "4 crashes within 60 s (last: d)".into()
            ))
        );
    }

    #[test]
    fn crashes_that_left_the_window_no_longer_count() {
        let mut restarts = Restarts::new(policy());
        let t0 = Instant::now();
        for i in 0..3 {
            delay(restarts.crashed(t0 + Duration::from_secs(i), "early"));
        }
        // A minute later the three early crashes are out of the window.
        let later = t0 + Duration::from_secs(2 + 61);
        delay(restarts.crashed(later, "late"));
        assert_eq!(restarts.crashes.len(), 1);
    }

    #[test]
    fn a_healthy_run_restarts_the_backoff_and_a_short_one_does_not() {
        let mut restarts = Restarts::new(policy());
        let t0 = Instant::now();
        delay(restarts.crashed(t0, "a"));
        delay(restarts.crashed(t0, "b"));
        assert_eq!(restarts.consecutive, 2);
        restarts.worker_ended(Duration::from_secs(5));
        assert_eq!(restarts.consecutive, 2, "5 s is not healthy");
        restarts.worker_ended(Duration::from_secs(30));
        assert_eq!(restarts.consecutive, 0);
        assert_eq!(delay(restarts.crashed(t0, "c")), Duration::ZERO);
    }

    #[test]
    fn a_violation_or_a_seccomp_kill_is_a_security_event_anything_else_a_crash() {
        let signal = |n: i32| ExitCause {
            how: ExitHow::Signal(n),
            out_of_memory: false,
        };
        let sigsys = signal(nix::libc::SIGSYS);
        assert!(matches!(
            classify_exit(Some("forged id".into()), None, &signal(9)),
            Exit::Security(why) if why == "protocol violation: forged id"
        ));
        assert!(matches!(
            classify_exit(None, None, &sigsys),
            Exit::Security(_)
        ));
        assert!(matches!(
            classify_exit(None, Some("no heartbeat".into()), &signal(9)),
            Exit::Crash(why) if why == "no heartbeat"
        ));
        assert!(matches!(
            classify_exit(None, None, &signal(9)),
            Exit::Crash(_)
        ));
    }

    /// A worker process that has already ended the way it was told to.
    struct FakeWorker {
        id: u32,
        how: ExitHow,
        violation: Option<String>,
        uptime: Duration,
        killed: std::sync::atomic::AtomicBool,
        on_purpose: bool,
    }

    impl FakeWorker {
        fn crashed(id: u32) -> Arc<Self> {
            Arc::new(Self {
                id,
                how: ExitHow::Signal(9),
                violation: None,
                uptime: Duration::from_secs(1),
                killed: false.into(),
                on_purpose: false,
            })
        }
    }

    impl Supervised for FakeWorker {
        fn exited(&self) -> impl Future<Output = ExitCause> + Send {
            let how = self.how.clone();
            async move {
                ExitCause {
                    how,
                    out_of_memory: false,
                }
            }
        }
        fn violation_seen(&self) -> Option<String> {
            self.violation.clone()
        }
        fn kill_reason(&self) -> Option<String> {
            None
        }
        fn stopped_on_purpose(&self) -> bool {
            self.on_purpose
        }
        fn uptime(&self) -> Duration {
            self.uptime
        }
        fn kill(&self) {
            self.killed.store(true, Ordering::SeqCst);
        }
    }

    /// A plugin whose starts and inits are scripted, and which writes down
    /// what supervision did to it. It stops itself once a worker serves,
    /// unless told to keep going.
    #[derive(Default)]
    struct FakeKeeper {
        keep_going: bool,
        starts: std::sync::Mutex<VecDeque<Result<Arc<FakeWorker>, StartError>>>,
        inits: std::sync::Mutex<VecDeque<Result<(), String>>>,
        did: std::sync::Mutex<Vec<String>>,
        stopping: std::sync::atomic::AtomicBool,
    }

    impl FakeKeeper {
        fn note(&self, what: String) {
            self.did.lock().unwrap().push(what);
        }
        fn did(&self) -> Vec<String> {
            self.did.lock().unwrap().clone()
        }
    }

    impl Keeper for FakeKeeper {
        type Worker = FakeWorker;

        fn is_stopping(&self) -> bool {
            self.stopping.load(Ordering::SeqCst)
        }
        fn lost(&self, worker: &FakeWorker, cause: &str, security: bool) {
            self.note(format!("lost {} ({cause}, security {security})", worker.id));
        }
        fn quarantine(&self, why: Quarantine) {
            let heals = matches!(why, Quarantine::Crashes(_));
            self.note(format!("quarantine: {} (heals {heals})", why.reason()));
        }
        fn fail(&self, reason: String) {
            self.note(format!("fail: {reason}"));
        }
        fn back_off(&self, delay: Duration) -> impl Future<Output = ()> + Send {
            self.note("back off".into());
            tokio::time::sleep(delay)
        }
        fn restarting(&self) {
            self.note("restarting".into());
        }
        fn start(&self) -> impl Future<Output = Result<Arc<FakeWorker>, StartError>> + Send {
            let next = self.starts.lock().unwrap().pop_front();
            async move { next.expect("a scripted start") }
        }
        fn init(&self, _worker: &FakeWorker) -> impl Future<Output = Result<(), String>> + Send {
            let next = self.inits.lock().unwrap().pop_front().unwrap_or(Ok(()));
            async move { next }
        }
        fn start_failed(&self, cause: &str) {
            self.note(format!("start failed: {cause}"));
        }
        fn serving(&self, worker: Arc<FakeWorker>, _took: Duration) {
            self.note(format!("serving {}", worker.id));
            if !self.keep_going {
                self.stopping.store(true, Ordering::SeqCst);
            }
        }
    }

    /// Backoffs of a millisecond, at most 3 crashes a minute.
    fn quick() -> RestartPolicy {
        RestartPolicy {
            backoff_initial: Duration::from_millis(1),
            backoff_max: Duration::from_millis(2),
            ..policy()
        }
    }

    fn keeper(starts: Vec<Result<Arc<FakeWorker>, StartError>>) -> FakeKeeper {
        let keeper = FakeKeeper::default();
        *keeper.starts.lock().unwrap() = starts.into();
        keeper
    }

    #[tokio::test]
    async fn a_crashed_worker_is_replaced_and_the_new_one_serves() {
        let keeper = keeper(vec![Ok(FakeWorker::crashed(2))]);
        watch(&keeper, quick(), FakeWorker::crashed(1)).await;
        assert_eq!(
            keeper.did(),
            [
                "lost 1 (signal SIGKILL, security false)",
                "restarting",
                "serving 2"
            ]
        );
    }

    #[tokio::test]
    async fn a_worker_stopped_on_purpose_is_neither_lost_nor_restarted() {
        let keeper = keeper(vec![Ok(FakeWorker::crashed(2))]);
        let worker = Arc::new(FakeWorker {
            how: ExitHow::Code(0),
            on_purpose: true,
            ..Arc::into_inner(FakeWorker::crashed(1)).unwrap()
        });
        watch(&keeper, quick(), worker).await;
        assert!(keeper.did().is_empty(), "{:?}", keeper.did());
    }

    #[tokio::test]
    async fn a_protocol_violation_quarantines_without_a_restart() {
        let keeper = keeper(vec![Ok(FakeWorker::crashed(2))]);
        let worker = Arc::new(FakeWorker {
            violation: Some("forged id".into()),
            ..Arc::into_inner(FakeWorker::crashed(1)).unwrap()
        });
        watch(&keeper, quick(), worker).await;
        assert_eq!(
            keeper.did(),
            [
                "lost 1 (protocol violation: forged id, security true)",
                "quarantine: protocol violation: forged id (heals false)"
            ]
        );
    }

    #[tokio::test]
    async fn workers_that_keep_crashing_are_quarantined_past_the_limit() {
        // Every new worker dies at once: three restarts, then the fourth
        // crash within the window quarantines.
        let mut keeper = keeper((2..=4).map(|id| Ok(FakeWorker::crashed(id))).collect());
        keeper.keep_going = true;
        watch(&keeper, quick(), FakeWorker::crashed(1)).await;
        let did = keeper.did();
        assert_eq!(
            did.iter().filter(|d| *d == "restarting").count(),
            3,
            "{did:?}"
        );
        assert_eq!(
            did.last().map(String::as_str),
            Some("quarantine: 4 crashes within 60 s (last: signal SIGKILL) (heals true)"),
            "{did:?}"
        );
    }

    #[tokio::test]
    async fn a_start_that_fails_to_load_fails_the_plugin_and_stops_restarting() {
        let load = StartError::Load {
            stage: prx_ipc::LoadStage::Link,
            message: "missing import".into(),
        };
        let keeper = keeper(vec![Err(load)]);
        watch(&keeper, quick(), FakeWorker::crashed(1)).await;
        let did = keeper.did();
        assert_eq!(did.len(), 3, "{did:?}");
        assert!(did[2].starts_with("fail: restart failed: "), "{did:?}");
    }

    #[tokio::test]
    async fn a_worker_that_fails_to_initialise_is_killed_and_counts_as_a_crash() {
        let broken = FakeWorker::crashed(2);
        let keeper = keeper(vec![Ok(broken.clone()), Ok(FakeWorker::crashed(3))]);
        keeper
            .inits
            .lock()
            .unwrap()
            .push_back(Err("on-load refused".into()));
        watch(&keeper, quick(), FakeWorker::crashed(1)).await;
        assert!(broken.killed.load(Ordering::SeqCst));
        assert_eq!(
            keeper.did(),
            [
                "lost 1 (signal SIGKILL, security false)",
                "restarting",
                "back off",
                "restarting",
                "serving 3"
            ]
        );
    }

    #[tokio::test]
    async fn a_worker_that_breaks_the_protocol_while_it_starts_is_a_security_event() {
        let liar = Arc::new(FakeWorker {
            violation: Some("forged id".into()),
            ..Arc::into_inner(FakeWorker::crashed(2)).unwrap()
        });
        let keeper = keeper(vec![Ok(liar.clone()), Ok(FakeWorker::crashed(3))]);
        keeper
            .inits
            .lock()
            .unwrap()
            .push_back(Err("bad reply to get-spec".into()));
        watch(&keeper, quick(), FakeWorker::crashed(1)).await;
        assert!(liar.killed.load(Ordering::SeqCst));
        assert_eq!(
            keeper.did().last().map(String::as_str),
            Some("quarantine: protocol violation: forged id (heals false)")
        );
    }

    #[tokio::test]
    async fn a_start_that_fails_for_a_passing_reason_is_retried() {
        let keeper = keeper(vec![
            Err(StartError::Exited("gone".into())),
            Ok(FakeWorker::crashed(2)),
        ]);
        watch(&keeper, quick(), FakeWorker::crashed(1)).await;
        let did = keeper.did();
        assert_eq!(
            did[2],
            format!("start failed: {}", StartError::Exited("gone".into())),
            "{did:?}"
        );
        assert_eq!(did.last().map(String::as_str), Some("serving 2"), "{did:?}");
    }
}
