//! [`Supervisor`]: the library face. Loads a plugins directory, starts one
//! worker per plugin, routes calls, and stops everything on shutdown.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prx_ipc::{Call, Output};
use serde::Serialize;

#[path = "reload.rs"]
mod reload;
#[path = "routing.rs"]
mod routing;
pub use reload::ReloadOutcome;
pub use routing::{CronJob, MIDDLEWARE_STAGES, MemoryFound, ModuleDescription, PluginDetail};

use crate::broker::Services;
use crate::broker::events::{EventBus, SubscriberStats, Subscription};
use crate::broker::kv::KvStore;
use crate::broker::memory::MemoryStore;
use crate::cache::CompileCache;
use crate::config::SupervisorConfig;
use crate::error::CallError;
use crate::manifest::{CapabilityType, Manifest};
use crate::plugin::{Fingerprint, Plugin, PluginState, PluginStatus, Runtime};
use crate::topics::EventError;

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
    Kv(PathBuf, crate::broker::kv::KvError),
    #[error("the memory store in {0} cannot be opened: {1}")]
    Memory(PathBuf, crate::broker::memory::MemoryError),
    #[error("the prx-worker binary {0} is not usable: {1}")]
    WorkerBinary(PathBuf, std::io::Error),
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
    storage: Option<Arc<crate::storage::StorageRoute>>,
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
            cgroups: Arc::new(
                if config
                    .sandbox
                    .enabled
                    .contains(&crate::worker::verify::Layer::Cgroup)
                {
                    // One directory per supervisor, even for several in one
                    // process (tests): each removes its own at shutdown.
                    static STARTED: AtomicUsize = AtomicUsize::new(0);
                    let cgroups = crate::worker::cgroup::Cgroups::detect(&format!(
                        "prx-{}-{}",
                        std::process::id(),
                        STARTED.fetch_add(1, Ordering::Relaxed)
                    ));
                    tracing::info!("worker memory and pids limits: {}", cgroups.describe());
                    cgroups
                } else {
                    crate::worker::cgroup::Cgroups::Unavailable("turned off".into())
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
            .map(|name| Arc::new(crate::storage::StorageRoute::new(name)));
        if let Some(route) = &storage {
            tokio::spawn(crate::storage::poll_health(
                Arc::downgrade(route),
                config.storage_health_interval,
            ));
        }
        let services = Services {
            kv,
            bus: EventBus::new(config.event_queue).with_max_depth(config.event_max_depth),
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
                let result = plugin.load(&rt).await;
                (plugin, result)
            }));
        }
        for task in loading {
            let Ok((plugin, result)) = task.await else {
                continue;
            };
            match result {
                Ok(()) => supervisor.register(&plugin).await,
                Err(error) => supervisor.record_failure(plugin.dir.clone(), error),
            }
        }
        supervisor.watch_plugins_dir();
        Ok(supervisor)
    }

    /// Reads a plugin's manifest and component and checks them against
    /// the operator's policy, without registering anything.
    fn read_plugin(&self, dir: &Path) -> Result<Arc<Plugin>, String> {
        let files = Fingerprint::of(dir);
        let manifest_path = dir.join("plugin.toml");
        let manifest_text = std::fs::read_to_string(&manifest_path)
            .map_err(|e| format!("{}: {e}", manifest_path.display()))?;
        let manifest =
            Manifest::parse(&manifest_path, &manifest_text).map_err(|e| e.to_string())?;
        let wasm_path = manifest.wasm_path(dir);
        let wasm = read_inside(dir, &wasm_path)
            .and_then(|wasm| crate::component::check_header(&wasm).map(|()| wasm))
            .map_err(|e| {
                format!(
                    "{}: [plugin].wasm = {:?}: {e}",
                    manifest_path.display(),
                    manifest.plugin.wasm
                )
            })?;
        let digest = content_digest(manifest_text.as_bytes(), &wasm);
        self.inner
            .config
            .resource_caps
            .check(&manifest.plugin.name, &manifest.resources)
            .map_err(|e| format!("{}: {e}", manifest_path.display()))?;
        Plugin::new(
            dir.to_owned(),
            manifest,
            wasm,
            files,
            digest,
            &self.inner.config.permissions,
            &self.inner.services,
        )
        .map_err(|e| format!("{}: {e}", manifest_path.display()))
    }

    /// Reads a plugin's manifest and wasm; refuses duplicates.
    fn prepare(&self, dir: &Path) -> Result<Arc<Plugin>, String> {
        let plugin = self.read_plugin(dir)?;
        let manifest_path = dir.join("plugin.toml");
        let mut plugins = self.write_plugins();
        if let Some(existing) = plugins.get(&*plugin.name) {
            return Err(format!(
                "{}: plugin name `{}` is already used by {}; names must be unique",
                manifest_path.display(),
                plugin.name,
                existing.dir.display()
            ));
        }
        plugins.insert(plugin.name.to_string(), plugin.clone());
        drop(plugins);
        // After the name check: a second directory claiming a loaded
        // plugin's name must not add subscriptions to that plugin's queue.
        if let Err(e) = plugin.subscribe_manifest_patterns() {
            self.write_plugins().remove(&*plugin.name);
            return Err(e);
        }
        Ok(plugin)
    }

    /// Remembers a plugin directory that did not load. Its log line names
    /// the plugin by its directory, since its manifest may be unreadable.
    fn record_failure(&self, dir: PathBuf, error: String) {
        tracing::error!(plugin = %dir_name(&dir), dir = %dir.display(), "plugin not loaded: {error}");
        self.inner
            .failures
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(LoadFailure {
                files: Fingerprint::of(&dir),
                dir,
                error,
            });
    }

    /// Loads the plugin in `dir` again, replacing what was there: the way
    /// out of `failed` and `quarantined` once its files change.
    async fn retry(&self, dir: &Path) {
        tracing::info!(plugin = %dir_name(dir), dir = %dir.display(), "plugin files changed; loading the plugin again");
        self.write_plugins().retain(|_, p| {
            if p.dir == dir {
                p.broker().plugin_removed();
            }
            p.dir != dir
        });
        for table in [&self.inner.tools, &self.inner.providers, &self.inner.rpcs] {
            table
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|_, p| p.dir != dir);
        }
        self.inner
            .failures
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|f| f.dir != dir);
        match self.prepare(dir) {
            Ok(plugin) => match plugin.load(&self.inner.runtime).await {
                Ok(()) => self.register(&plugin).await,
                Err(error) => self.record_failure(dir.to_owned(), error),
            },
            Err(error) => self.record_failure(dir.to_owned(), error),
        }
    }

    /// Routes a loaded plugin's capabilities; a plugin whose RPC names
    /// clash with another's is stopped and marked failed.
    async fn register(&self, plugin: &Arc<Plugin>) {
        if let Err(error) = self.register_rpcs(plugin) {
            plugin.stop(STOP_GRACE).await;
            let error = plugin.fail(error);
            self.record_failure(plugin.dir.clone(), error);
            return;
        }
        self.register_tools(plugin);
        self.register_providers(plugin);
        tracing::info!(plugin = %plugin.name, pid = plugin.worker().map(|w| w.pid()), "plugin loaded");
        self.route_storage(plugin);
        self.spawn_delivery(plugin);
        self.spawn_schedules(plugin);
    }

    /// Makes the storage route use `plugin` when it serves the configured
    /// backend, and stop using a plugin of that name when it no longer does.
    fn route_storage(&self, plugin: &Arc<Plugin>) {
        let Some(route) = &self.inner.storage else {
            return;
        };
        let serves = plugin
            .manifest
            .capabilities_of(CapabilityType::Storage)
            .any(|c| c.name.as_deref() == Some(route.name()));
        if serves {
            route.attach(plugin.clone(), self.inner.runtime.clone());
            tracing::info!(plugin = %plugin.name, backend = route.name(), "memory is served by this storage plugin");
        } else {
            route.detach(&plugin.name);
        }
    }

    fn register_rpcs(&self, plugin: &Arc<Plugin>) -> Result<(), String> {
        let mut rpcs = self.inner.rpcs.write().unwrap_or_else(|p| p.into_inner());
        rpc_clash(&rpcs, plugin)?;
        for name in plugin.rpcs() {
            rpcs.insert(name, plugin.clone());
        }
        Ok(())
    }

    fn register_providers(&self, plugin: &Arc<Plugin>) {
        let mut providers = self
            .inner
            .providers
            .write()
            .unwrap_or_else(|p| p.into_inner());
        for cap in plugin.manifest.capabilities_of(CapabilityType::Provider) {
            let Some(name) = &cap.name else { continue };
            if let Some(other) = providers.get(name) {
                tracing::error!(plugin = %plugin.name, provider = %name, other = %other.name,
                    "provider name already served by another plugin; keeping the first");
                continue;
            }
            providers.insert(name.clone(), plugin.clone());
        }
    }

    fn register_tools(&self, plugin: &Arc<Plugin>) {
        let spec = plugin.tool_spec();
        let mut tools = self.inner.tools.write().unwrap_or_else(|p| p.into_inner());
        for cap in plugin.manifest.capabilities_of(CapabilityType::Tool) {
            let Some(name) = &cap.name else { continue };
            if let Some(spec) = &spec
                && spec.name.escaped() != *name
            {
                tracing::warn!(plugin = %plugin.name, manifest = %name, spec = %spec.name,
                    "the tool's get-spec name differs from its manifest name; routing by the manifest name");
            }
            if let Some(other) = tools.get(name) {
                tracing::error!(plugin = %plugin.name, tool = %name, other = %other.name,
                    "tool name already served by another plugin; keeping the first");
                continue;
            }
            tools.insert(name.clone(), plugin.clone());
        }
    }

    fn write_plugins(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Plugin>>> {
        self.inner
            .plugins
            .write()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub fn config(&self) -> &SupervisorConfig {
        &self.inner.config
    }

    /// Calls a tool by name with JSON arguments; returns its output.
    pub async fn call_tool(&self, tool: &str, args_json: &str) -> Result<String, CallError> {
        let _guard = self.enter()?;
        let plugin = self
            .inner
            .tools
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(tool)
            .cloned()
            .ok_or_else(|| CallError::UnknownTool {
                tool: tool.into(),
                known: self.tools().into_iter().map(|t| t.name).collect(),
            })?;
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
        let result = self.execute_tool(&plugin, tool, args_json).await;
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

    /// Every plugin found, loaded or not, by name; then the directories
    /// whose manifest could not be read.
    pub fn plugins(&self) -> Vec<PluginStatus> {
        let plugins = self.inner.plugins.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<PluginStatus> = plugins.values().map(|p| p.status()).collect();
        let known: Vec<PathBuf> = out.iter().map(|s| s.dir.clone()).collect();
        for failure in self.failures() {
            if !known.contains(&failure.dir) {
                out.push(PluginStatus {
                    name: dir_name(&failure.dir),
                    version: String::new(),
                    dir: failure.dir.clone(),
                    capabilities: Vec::new(),
                    state: PluginState::Failed(String::new()).label().into(),
                    error: Some(failure.error.clone()),
                    pid: None,
                    restarts: 0,
                    last_exit: None,
                    uptime_ms: None,
                    in_flight: 0,
                    restart_at_ms: None,
                    log_dropped: 0,
                    sandbox: Vec::new(),
                    rpcs: Vec::new(),
                    events_handled: 0,
                    handler_failures: 0,
                    digest: String::new(),
                    code: None,
                    reloads: 0,
                    reload_error: None,
                    calls: Default::default(),
                });
            }
        }
        out
    }

    /// A plugin's kv value (operators: `prx kv get`).
    pub fn kv_get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.inner
            .services
            .kv
            .get(plugin, key)
            .map_err(|e| e.to_string())
    }

    /// Bytes a plugin keeps in KV (keys and values), as its quota counts.
    pub fn kv_usage(&self, plugin: &str) -> Result<u64, String> {
        self.inner
            .services
            .kv
            .usage(plugin)
            .map_err(|e| e.to_string())
    }

    /// Every plugin's counters (`/metrics`, the console).
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.inner.services.metrics
    }

    /// A plugin's kv keys with a prefix (operators: `prx kv list`).
    pub fn kv_list(&self, plugin: &str, prefix: &str) -> Result<Vec<String>, String> {
        self.inner
            .services
            .kv
            .list_keys(plugin, prefix)
            .map_err(|e| e.to_string())
    }

    /// Publishes an event as the host (`prx.*` topics included).
    /// Returns the event's sequence number.
    pub fn publish(&self, topic: &str, payload_json: &str) -> Result<u64, EventError> {
        self.inner.services.bus.publish(topic, payload_json)
    }

    /// Subscribes the caller to events matching `pattern` (`*`, `a.*` or
    /// an exact topic). Dropping the handle unsubscribes.
    pub fn subscribe(&self, pattern: &str) -> Result<Subscription, EventError> {
        self.inner.services.bus.subscribe(pattern)
    }

    /// Events published on the bus since the supervisor started.
    pub fn events_published(&self) -> u64 {
        self.inner.services.bus.published()
    }

    /// Events that reached no plugin because their causal chain was
    /// `[events] max_depth` long (a loop between plugins stopped).
    pub fn events_too_deep(&self) -> u64 {
        self.inner.services.bus.too_deep()
    }

    /// Every subscriber of the bus with its queue and drop counts.
    pub fn event_stats(&self) -> Vec<SubscriberStats> {
        self.inner.services.bus.stats()
    }

    /// Plugins that could not be loaded, with the reason.
    pub fn failures(&self) -> Vec<LoadFailure> {
        self.inner
            .failures
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Tools being served.
    pub fn tools(&self) -> Vec<ToolInfo> {
        let tools = self.inner.tools.read().unwrap_or_else(|p| p.into_inner());
        tools
            .iter()
            .map(|(name, plugin)| {
                let spec = plugin.tool_spec();
                ToolInfo {
                    name: name.clone(),
                    plugin: plugin.name.to_string(),
                    description: spec
                        .as_ref()
                        .map(|s| s.description.escaped())
                        .unwrap_or_default(),
                    parameters_schema: spec.map(|s| s.parameters_schema).unwrap_or_default(),
                }
            })
            .collect()
    }

    /// Number of plugins running now.
    pub fn running(&self) -> usize {
        self.plugins()
            .iter()
            .filter(|p| p.state == PluginState::Running.label())
            .count()
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
        let plugins: Vec<_> = self
            .inner
            .plugins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let mut stops = tokio::task::JoinSet::new();
        for plugin in plugins {
            stops.spawn(async move { plugin.stop(STOP_GRACE).await });
        }
        stops.join_all().await;
        // Every worker has exited; its cgroup is gone or going.
        let cgroups = self.inner.runtime.cgroups.clone();
        let _ = tokio::task::spawn_blocking(move || cgroups.remove()).await;
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

/// Refuses RPC names of `plugin` that another plugin already serves.
fn rpc_clash(rpcs: &BTreeMap<String, Arc<Plugin>>, plugin: &Plugin) -> Result<(), String> {
    for name in plugin.rpcs() {
        if let Some(other) = rpcs.get(&name).filter(|o| o.name != plugin.name) {
            return Err(format!(
                "registers the RPC `{name}`, which plugin `{}` already serves; RPC names are unique across plugins: rename it in one of them or remove one plugin",
                other.name
            ));
        }
    }
    Ok(())
}

/// SHA-256 of a plugin's manifest and component.
fn content_digest(manifest: &[u8], wasm: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    hasher.update((manifest.len() as u64).to_le_bytes());
    hasher.update(manifest);
    hasher.update(wasm);
    hasher.finalize().into()
}

/// True for a directory name the supervisor leaves alone: hidden ones are
/// where installs and editors stage files before renaming them in.
fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

/// Subdirectories holding a `plugin.toml`, in name order; hidden ones are
/// skipped.
fn plugin_dirs(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(root)? {
        let path = entry?.path();
        if path.is_dir() && !is_hidden(&path) && path.join("plugin.toml").is_file() {
            dirs.push(path);
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// Reads a file that must resolve (symlinks included) inside `dir`.
fn read_inside(dir: &Path, path: &Path) -> Result<Vec<u8>, String> {
    let real_dir = dir.canonicalize().map_err(|e| e.to_string())?;
    let real = path.canonicalize().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("not found at {}", path.display()),
        _ => e.to_string(),
    })?;
    if !real.starts_with(&real_dir) {
        return Err(format!(
            "resolves to {}, outside the plugin's directory",
            real.display()
        ));
    }
    std::fs::read(&real).map_err(|e| e.to_string())
}

/// A plugin directory's name: the plugin's name when its manifest cannot
/// be read.
fn dir_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
