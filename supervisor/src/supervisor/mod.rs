//! [`Supervisor`]: the library face. Loads a plugins directory, starts one
//! worker per plugin, routes calls, and stops everything on shutdown.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prx_ipc::{Call, Output};
use serde::Serialize;

mod cluster;
mod delivery;
mod inspect;
mod loading;
use loading::plugin_dirs;
mod memory;
mod reload;
mod remote;
mod routing;
mod watch;
pub use inspect::{CronJob, ModuleDescription, PluginDetail};
pub use memory::MemoryFound;
pub use reload::ReloadOutcome;
pub use routing::MIDDLEWARE_STAGES;

use crate::broker::Services;
use crate::cache::CompileCache;
use crate::cluster::subjects::CallKind as cluster_kind;
use crate::config::SupervisorConfig;
use crate::error::CallError;
use crate::plugin::{Fingerprint, Plugin, Runtime};
use crate::services::events::EventBus;
use crate::services::kv::KvStore;
use crate::services::memory::MemoryStore;

/// How long workers get to exit on their own at shutdown.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// Who stored a memory the host application stored: not a valid plugin
/// name, so no plugin can be mistaken for it.
const HOST_MEMORY_OWNER: &str = "(host)";
/// Tool arguments larger than this are left out of `tool.call` events
/// (an event payload is at most 64 KiB).
const MAX_ANNOUNCED_ARGS: usize = 16 * 1024;

/// Problems that stop the supervisor itself from starting (a single bad
/// plugin never does).
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("plugins directory {0} cannot be read: {1}")]
    PluginsDir(PathBuf, std::io::Error),
    #[error("state directory {0} cannot be created: {1}")]
    StateDir(PathBuf, std::io::Error),
    #[error(
        "the prx-worker binary was not found next to this executable; set PRX_WORKER_BIN or build it (cargo build)"
    )]
    NoWorkerBinary,
    #[error(
        "the kv database {0} cannot be opened (is another prx using this state directory?): {1}"
    )]
    Kv(PathBuf, crate::services::kv::KvError),
    #[error("the memory store in {0} cannot be opened: {1}")]
    Memory(PathBuf, crate::services::memory::MemoryError),
    #[error("the prx-worker binary {0} is not usable: {1}")]
    WorkerBinary(PathBuf, std::io::Error),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
}

/// A plugin that could not be loaded, with why.
#[derive(Debug, Clone, Serialize)]
pub struct LoadFailure {
    pub dir: PathBuf,
    pub error: String,
    #[serde(skip)]
    files: Fingerprint,
}

/// A tool and the plugin serving it.
#[derive(Debug, Clone, Serialize)]
pub struct ToolInfo {
    pub name: String,
    pub plugin: String,
    pub description: String,
    pub parameters_schema: String,
}

#[derive(Debug, Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: SupervisorConfig,
    services: Services,
    /// The storage plugin serving memory, when the operator named one (the
    /// broker sees it as `services.storage`).
    storage: Option<Arc<crate::storage_route::StorageRoute>>,
    /// Calls being served now, and a wake-up for when that reaches zero.
    in_flight: AtomicUsize,
    idle: tokio::sync::Notify,
    /// Set by `shutdown`: new calls are refused.
    draining: AtomicBool,
    runtime: Runtime,
    plugins: RwLock<BTreeMap<String, Arc<Plugin>>>,
    tools: RwLock<BTreeMap<String, Arc<Plugin>>>,
    /// Providers by capability name.
    providers: RwLock<BTreeMap<String, Arc<Plugin>>>,
    /// Bus-module RPCs by name.
    rpcs: RwLock<BTreeMap<String, Arc<Plugin>>>,
    failures: RwLock<Vec<LoadFailure>>,
    /// Held while a plugin directory is loaded, reloaded or unloaded: one
    /// change at a time.
    reloading: tokio::sync::Mutex<()>,
    /// Watches the plugins directory while it is alive.
    watcher: std::sync::Mutex<Option<notify::RecommendedWatcher>>,
    /// The cluster this node is in, when it is in one.
    cluster: Option<crate::cluster::Cluster>,
    /// Wakes the cluster's heartbeat when what this node serves changed.
    routes_changed: Arc<tokio::sync::Notify>,
    started_at_ms: u64,
}

