//! How a supervisor is started: where plugins and state live, and the
//! numbers that are the operator's to set.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::broker::rate::LogRate;
use crate::manifest::Permission;
use crate::worker_handle::Liveness;
use std::time::Duration;

/// Compiling a Python component takes 8-12 s on a small machine; a minute
/// leaves room for a loaded one without letting a compile bomb run forever.
pub const DEFAULT_LOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// How long past `max_execution_time_ms` the supervisor waits before it
/// kills a worker that has not answered. The worker's own epoch deadline
/// fires within 5 ms; this backstop is for a worker that is stuck or lying.
pub const DEFAULT_DEADLINE_GRACE: Duration = Duration::from_millis(500);

/// When and how often a crashed worker is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// The second restart in a row waits this long; each one after waits
    /// twice as long as the one before (the first restart is immediate).
    pub backoff_initial: Duration,
    /// The longest wait between two restarts.
    pub backoff_max: Duration,
    /// A worker that stayed up this long was healthy: the next crash
    /// restarts at once again.
    pub healthy_after: Duration,
    /// More than this many crashes within `crash_window` quarantine the
    /// plugin.
    pub max_crashes: u32,
    pub crash_window: Duration,
    /// A plugin quarantined for crashing is started again after this long
    /// (zero: only an operator releases it). A quarantine for a security
    /// event always waits for an operator.
    pub quarantine_cooldown: Duration,
    /// Each quarantine after a release waits twice as long as the one
    /// before, up to this.
    pub quarantine_cooldown_max: Duration,
    /// A plugin that serves this long after a release without being
    /// quarantined again starts from `quarantine_cooldown` next time.
    pub quarantine_reset: Duration,
}

impl Default for RestartPolicy {
    /// A crash is restarted at once (a plugin is back within milliseconds);
    /// a plugin that keeps crashing is retried at 100 ms, 200 ms, ... up to
    /// 10 s apart, so it cannot take the CPU from the others; six crashes
    /// in a minute mean restarts at that pace do not help.
    ///
    /// A quarantined plugin is tried again after a minute: a passing storm
    /// (memory pressure, a bad minute on the host) is usually over by then,
    /// and a plugin that is simply broken costs six starts more a minute
    /// at worst. Each repeat doubles the wait up to an hour, so a plugin
    /// that stays broken costs a few starts an hour; ten minutes of serving
    /// without a quarantine (twice the crash window and more) forgive the
    /// streak, as a container runtime forgets a crash loop after ten
    /// minutes up.
    fn default() -> Self {
        Self {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            healthy_after: Duration::from_secs(30),
            max_crashes: 5,
            crash_window: Duration::from_secs(60),
            quarantine_cooldown: Duration::from_secs(60),
            quarantine_cooldown_max: Duration::from_secs(3600),
            quarantine_reset: Duration::from_secs(600),
        }
    }
}

/// Which permissions the operator lets plugins have. A plugin gets a
/// permission when it declares it *and* the policy allows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PermissionPolicy {
    /// What any plugin may be granted; `None` allows every permission.
    pub default: Option<BTreeSet<Permission>>,
    /// Per plugin, replacing `default` for that plugin.
    pub plugins: BTreeMap<String, BTreeSet<Permission>>,
    /// The widest `http_allowlist` any plugin may declare; `None` leaves
    /// each plugin's own list as it is.
    pub default_http_allowlist: Option<Vec<String>>,
    /// Per plugin, replacing `default_http_allowlist` for that plugin.
    pub http_allowlist: BTreeMap<String, Vec<String>>,
}

impl PermissionPolicy {
    /// True when `plugin` may be granted `permission`. `log` and `config`
    /// are always allowed.
    pub fn allows(&self, plugin: &str, permission: Permission) -> bool {
        if matches!(permission, Permission::Log | Permission::Config) {
            return true;
        }
        self.plugins
            .get(plugin)
            .or(self.default.as_ref())
            .is_none_or(|allowed| allowed.contains(&permission))
    }

    /// The allowlist entries the operator lets `plugin` declare, if the
    /// policy limits them.
    pub fn http_ceiling(&self, plugin: &str) -> Option<&[String]> {
        self.http_allowlist
            .get(plugin)
            .or(self.default_http_allowlist.as_ref())
            .map(Vec::as_slice)
    }
}

/// Checking a few file sizes and times once a second costs nothing; it
/// backs up the file watcher (a filesystem without inotify, a missed
/// event).
pub const DEFAULT_RETRY_POLL: Duration = Duration::from_secs(1);

/// Changes to one plugin's files within this are taken together (a
/// manifest and its component written one after the other).
pub const DEFAULT_RELOAD_DEBOUNCE: Duration = Duration::from_millis(10);

