//! The fault injector. At random intervals, from a seeded generator (so a
//! run's sequence of faults can be replayed), it does one of: `kill -9` of
//! a worker; SIGSTOP of a worker for longer than its call limit; a hot
//! reload of a plugin with a good build, a broken one, or one written in
//! two halves; a crash loop (every new worker of a plugin killed as soon as
//! it appears, until the plugin is quarantined); and, on a schedule spread
//! over the run, `kill -9` of the supervisor and a restart on the same
//! state directory. Each fault is kept as a window: when it began, when its
//! effects were over (the plugin serving again), and which plugin it hit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::daemon::{Daemon, processes_of};
use crate::load::lock;
use crate::weighted;
use crate::world::{CALL_LIMIT_MS, COOLDOWN_MAX, Plugin};
use prx_supervisor::plugin::StateKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    KillWorker,
    StopWorker,
    ReloadGood,
    ReloadBroken,
    ReloadHalf,
    CrashLoop,
    KillSupervisor,
}

impl Kind {
    const RANDOM: [(Kind, u32); 6] = [
        (Kind::KillWorker, 6),
        (Kind::StopWorker, 2),
        (Kind::ReloadGood, 2),
        (Kind::ReloadBroken, 1),
        (Kind::ReloadHalf, 1),
        (Kind::CrashLoop, 1),
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::KillWorker => "kill -9 of a worker",
            Kind::StopWorker => "SIGSTOP of a worker past its limit",
            Kind::ReloadGood => "hot reload, good build",
            Kind::ReloadBroken => "hot reload, broken build",
            Kind::ReloadHalf => "hot reload, half-written build",
            Kind::CrashLoop => "crash loop to quarantine",
            Kind::KillSupervisor => "kill -9 of the supervisor",
        }
    }
}

/// One fault and how long its effects lasted.
#[derive(Debug, Clone)]
pub struct Window {
    pub kind: Kind,
    /// The plugin it hit; `None`: all of them.
    pub plugin: Option<String>,
    pub start: Instant,
    pub end: Instant,
    /// What happened, for the report.
    pub note: String,
    /// The plugin was not running when the fault hit it (quarantined by
    /// another fault): new files then replace it rather than reload it.
    pub found_down: bool,
}

impl Window {
    /// The causes a call may fail with while this fault's effects last:
    /// a worker lost takes the calls it had (`crashed`, `unresponsive`),
    /// refuses those queued behind a stopped one (`busy`), is not there
    /// while it restarts or is quarantined (`not_running`), and a
    /// fail-closed middleware blocks the chain meanwhile. A reload of a
    /// running plugin must cost no call at all; broken files that replace
    /// a quarantined plugin fail it until the good files are back (its
    /// tools and RPCs unknown meanwhile).
    pub fn allows(&self, cause: &str) -> bool {
        match self.kind {
            Kind::KillWorker | Kind::StopWorker | Kind::CrashLoop => matches!(
                cause,
                "crashed" | "unresponsive" | "busy" | "not_running" | "blocked_fail_closed"
            ),
            Kind::KillSupervisor => cause == "supervisor_down",
            Kind::ReloadGood | Kind::ReloadBroken | Kind::ReloadHalf => {
                self.found_down
                    && matches!(
                        cause,
                        "unknown_tool" | "not_found" | "not_running" | "blocked_fail_closed"
                    )
            }
        }
    }
}

/// What the injector found along the way.
#[derive(Default)]
pub struct Findings {
    pub windows: std::sync::Mutex<Vec<Window>>,
    /// Worker processes still alive 2 s after their supervisor was killed.
    pub orphans_after_kill: std::sync::Mutex<Vec<u32>>,
    /// The supervisor's pid after each (re)start, and when.
    pub incarnations: std::sync::Mutex<Vec<(u32, Instant)>>,
    /// Restarts of the supervisor that failed (the run cannot go on).
    pub fatal: std::sync::Mutex<Option<String>>,
}

pub struct Injector {
    pub daemon: Arc<Daemon>,
    pub plugins: Vec<Plugin>,
    pub findings: Arc<Findings>,
}

impl Injector {
    /// Injects faults until `until`; the supervisor is killed at each of
    /// `supervisor_kills` (offsets from now). Returns when the faults under
    /// way have played out, with the moment the last one was injected.
    pub async fn run(
        self: Arc<Self>,
        seed: u64,
        until: Instant,
        supervisor_kills: Vec<Duration>,
    ) -> Instant {
        let mut rng = fastrand::Rng::with_seed(seed);
        let began = Instant::now();
        let mut kills = supervisor_kills.into_iter().peekable();
        let mut tasks = tokio::task::JoinSet::new();
        let mut version = 1u32;
        while Instant::now() < until && lock(&self.findings.fatal).is_none() {
            tokio::time::sleep(Duration::from_millis(rng.u64(300..1500))).await;
            if kills.peek().is_some_and(|at| began.elapsed() >= *at) {
                kills.next();
                // Faults already under way keep going; calls see them both.
                self.clone().kill_supervisor().await;
                continue;
            }
            let kind = weighted::pick(&mut rng, &Kind::RANDOM);
            let index = rng.usize(..self.plugins.len());
            version += 1;
            let fault_rng = rng.u64(..);
            let me = self.clone();
            tasks.spawn(async move { me.inject(kind, index, version, fault_rng).await });
        }
        let last = Instant::now();
        while tasks.join_next().await.is_some() {}
        last
    }

    fn note(
        &self,
        kind: Kind,
        plugin: Option<&str>,
        start: Instant,
        note: String,
        found_down: bool,
    ) {
        lock(&self.findings.windows).push(Window {
            kind,
            plugin: plugin.map(str::to_owned),
            start,
            end: Instant::now(),
            note,
            found_down,
        });
    }