impl Supervisor {
    /// Loads every plugin under `config.plugins_dir`. Plugins that fail are
    /// reported (log, [`Supervisor::failures`], `plugins()`) and skipped.
    pub async fn start(config: SupervisorConfig) -> Result<Self, StartupError> {
        std::fs::create_dir_all(&config.state_dir)
            .map_err(|e| StartupError::StateDir(config.state_dir.clone(), e))?;
        let worker_binary = config
            .resolve_worker_binary()
            .ok_or(StartupError::NoWorkerBinary)?;
        let cache = CompileCache::open(config.cache_dir(), &worker_binary)
            .map_err(|e| StartupError::WorkerBinary(worker_binary.clone(), e))?;
        let runtime = Runtime {
            worker_binary,
            cache,
            load_timeout: config.load_timeout,
            deadline_grace: config.deadline_grace,
            restart: config.restart,
            liveness: config.liveness,
            extra_worker_args: config
                .test_abort_marker
                .iter()
                .flat_map(|m| ["--test-abort-on-log".to_owned(), m.clone()])
                .chain(
                    config
                        .test_probe
                        .iter()
                        .flat_map(|p| ["--test-probe".to_owned(), p.clone()]),
                )
                .collect(),
            sandbox: config.sandbox.clone(),
            compiles: Arc::new(tokio::sync::Semaphore::new(Runtime::parallel_compiles())),
            starts: Arc::new(tokio::sync::Semaphore::new(Runtime::parallel_starts())),
            cgroups: Arc::new(
                if config
                    .sandbox
                    .enabled
                    .contains(&crate::worker_handle::verify::Layer::Cgroup)
                {
                    // One directory per supervisor, even for several in one
                    // process (tests): each removes its own at shutdown.
                    static STARTED: AtomicUsize = AtomicUsize::new(0);
                    let cgroups = crate::worker_handle::cgroup::Cgroups::detect(&format!(
                        "prx-{}-{}",
                        std::process::id(),
                        STARTED.fetch_add(1, Ordering::Relaxed)
                    ));
                    tracing::info!("worker memory and pids limits: {}", cgroups.describe());
                    cgroups
                } else {
                    crate::worker_handle::cgroup::Cgroups::Unavailable("turned off".into())
                },
            ),
        };
        let kv = if config.ephemeral_kv {
            KvStore::in_memory()
        } else {
            KvStore::open(&config.kv_path())
        }
        .map_err(|e| StartupError::Kv(config.kv_path(), e))?;
        let memory = MemoryStore::new(kv.database())
            .map_err(|e| StartupError::Memory(config.kv_path(), e))?;
        let storage = config
            .memory_backend
            .clone()
            .map(|name| Arc::new(crate::storage_route::StorageRoute::new(name)));
        if let Some(route) = &storage {
            tokio::spawn(crate::storage_route::poll_health(
                Arc::downgrade(route),
                config.storage_health_interval,
            ));
        }
        let cluster = match &config.cluster {
            Some(settings) => Some(crate::cluster::Cluster::connect(settings.clone()).await?),
            None => None,
        };
        let bus = EventBus::new(config.event_queue).with_max_depth(config.event_max_depth);
        let (bus, outbox) = match &cluster {
            Some(cluster) => {
                let (bus, outbox) = bus.with_cluster(cluster.node().clone());
                (bus, Some(outbox))
            }
            None => (bus, None),
        };
        let shared_kv = cluster
            .clone()
            .filter(|_| config.kv_backend == crate::config::KvBackend::JetStream);
        let services = Services {
            kv,
            shared_kv,
            bus,
            memory,
            log_rate: config.log_rate,
            http: config.http.clone(),
            storage: storage
                .clone()
                .map(|route| route as Arc<dyn crate::broker::MemoryBackend>),
            metrics: Arc::default(),
        };
        let dirs = plugin_dirs(&config.plugins_dir)
            .map_err(|e| StartupError::PluginsDir(config.plugins_dir.clone(), e))?;
        let supervisor = Self {
            inner: Arc::new(Inner {
                config,
                services,
                storage,
                in_flight: AtomicUsize::new(0),
                idle: tokio::sync::Notify::new(),
                draining: AtomicBool::new(false),
                runtime,
                plugins: RwLock::default(),
                tools: RwLock::default(),
                providers: RwLock::default(),
                rpcs: RwLock::default(),
                failures: RwLock::default(),
                reloading: tokio::sync::Mutex::new(()),
                watcher: std::sync::Mutex::new(None),
                cluster,
                routes_changed: Arc::default(),
                started_at_ms: crate::clock::now_ms(),
            }),
        };
        // Every manifest first, so each hook is subscribed before any
        // plugin loads and announces itself.
        let mut prepared = Vec::new();
        for dir in dirs {
            match supervisor.prepare(&dir) {
                Ok(plugin) => prepared.push(plugin),
                Err(error) => supervisor.record_failure(dir, error),
            }
        }
        let mut loading = Vec::new();
        for plugin in prepared {
            let rt = supervisor.inner.runtime.clone();
            loading.push(tokio::spawn(async move {
                // Routed below, in directory order (the first of two
                // plugins claiming a name keeps it); nothing calls before
                // the start returns.
                let result = plugin.load(&rt, |_| Ok(())).await;
                (plugin, result)
            }));
        }
        for task in loading {
            let Ok((plugin, result)) = task.await else {
                continue;
            };
            let routed = match result.map(|()| supervisor.route(&plugin)) {
                Ok(Err(e)) => {
                    plugin.stop(STOP_GRACE).await;
                    Err(plugin.fail(e))
                }
                other => other.and_then(|routed| routed),
            };
            match routed {
                Ok(()) => supervisor.register(&plugin),
                Err(error) => supervisor.record_failure(plugin.dir.clone(), error),
            }
        }
        supervisor.watch_plugins_dir();
        if let (Some(cluster), Some(outbox)) = (supervisor.inner.cluster.clone(), outbox) {
            supervisor.join_cluster(&cluster, outbox);
        }
        Ok(supervisor)
    }