/// A storage backend that stops answering is noticed within this; its
/// calls fail at once from then on, rather than each waiting for it.
pub const DEFAULT_STORAGE_HEALTH_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// Holds one directory per plugin: `<dir>/<name>/plugin.toml`.
    pub plugins_dir: PathBuf,
    /// The supervisor's own files: compile cache, API socket.
    pub state_dir: PathBuf,
    /// The `prx-worker` binary; found next to the running executable when
    /// not set (or from `PRX_WORKER_BIN`).
    pub worker_binary: Option<PathBuf>,
    /// Where compiled artifacts are kept; `<state_dir>/cache` when not set.
    pub cache_dir: Option<PathBuf>,
    pub load_timeout: Duration,
    pub deadline_grace: Duration,
    pub restart: RestartPolicy,
    pub liveness: Liveness,
    pub permissions: PermissionPolicy,
    pub log_rate: LogRate,
    pub sandbox: crate::worker_handle::verify::SandboxPolicy,
    pub http: crate::services::http::HttpPolicy,
    /// Events one subscriber may have waiting; more are dropped and counted.
    pub event_queue: usize,
    /// Events whose causal chain holds this many plugins reach no plugin
    /// (a loop between handlers stops here).
    pub event_max_depth: usize,
    /// Middleware plugins whose crash or timeout skips them instead of
    /// blocking the chain. An error they return still blocks.
    pub middleware_fail_open: BTreeSet<String>,
    /// The storage capability serving memory instead of the built-in store.
    pub memory_backend: Option<String>,
    /// How often that storage plugin's `health-check` is asked.
    pub storage_health_interval: Duration,
    /// Where cron schedules read the time (UTC).
    pub clock: std::sync::Arc<dyn crate::clock::Clock>,
    /// Keep kv data in memory only (tests); otherwise `<state_dir>/kv.redb`.
    pub ephemeral_kv: bool,
    /// How often every plugin's files are checked for a change (a change
    /// reloads a running plugin and retries a failed or quarantined one),
    /// besides the watcher. Zero turns it off.
    pub retry_poll: Duration,
    /// Watch the plugins directory and reload changed plugins at once.
    pub watch: bool,
    /// Quiet time after a file change before the plugin is reloaded.
    pub reload_debounce: Duration,
    /// Test-only: a worker aborts (SIGABRT) when its plugin logs this exact
    /// line, so tests can make a worker crash on demand. Only the library
    /// can set it; `prx` and its config never do.
    pub test_abort_marker: Option<String>,
    /// Test-only: every worker answers tool calls by trying this forbidden
    /// thing from inside its sandbox (`prx-worker --test-probe`). Only the
    /// library can set it; `prx` and its config never do.
    pub test_probe: Option<String>,
    /// The most any plugin's `[resources]` may ask for.
    pub resource_caps: ResourceCaps,
    /// The local API: socket mode, HTTP listener, token, request size.
    pub api: ApiConfig,
    /// How `prx up` writes its log.
    pub log_format: LogFormat,
    /// The cluster this supervisor joins (`[cluster]`, `prx up
    /// --cluster`); alone when `None`.
    pub cluster: Option<crate::cluster::ClusterConfig>,
    /// Where plugins' kv lives (`[kv] backend`).
    pub kv_backend: KvBackend,
}

/// Where plugins' kv lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
pub enum KvBackend {
    /// The embedded redb store in the state directory: one machine.
    #[default]
    #[serde(rename = "redb")]
    Embedded,
    /// JetStream key-value on the cluster's NATS server: the same kv on
    /// every node a plugin runs on (needs `[cluster]`).
    #[serde(rename = "jetstream")]
    JetStream,
}

/// Ceilings on a manifest's `[resources]`, by default and per plugin (a
/// plugin's own entry wins key by key). A plugin asking for more is not
/// loaded, with a message naming the key and both numbers; clamping it
/// silently would make it fail later with a limit it never asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceCaps {
    pub default: ResourceCap,
    pub plugins: BTreeMap<String, ResourceCap>,
}

/// One set of ceilings; `None` leaves a key to the manifest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceCap {
    pub max_fuel: Option<u64>,
    pub max_memory_mb: Option<u64>,
    pub max_execution_time_ms: Option<u64>,
    pub max_http_requests: Option<u64>,
    pub max_kv_storage_kb: Option<u64>,
    /// Worker processes per plugin (`[resources] workers`).
    pub workers: Option<u64>,
}

/// Reads one key of a [`ResourceCap`].
type Pick = fn(&ResourceCap) -> Option<u64>;