    /// Whether `name` is anything but running now.
    async fn is_down(&self, name: &str) -> bool {
        !self
            .daemon
            .plugins()
            .await
            .iter()
            .any(|p| p.name == name && p.state == StateKind::Running)
    }

    async fn inject(&self, kind: Kind, index: usize, version: u32, seed: u64) {
        let plugin = &self.plugins[index];
        let name = plugin.name.as_str();
        let start = Instant::now();
        let mut found_down = false;
        let note = match kind {
            Kind::KillWorker => match self.pid_of(name).await {
                Some(pid) => {
                    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                    self.serving_again(name, Some(pid)).await
                }
                None => return,
            },
            Kind::StopWorker => match self.pid_of(name).await {
                Some(pid) => {
                    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGSTOP);
                    // Past the call limit and its grace: a call made to it
                    // meanwhile has had it replaced. One nobody needed while
                    // it stood still (its heartbeats backed off, no call
                    // came) just goes on.
                    tokio::time::sleep(Duration::from_millis(CALL_LIMIT_MS as u64 * 2)).await;
                    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
                    let back = self.serving_again(name, None).await;
                    let replaced = self.pid_of(name).await != Some(pid);
                    format!(
                        "{back}; {}",
                        if replaced {
                            "replaced"
                        } else {
                            "resumed, unneeded meanwhile"
                        }
                    )
                }
                None => return,
            },
            Kind::ReloadGood => {
                let version = format!("0.1.{version}");
                if plugin
                    .replace(
                        "plugin.toml",
                        plugin.manifest_with_version(&version).as_bytes(),
                    )
                    .is_err()
                {
                    return;
                }
                format!("version {version}")
            }
            Kind::ReloadBroken => {
                let mut rng = fastrand::Rng::with_seed(seed);
                // A component header, then garbage.
                let mut broken = b"\0asm\x0d\0\x01\0".to_vec();
                broken.extend((0..4096).map(|_| rng.u8(..)));
                found_down = self.is_down(name).await;
                let _ = plugin.replace("plugin.wasm", &broken);
                tokio::time::sleep(Duration::from_millis(rng.u64(500..3000))).await;
                found_down |= self.is_down(name).await;
                let _ = plugin.replace("plugin.wasm", &plugin.wasm);
                "garbage for a while, then the good build".into()
            }
            Kind::ReloadHalf => {
                let half = plugin.wasm.len() / 2;
                let path = plugin.dir.join("plugin.wasm");
                // Written in place, in two halves a moment apart, as a
                // careless copy does.
                found_down = self.is_down(name).await;
                if std::fs::write(&path, &plugin.wasm[..half]).is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
                found_down |= self.is_down(name).await;
                let _ = std::fs::write(&path, &plugin.wasm);
                "half the build for 300 ms, then all of it".into()
            }
            Kind::CrashLoop => self.crash_loop(name).await,
            Kind::KillSupervisor => return,
        };
        self.note(kind, Some(name), start, note, found_down);
    }

    /// The serving worker's pid, if the plugin has one.
    async fn pid_of(&self, name: &str) -> Option<u32> {
        self.daemon
            .plugins()
            .await
            .into_iter()
            .find(|p| p.name == name)
            .and_then(|p| p.pid)
    }

    /// Waits until `name` serves from a worker other than `old` (up to the
    /// longest cool-down and a margin); says how it went.
    async fn serving_again(&self, name: &str, old: Option<u32>) -> String {
        let began = Instant::now();
        let limit = COOLDOWN_MAX + Duration::from_secs(30);
        while began.elapsed() < limit {
            let status = self.daemon.plugins().await;
            if let Some(p) = status.iter().find(|p| p.name == name)
                && p.state == StateKind::Running
                && p.pid.is_some()
                && p.pid != old
            {
                return format!("serving again after {:.1} s", began.elapsed().as_secs_f64());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        format!("not serving again within {limit:?}")
    }

    /// Kills every new worker of `name` until the plugin is quarantined,
    /// then waits for its cool-down to bring it back.
    async fn crash_loop(&self, name: &str) -> String {
        let began = Instant::now();
        let mut kills = 0;
        let mut quarantined = false;
        while began.elapsed() < Duration::from_secs(30) {
            let status = self.daemon.plugins().await;
            let Some(p) = status.into_iter().find(|p| p.name == name) else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            if p.state == StateKind::Quarantined {
                quarantined = true;
                break;
            }
            if let Some(pid) = p.pid
                && kill(Pid::from_raw(pid as i32), Signal::SIGKILL).is_ok()
            {
                kills += 1;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let back = self.serving_again(name, None).await;
        format!("{kills} workers killed, quarantined: {quarantined}; {back}")
    }

    /// `kill -9` of the supervisor, a look for workers it left, and a
    /// restart on the same state directory.
    async fn kill_supervisor(self: Arc<Self>) {
        let start = Instant::now();
        let old = self.daemon.pid();
        if let Err(e) = self.daemon.kill9().await {
            *lock(&self.findings.fatal) = Some(format!("kill -9 of the supervisor: {e}"));
            return;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let left = processes_of(&self.daemon.worker, None);
        lock(&self.findings.orphans_after_kill).extend(left.iter().copied());
        match self.daemon.start().await {
            Ok(pid) => lock(&self.findings.incarnations).push((pid, Instant::now())),
            Err(e) => {
                *lock(&self.findings.fatal) = Some(format!("restart after kill -9: {e:#}"));
                return;
            }
        }
        self.note(
            Kind::KillSupervisor,
            None,
            start,
            format!(
                "pid {} killed, {} workers left behind, restarted in {:.1} s",
                old.unwrap_or(0),
                left.len(),
                start.elapsed().as_secs_f64()
            ),
            false,
        );
    }
}