    pub fn config(&self) -> &SupervisorConfig {
        &self.inner.config
    }

    /// Calls a tool by name with JSON arguments; returns its output. In a
    /// cluster, a tool this node does not serve goes to a node that does.
    pub async fn call_tool(&self, tool: &str, args_json: &str) -> Result<String, CallError> {
        let _guard = self.enter()?;
        let local = self.lookup(&self.inner.tools, tool);
        if let Some(plugin) = self.choose(&local, || self.unknown_tool(tool))? {
            return self.call_tool_with(&plugin, tool, args_json).await;
        }
        let body = remote_tool(tool, args_json);
        match self
            .call_remote_text(cluster_kind::Tool, "tool", tool, body)
            .await
        {
            Err(CallError::NotInCluster { .. }) if local.is_some() => {
                self.call_tool_with(&local.expect("checked"), tool, args_json)
                    .await
            }
            Err(CallError::NotInCluster { .. }) => Err(self.unknown_tool(tool)),
            other => other,
        }
    }

    /// A tool call another node sent to this node.
    async fn call_tool_here(&self, tool: &str, args_json: &str) -> Result<String, CallError> {
        let _guard = self.enter()?;
        let plugin = self
            .lookup(&self.inner.tools, tool)
            .ok_or_else(|| self.unknown_tool(tool))?;
        self.call_tool_with(&plugin, tool, args_json).await
    }

    /// No tool of that name here, nor (in a cluster) on any node.
    fn unknown_tool(&self, tool: &str) -> CallError {
        match self.cluster() {
            Some(cluster) => CallError::NotInCluster {
                what: "tool",
                name: tool.into(),
                nodes: cluster.alive_nodes(),
            },
            None => CallError::UnknownTool {
                tool: tool.into(),
                known: self.tools().into_iter().map(|t| t.name).collect(),
            },
        }
    }