impl ResourceCaps {
    /// Refuses `resources` when one of its numbers is above the cap the
    /// operator set for `plugin`.
    pub fn check(&self, plugin: &str, r: &crate::manifest::Resources) -> Result<(), String> {
        let own = self.plugins.get(plugin);
        let cap = |pick: Pick| own.and_then(pick).or_else(|| pick(&self.default));
        let asked: [(&str, u64, Pick); 6] = [
            ("max_fuel", r.max_fuel, |c| c.max_fuel),
            ("max_memory_mb", r.max_memory_mb, |c| c.max_memory_mb),
            ("max_execution_time_ms", r.max_execution_time_ms, |c| {
                c.max_execution_time_ms
            }),
            ("max_http_requests", u64::from(r.max_http_requests), |c| {
                c.max_http_requests
            }),
            ("max_kv_storage_kb", r.max_kv_storage_kb, |c| {
                c.max_kv_storage_kb
            }),
            ("workers", u64::from(r.workers), |c| c.workers),
        ];
        for (key, value, pick) in asked {
            if let Some(limit) = cap(pick).filter(|limit| value > *limit) {
                let table = if own.and_then(pick).is_some() {
                    format!("[resources.plugins.{plugin}]")
                } else {
                    "[resources.default]".to_owned()
                };
                return Err(format!(
                    "plugin `{plugin}` asks for [resources].{key} = {value}, above the operator's cap of {limit} ({table} in the supervisor's config); lower it in its plugin.toml or raise the cap"
                ));
            }
        }
        Ok(())
    }
}

/// The local API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// File mode of the Unix socket: who may use it is who may operate
    /// the supervisor (no token is asked there).
    pub socket_mode: u32,
    /// An HTTP listener for the console and remote-less tools; loopback
    /// addresses only. Off when `None`.
    pub http: Option<std::net::SocketAddr>,
    /// The bearer token the HTTP listener asks for on anything that
    /// changes state or reads plugin data; `None` reads `token_file`.
    pub token: Option<String>,
    /// Where the token is kept; `<state>/api-token` when not set. Made
    /// (mode 0600, 256 random bits) when missing.
    pub token_file: Option<PathBuf>,
    /// Largest request body either listener takes.
    pub max_request_bytes: usize,
}

/// Largest request body by default: tool arguments are JSON meant for an
/// LLM tool, a few KiB in practice; 1 MiB leaves room and bounds memory.
pub const MAX_REQUEST_BODY: usize = 1 << 20;

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            socket_mode: 0o600,
            http: None,
            token: None,
            token_file: None,
            max_request_bytes: MAX_REQUEST_BODY,
        }
    }
}

/// How the daemon writes its log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// One line per event for people.
    #[default]
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "human" => Ok(Self::Human),
            "json" => Ok(Self::Json),
            other => Err(format!("unknown log format `{other}`: use human or json")),
        }
    }
}

impl SupervisorConfig {
    pub fn new(plugins_dir: impl Into<PathBuf>, state_dir: impl Into<PathBuf>) -> Self {
        Self {
            plugins_dir: plugins_dir.into(),
            state_dir: state_dir.into(),
            worker_binary: None,
            cache_dir: None,
            load_timeout: DEFAULT_LOAD_TIMEOUT,
            deadline_grace: DEFAULT_DEADLINE_GRACE,
            restart: RestartPolicy::default(),
            liveness: Liveness::default(),
            permissions: PermissionPolicy::default(),
            log_rate: LogRate::default(),
            sandbox: crate::worker_handle::verify::SandboxPolicy::default(),
            http: crate::services::http::HttpPolicy::default(),
            event_queue: crate::services::events::DEFAULT_QUEUE,
            event_max_depth: crate::services::events::DEFAULT_MAX_DEPTH,
            middleware_fail_open: BTreeSet::new(),
            memory_backend: None,
            storage_health_interval: DEFAULT_STORAGE_HEALTH_INTERVAL,
            clock: std::sync::Arc::new(crate::clock::SystemClock),
            ephemeral_kv: false,
            retry_poll: DEFAULT_RETRY_POLL,
            watch: true,
            reload_debounce: DEFAULT_RELOAD_DEBOUNCE,
            test_abort_marker: None,
            test_probe: None,
            resource_caps: ResourceCaps::default(),
            api: ApiConfig::default(),
            log_format: LogFormat::default(),
            cluster: None,
            kv_backend: KvBackend::default(),
        }
    }

    /// The worker binary to exec.
    pub fn resolve_worker_binary(&self) -> Option<PathBuf> {
        if let Some(path) = &self.worker_binary {
            return Some(path.clone());
        }
        if let Some(path) = std::env::var_os("PRX_WORKER_BIN") {
            return Some(PathBuf::from(path));
        }
        let exe = std::env::current_exe().ok()?;
        let dir = exe.parent()?;
        // Next to `prx`, or one level up for test binaries in `deps/`.
        [Some(dir), dir.parent()]
            .into_iter()
            .flatten()
            .map(|d: &Path| d.join("prx-worker"))
            .find(|p| p.is_file())
    }

    pub fn socket_path(&self) -> PathBuf {
        self.state_dir.join("prx.sock")
    }

    pub fn token_path(&self) -> PathBuf {
        self.api
            .token_file
            .clone()
            .unwrap_or_else(|| self.state_dir.join("api-token"))
    }

    pub fn kv_path(&self) -> PathBuf {
        self.state_dir.join("kv.redb")
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(|| self.state_dir.join("cache"))
    }
}