    /// Runs a tool of this node's, with its `tool.call` and `tool.result`
    /// events.
    async fn call_tool_with(
        &self,
        plugin: &Arc<Plugin>,
        tool: &str,
        args_json: &str,
    ) -> Result<String, CallError> {
        let bus = &self.inner.services.bus;
        // The events cost a JSON parse and a lock: only when someone listens.
        if bus.has_subscribers("tool.call") {
            let mut announced = serde_json::json!({ "tool_name": tool, "plugin": &*plugin.name });
            announced["args"] = if args_json.len() <= MAX_ANNOUNCED_ARGS {
                serde_json::from_str(args_json).unwrap_or_else(|_| args_json.into())
            } else {
                serde_json::Value::Null
            };
            let _ = bus.publish("tool.call", &announced.to_string());
        }
        let started = std::time::Instant::now();
        let result = self.execute_tool(plugin, tool, args_json).await;
        if bus.has_subscribers("tool.result") {
            let result_event = serde_json::json!({
                "tool_name": tool,
                "plugin": &*plugin.name,
                "success": result.is_ok(),
                "duration_ms": started.elapsed().as_millis() as u64,
            });
            let _ = bus.publish("tool.result", &result_event.to_string());
        }
        if let Err(e) = &result {
            plugin.report_error(&e.to_string(), "tool.call", crate::topics::no_chain());
        }
        result
    }

    async fn execute_tool(
        &self,
        plugin: &Arc<Plugin>,
        tool: &str,
        args_json: &str,
    ) -> Result<String, CallError> {
        let call = Call::ToolExecute {
            args: args_json.into(),
        };
        let no_chain = crate::topics::no_chain();
        match plugin.call(&self.inner.runtime, call, no_chain).await? {
            Output::ToolResult(result) if result.success => Ok(result.output),
            Output::ToolResult(result) => Err(CallError::ToolFailed {
                plugin: plugin.name.to_string(),
                tool: tool.into(),
                error: result
                    .error
                    .filter(|e| !e.is_empty())
                    .unwrap_or(result.output),
            }),
            _ => Err(plugin.bad_reply()),
        }
    }

    /// Counts a call in flight, or refuses it while shutting down.
    fn enter(&self) -> Result<InFlight<'_>, CallError> {
        if self.inner.draining.load(Ordering::SeqCst) {
            return Err(CallError::ShuttingDown);
        }
        self.inner.in_flight.fetch_add(1, Ordering::SeqCst);
        Ok(InFlight(&self.inner))
    }

    /// Lifts the quarantine of a plugin and starts it again.
    pub async fn release(&self, plugin: &str) -> Result<(), String> {
        let found = self
            .inner
            .plugins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(plugin)
            .cloned();
        match found {
            Some(p) => p.release(&self.inner.runtime).await,
            None => Err(format!("no plugin named `{plugin}`")),
        }
    }

    /// Refuses new calls, lets the calls in flight finish (up to `grace`),
    /// then stops every worker (politely, then by force) and waits for them.
    pub async fn shutdown_gracefully(&self, grace: Duration) {
        self.inner.draining.store(true, Ordering::SeqCst);
        // In a cluster: stop taking other nodes' calls now.
        self.inner.routes_changed.notify_one();
        let drained = tokio::time::timeout(grace, async {
            loop {
                let idle = self.inner.idle.notified();
                if self.inner.in_flight.load(Ordering::SeqCst) == 0 {
                    return;
                }
                idle.await;
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                in_flight = self.inner.in_flight.load(Ordering::SeqCst),
                "grace period over; stopping workers with calls in flight"
            );
        }
        self.shutdown().await;
    }

    /// Stops every worker (politely, then by force) and waits for them.
    pub async fn shutdown(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
        // In a cluster: stop taking other nodes' calls now.
        self.inner.routes_changed.notify_one();
        // A reload under way finishes first: it could otherwise start a
        // new version after the list below is taken (a worker left
        // running) or attach it to the storage route after the release.
        let _no_reload = self.inner.reloading.lock().await;
        let plugins = self.all_plugins();
        let mut stops = tokio::task::JoinSet::new();
        for plugin in plugins {
            stops.spawn(async move { plugin.stop(STOP_GRACE).await });
        }
        stops.join_all().await;
        if let Some(route) = &self.inner.storage {
            route.release();
        }
        self.leave_cluster().await;
        // Every worker has exited; its cgroup is gone or going.
        let cgroups = self.inner.runtime.cgroups.clone();
        let _ = tokio::task::spawn_blocking(move || cgroups.remove()).await;
    }
}

fn remote_tool(tool: &str, args: &str) -> crate::cluster::wire::CallBody {
    crate::cluster::wire::CallBody::Tool {
        tool: tool.into(),
        args: args.into(),
    }
}

/// A call in flight; dropping it may wake a draining shutdown.
struct InFlight<'a>(&'a Inner);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}
