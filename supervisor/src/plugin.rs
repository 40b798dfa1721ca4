//! One loaded plugin: its manifest, its current worker, its state, and the
//! task that brings the worker back when it dies.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime};

use prx_ipc::{Call, CodeSource, EngineSettings, Limits, LoadStage, Output, ToolSpec};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::broker::PluginBroker;
use crate::broker::Services;
use crate::broker::events::EventBus;
use crate::cache::CompileCache;
use crate::config::{PermissionPolicy, RestartPolicy};
use crate::error::CallError;
use crate::manifest::Permission;
use crate::manifest::{CapabilityType, Manifest};
use crate::topics::{Chain, no_chain};
use crate::worker::Liveness;
use crate::worker::{ExitCause, SourceKind, StartError, Worker, WorkerSpec};
use std::collections::BTreeSet;

/// Guard region after each linear memory: small, because the reservation is
/// bounded anyway (explicit bounds checks), and every byte is address space
/// the worker's rlimit must allow.
const MEMORY_GUARD: u64 = 64 << 10;
/// Store limits beyond memory: generous for real components (a Python
/// component has a few dozen core instances and tables of ~30k entries),
/// finite so a hostile one cannot exhaust the worker through them.
const MAX_INSTANCES: u32 = 1_000;
const MAX_TABLES: u32 = 1_000;
const MAX_TABLE_ELEMENTS: u64 = 100_000;

/// Where a plugin is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginState {
    Starting,
    Running,
    Restarting,
    /// Waiting before the next restart (exponential backoff).
    BackingOff {
        until: SystemTime,
    },
    /// Crashed too often, or its worker broke the protocol: not restarted
    /// until an operator releases it.
    Quarantined(String),
    /// Could not be loaded (manifest, compile, start-up code): not retried
    /// until its files change.
    Failed(String),
    Stopped,
}

impl PluginState {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Restarting => "restarting",
            Self::BackingOff { .. } => "backing_off",
            Self::Quarantined(_) => "quarantined",
            Self::Failed(_) => "failed",
            Self::Stopped => "stopped",
        }
    }
}

/// What `prx plugins` shows of a plugin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PluginStatus {
    pub name: String,
    pub version: String,
    pub dir: PathBuf,
    pub capabilities: Vec<String>,
    pub state: String,
    /// Why it is failed or quarantined.
    pub error: Option<String>,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub last_exit: Option<String>,
    pub uptime_ms: Option<u64>,
    /// Calls being served by the current worker.
    pub in_flight: usize,
    /// When backing off: the next restart, in ms since the Unix epoch.
    pub restart_at_ms: Option<u64>,
    /// Log lines dropped by the per-plugin rate limit.
    #[serde(default)]
    pub log_dropped: u64,
    /// The current worker's sandbox layers: `applied`, `disabled`, or
    /// `unavailable: <why>`.
    #[serde(default)]
    pub sandbox: Vec<(String, String)>,
    /// RPC names a module registered.
    #[serde(default)]
    pub rpcs: Vec<String>,
    /// Events its handler (hook or module) received, and how many of those
    /// failed (an error, a trap, no answer).
    #[serde(default)]
    pub events_handled: u64,
    #[serde(default)]
    pub handler_failures: u64,
    /// The first 12 hex digits of the SHA-256 of the manifest and
    /// component being served: which build runs.
    #[serde(default)]
    pub digest: String,
    /// How the current worker got the plugin's code: `compiled`, `cache,
    /// mapped` (the compile cache's artifact run in place), or `cache,
    /// copied` (it could not be mapped executable).
    #[serde(default)]
    pub code: Option<String>,
    /// Times a new version of the plugin took over while it ran.
    #[serde(default)]
    pub reloads: u32,
    /// Why the newest version of its files is not the one serving (it
    /// failed validation, asked for more than the policy allows, or did
    /// not start); the version shown keeps serving.
    #[serde(default)]
    pub reload_error: Option<String>,
    /// Calls, errors, latency over recent calls and fuel (all versions).
    #[serde(default)]
    pub calls: crate::metrics::CallSummary,
}

pub struct Plugin {
    pub name: Arc<str>,
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// The plugin's files when they were last looked at; a change reloads
    /// a running plugin and retries a failed or quarantined one.
    files: Mutex<Fingerprint>,
    /// SHA-256 of the manifest and the component as read: a reload of the
    /// very same content is skipped.
    pub digest: [u8; 32],
    wasm: Arc<Vec<u8>>,
    /// The compile cache key of `wasm`: hashed once, not per worker start
    /// (a Python component is about 19 MB).
    cache_key: OnceLock<String>,
    /// The last answer of a module's `describe()` and when it came.
    described: tokio::sync::Mutex<Option<(Instant, Result<Output, String>)>>,
    /// The serving worker's code was compiled for its start (not found in
    /// the compile cache): what the status shows as its code.
    compiled_here: AtomicBool,
    limits: Limits,
    engine: EngineSettings,
    broker: Arc<PluginBroker>,
    state: Mutex<PluginState>,
    worker: watch::Sender<Option<Arc<Worker>>>,
    spec: Mutex<Option<ToolSpec>>,
    restarts: AtomicU32,
    last_exit: Mutex<Option<String>>,
    stopping: AtomicBool,
    /// Wakes a backoff sleep early (stop, release).
    wake: tokio::sync::Notify,
    bus: EventBus,
    /// What `name()` answered at load (providers, storage).
    reported_name: Mutex<Option<String>>,
    /// RPC names the current instance's `on-load` registered (modules).
    rpcs: Mutex<Vec<String>>,
    pub(crate) events_handled: AtomicU64,
    pub(crate) handler_failures: AtomicU64,
    /// Cron: set while a run is in progress.
    pub(crate) cron_running: AtomicBool,
    pub(crate) cron: Mutex<crate::metrics::CronStats>,
    /// Open while the plugin takes calls; closed when a new version
    /// replaces it. A call counts itself in `active` under the read lock,
    /// so once the gate is closed `active` only goes down.
    gate: RwLock<bool>,
    active: AtomicUsize,
    /// Wakes a replacement waiting for `active` to reach zero.
    drained: tokio::sync::Notify,
    /// The version that replaced this one: calls routed here after the
    /// switch go on to it.
    successor: OnceLock<Arc<Plugin>>,
    /// Times a new version took over (carried from version to version).
    reloads: AtomicU32,
    /// The files of a newer version that was refused, and why: shown in
    /// the status, and not tried again until the files change.
    reload_error: Mutex<Option<(Fingerprint, String)>>,
}

/// One call into a plugin, counted until dropped.
struct ActiveCall<'a>(&'a Plugin);

impl Drop for ActiveCall<'_> {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Shared things a plugin needs to start workers.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub worker_binary: PathBuf,
    pub cache: CompileCache,
    pub load_timeout: Duration,
    pub deadline_grace: Duration,
    pub restart: RestartPolicy,
    pub liveness: Liveness,
    pub extra_worker_args: Vec<String>,
    pub sandbox: crate::worker::verify::SandboxPolicy,
    pub cgroups: Arc<crate::worker::cgroup::Cgroups>,
    /// Compiles under way at once ([`Runtime::parallel_compiles`]).
    /// Cranelift already spreads one component over every core, so more
    /// at once only make each take longer, until a large one (a Python
    /// plugin) runs past the load timeout. Starts from the compile cache
    /// do not wait for it.
    pub compiles: Arc<tokio::sync::Semaphore>,
}

impl Runtime {
    /// One compile per four cores, at least one. On 2 cores, two Python
    /// components compiled side by side took 43-45 s each, against the
    /// 60 s load timeout; one after the other, about 20 s each.
    pub fn parallel_compiles() -> usize {
        std::thread::available_parallelism().map_or(1, |n| (n.get() / 4).max(1))
    }
}

/// The limits a worker enforces and the engine it compiles with, from a
/// manifest's `[resources]`.
pub fn limits_of(r: &crate::manifest::Resources) -> (Limits, EngineSettings) {
    let memory = r.max_memory_mb << 20;
    let limits = Limits {
        max_fuel: r.max_fuel,
        max_memory_bytes: memory,
        max_execution_time_ms: r.max_execution_time_ms,
        max_instances: MAX_INSTANCES,
        max_tables: MAX_TABLES,
        max_table_elements: MAX_TABLE_ELEMENTS,
    };
    let engine = EngineSettings {
        memory_reservation: memory,
        memory_guard: MEMORY_GUARD,
    };
    (limits, engine)
}

impl Plugin {
    /// Builds a plugin from its manifest; refuses it when a required
    /// permission is not allowed by the operator's policy.
    pub fn new(
        dir: PathBuf,
        manifest: Manifest,
        wasm: Vec<u8>,
        files: Fingerprint,
        digest: [u8; 32],
        policy: &PermissionPolicy,
        services: &Services,
    ) -> Result<Arc<Self>, String> {
        let name: Arc<str> = manifest.plugin.name.as_str().into();
        let r = &manifest.resources;
        let (limits, engine) = limits_of(r);
        let p = &manifest.permissions;
        if let Some(refused) = p.required.iter().find(|perm| !policy.allows(&name, **perm)) {
            return Err(format!(
                "plugin `{name}` requires permission `{refused}`, which the operator's policy does not allow for it; allow it in the policy or move it to [permissions].optional"
            ));
        }
        let declared: BTreeSet<Permission> =
            p.required.iter().chain(&p.optional).copied().collect();
        let granted = declared
            .iter()
            .copied()
            .filter(|perm| policy.allows(&name, *perm))
            .collect();
        for perm in declared.iter().filter(|perm| !policy.allows(&name, **perm)) {
            tracing::warn!(plugin = %name, permission = %perm, "optional permission not granted by policy; its calls will fail");
        }
        let mut broker = PluginBroker::new(name.clone(), manifest.config_pairs())
            .with_services(services, r.kv_quota_bytes());
        if declared.contains(&Permission::HttpOutbound) {
            let allowlist = crate::broker::http::Allowlist::parse(&p.http_allowlist)
                .map_err(|e| format!("plugin `{name}`: {e}"))?;
            if let Some(ceiling) = policy.http_ceiling(&name) {
                let ceiling = crate::broker::http::Allowlist::parse(ceiling)
                    .map_err(|e| format!("the operator's http_allowlist for `{name}`: {e}"))?;
                let beyond = allowlist.beyond(&ceiling);
                if !beyond.is_empty() {
                    return Err(format!(
                        "plugin `{name}` declares http_allowlist entries beyond what the operator's policy allows ({}); narrow the plugin's [permissions].http_allowlist or widen [permissions.http_allowlist] {name} in the supervisor's config",
                        beyond.join(", ")
                    ));
                }
            }
            let http = crate::broker::http::PluginHttp::new(
                name.clone(),
                allowlist,
                &services.http,
                r.max_http_requests,
                Duration::from_millis(r.max_execution_time_ms),
            )
            .map_err(|e| format!("plugin `{name}`: {e}"))?;
            broker = broker.with_http(http);
        }
        let broker = Arc::new(broker.with_permissions(declared, granted));
        Ok(Arc::new(Self {
            name,
            dir,
            manifest,
            files: Mutex::new(files),
            digest,
            wasm: Arc::new(wasm),
            limits,
            engine,
            broker,
            state: Mutex::new(PluginState::Starting),
            worker: watch::channel(None).0,
            spec: Mutex::new(None),
            restarts: AtomicU32::new(0),
            last_exit: Mutex::new(None),
            stopping: AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
            bus: services.bus.clone(),
            reported_name: Mutex::new(None),
            rpcs: Mutex::new(Vec::new()),
            events_handled: AtomicU64::new(0),
            handler_failures: AtomicU64::new(0),
            cron_running: AtomicBool::new(false),
            cron: Mutex::new(Default::default()),
            gate: RwLock::new(true),
            active: AtomicUsize::new(0),
            drained: tokio::sync::Notify::new(),
            successor: OnceLock::new(),
            cache_key: OnceLock::new(),
            compiled_here: AtomicBool::new(false),
            described: tokio::sync::Mutex::new(None),
            reloads: AtomicU32::new(0),
            reload_error: Mutex::new(None),
        }))
    }

    /// Subscribes a hook's manifest patterns. They hold from now on,
    /// across worker restarts, so no event is missed while a worker
    /// starts. Only for the plugin registered under this name: the bus
    /// knows plugins by name.
    pub fn subscribe_manifest_patterns(&self) -> Result<(), String> {
        for cap in self.manifest.capabilities_of(CapabilityType::Hook) {
            for pattern in &cap.events {
                if let Err(e) = self
                    .bus
                    .subscribe_plugin_fixed(&self.name, pattern.pattern())
                {
                    self.broker.plugin_removed();
                    return Err(format!("plugin `{}`: event pattern: {e}", self.name));
                }
            }
        }
        Ok(())
    }

    /// Publishes a host event about this plugin (`prx.lifecycle.*`).
    /// The event is also kept in the plugin's recent log for the console.
    pub fn announce(&self, topic: &str, mut payload: serde_json::Value) {
        let level = match topic {
            "prx.lifecycle.quarantined" => "error",
            "prx.lifecycle.crashed" => "warn",
            _ => "info",
        };
        let what = topic.strip_prefix("prx.lifecycle.").unwrap_or(topic);
        self.stats().note(level, format!("{what}: {payload}"));
        payload["plugin"] = self.name.as_ref().into();
        payload["version"] = self.manifest.plugin.version.as_str().into();
        if let Err(e) = self.bus.publish(topic, &payload.to_string()) {
            tracing::warn!(plugin = %self.name, topic, "cannot publish: {e}");
        }
    }

    /// What the plugin's `name()` answered at load (providers, storage).
    pub fn reported_name(&self) -> Option<String> {
        self.reported_name
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// RPC names the current instance registered.
    pub fn rpcs(&self) -> Vec<String> {
        self.rpcs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Publishes an `error` event (`message`, `context`, `plugin`); the
    /// plugins in `chain` caused it and do not receive it.
    pub fn report_error(&self, message: &str, context: &str, chain: Chain) {
        let payload = serde_json::json!({
            "message": message,
            "context": context,
            "plugin": &*self.name,
        });
        if let Err(e) = self
            .bus
            .publish_caused("error", &payload.to_string(), chain)
        {
            tracing::warn!(plugin = %self.name, "cannot publish an error event: {e}");
        }
    }

    /// The broker serving this plugin's host calls.
    pub fn broker(&self) -> &PluginBroker {
        &self.broker
    }

    /// True once the plugin is being stopped for good.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Calls into the plugin, waiting for a worker up to the plugin's
    /// deadline. A guest's `err` comes back as [`Output::Refused`].
    /// A call that reached a version replaced meanwhile goes on to the
    /// new one.
    pub async fn call(&self, rt: &Runtime, call: Call, chain: Chain) -> Result<Output, CallError> {
        let Some(_active) = self.enter_call() else {
            return self.forward(rt, call, chain).await;
        };
        let deadline = self.deadline(rt);
        let worker = match self.ready_worker(deadline).await {
            Ok(worker) => worker,
            Err(_) if self.successor.get().is_some() => {
                return self.forward(rt, call, chain).await;
            }
            Err(e) => return Err(e),
        };
        self.call_worker(&worker, rt, call, chain).await
    }

    async fn forward(&self, rt: &Runtime, call: Call, chain: Chain) -> Result<Output, CallError> {
        match self.successor.get() {
            Some(next) => Box::pin(next.call(rt, call, chain)).await,
            None => Err(CallError::NotRunning {
                plugin: self.name.to_string(),
                state: PluginState::Stopped.label().into(),
                detail: None,
            }),
        }
    }

    fn enter_call(&self) -> Option<ActiveCall<'_>> {
        let open = self.gate.read().unwrap_or_else(|p| p.into_inner());
        if !*open {
            return None;
        }
        self.active.fetch_add(1, Ordering::SeqCst);
        Some(ActiveCall(self))
    }

    async fn call_worker(
        &self,
        worker: &Worker,
        rt: &Runtime,
        call: Call,
        chain: Chain,
    ) -> Result<Output, CallError> {
        let deadline = self.deadline(rt);
        let kind = crate::metrics::call_kind(&call);
        let started = std::time::Instant::now();
        let result = worker
            .invoke(call, deadline, chain)
            .await
            .map_err(|e| self.call_error(e, rt));
        if let Some(kind) = kind {
            let error = crate::metrics::error_kind(&result);
            self.stats().record(kind, error, started.elapsed());
        }
        result
    }

    /// This plugin's counters, shared by all its versions.
    pub fn stats(&self) -> &Arc<crate::metrics::PluginStats> {
        self.broker.stats()
    }

    /// What a new instance needs before it serves: the tool spec, the
    /// provider's or storage's name, a module's `on-load`.
    async fn init_worker(&self, worker: &Worker, rt: &Runtime) -> Result<(), String> {
        self.ask_names(worker, rt).await?;
        self.module_on_load(worker, rt).await
    }

    /// The tool spec and the provider's or storage's name: calls without
    /// effects outside the instance.
    async fn ask_names(&self, worker: &Worker, rt: &Runtime) -> Result<(), String> {
        if self
            .manifest
            .capabilities_of(CapabilityType::Tool)
            .next()
            .is_some()
        {
            let spec = self
                .read_tool_spec(worker, rt)
                .await
                .map_err(|e| format!("get-spec failed: {e}"))?;
            *self.spec.lock().unwrap_or_else(|p| p.into_inner()) = Some(spec);
        }
        for kind in [CapabilityType::Provider, CapabilityType::Storage] {
            let Some(cap) = self.manifest.capabilities_of(kind).next() else {
                continue;
            };
            let call = match kind {
                CapabilityType::Provider => Call::ProviderName,
                _ => Call::StorageName,
            };
            match self.call_worker(worker, rt, call, no_chain()).await {
                Ok(Output::Text(name)) => {
                    let name = crate::text::untrusted_text(name);
                    if cap.name.as_deref() != Some(name.as_str()) {
                        tracing::warn!(plugin = %self.name, manifest = ?cap.name, reported = %name,
                            "the {kind}'s name() differs from its manifest name; routing by the manifest name");
                    }
                    *self.reported_name.lock().unwrap_or_else(|p| p.into_inner()) = Some(name);
                }
                Ok(_) => return Err(self.bad_reply().to_string()),
                Err(e) => return Err(format!("name() failed: {e}")),
            }
        }
        Ok(())
    }

    /// A module's `on-load`, which registers its RPCs and subscriptions.
    async fn module_on_load(&self, worker: &Worker, rt: &Runtime) -> Result<(), String> {
        if self
            .manifest
            .capabilities_of(CapabilityType::Module)
            .next()
            .is_some()
        {
            self.broker.begin_registration();
            let loaded = self
                .call_worker(worker, rt, Call::ModuleOnLoad, no_chain())
                .await;
            let names = self.broker.end_registration();
            match loaded {
                Ok(Output::Unit) => {}
                Ok(Output::Refused(e)) => {
                    return Err(format!(
                        "on-load refused: {}",
                        crate::text::untrusted_text(e)
                    ));
                }
                Ok(_) => return Err(self.bad_reply().to_string()),
                Err(e) => return Err(format!("on-load failed: {e}")),
            }
            *self.rpcs.lock().unwrap_or_else(|p| p.into_inner()) = names;
        }
        Ok(())
    }

    /// Failed or quarantined: waiting for its files or an operator.
    pub fn is_parked(&self) -> bool {
        matches!(
            self.state(),
            PluginState::Failed(_) | PluginState::Quarantined(_)
        )
    }

    pub fn state(&self) -> PluginState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_state(&self, state: PluginState) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = state;
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn tool_spec(&self) -> Option<ToolSpec> {
        self.spec.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn worker(&self) -> Option<Arc<Worker>> {
        self.worker.borrow().clone()
    }

    pub fn status(&self) -> PluginStatus {
        let state = self.state();
        let worker = self.worker();
        PluginStatus {
            name: self.name.to_string(),
            version: self.manifest.plugin.version.clone(),
            dir: self.dir.clone(),
            capabilities: self
                .manifest
                .capabilities
                .iter()
                .map(|c| match &c.name {
                    Some(name) => format!("{}:{name}", c.kind),
                    None => c.kind.to_string(),
                })
                .collect(),
            error: match &state {
                PluginState::Failed(reason) | PluginState::Quarantined(reason) => {
                    Some(reason.clone())
                }
                _ => None,
            },
            restart_at_ms: match &state {
                PluginState::BackingOff { until } => until
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_millis() as u64),
                _ => None,
            },
            state: state.label().into(),
            pid: worker.as_ref().map(|w| w.pid()),
            restarts: self.restarts.load(Ordering::Relaxed),
            last_exit: self
                .last_exit
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            in_flight: worker.as_ref().map(|w| w.in_flight()).unwrap_or(0),
            log_dropped: self.broker.log_dropped(),
            sandbox: worker
                .as_ref()
                .map(|w| {
                    w.sandbox()
                        .layers
                        .iter()
                        .map(|l| {
                            let status = match &l.status {
                                prx_ipc::LayerStatus::Applied => "applied".to_owned(),
                                prx_ipc::LayerStatus::Disabled => "disabled".to_owned(),
                                prx_ipc::LayerStatus::Unavailable(why) => {
                                    format!("unavailable: {why}")
                                }
                            };
                            (l.layer.clone(), status)
                        })
                        .collect()
                })
                .unwrap_or_default(),
            uptime_ms: worker.as_ref().map(|w| w.uptime().as_millis() as u64),
            rpcs: self.rpcs(),
            events_handled: self.events_handled.load(Ordering::Relaxed),
            handler_failures: self.handler_failures.load(Ordering::Relaxed),
            digest: self.digest_hex(),
            code: worker.as_ref().map(|w| {
                if self.compiled_here.load(Ordering::Relaxed) {
                    CodeSource::Compiled.as_str().to_owned()
                } else {
                    w.code().as_str().to_owned()
                }
            }),
            reloads: self.reloads.load(Ordering::Relaxed),
            reload_error: self.reload_error().map(|(_, why)| why),
            calls: self.stats().summary(),
        }
    }

    /// The plugin's files when they were last looked at.
    pub fn files(&self) -> Fingerprint {
        self.files.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Files that changed to the very same content.
    pub fn set_files(&self, files: Fingerprint) {
        *self.files.lock().unwrap_or_else(|p| p.into_inner()) = files;
    }

    /// The first 12 hex digits of the content digest.
    pub fn digest_hex(&self) -> String {
        self.digest[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The refused newer version's files and why, if one was refused.
    pub fn reload_error(&self) -> Option<(Fingerprint, String)> {
        self.reload_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records that the version in `files` was refused; this one serves on.
    pub fn set_reload_error(&self, files: Fingerprint, why: String) {
        *self.reload_error.lock().unwrap_or_else(|p| p.into_inner()) = Some((files, why));
    }

    /// Starts and checks a worker for this new version of a running plugin
    /// (exports, tool spec, names, a module's `on-load`) without touching
    /// the running version: its subscriptions and queue stay as they are.
    pub async fn start_standby(&self, rt: &Runtime) -> Result<Arc<Worker>, String> {
        // Its kv writes wait until it takes over (`commit_staged`).
        self.broker.begin_staging();
        let worker = self.spawn_checked(rt).await?;
        match self.init_worker(&worker, rt).await {
            Ok(()) => Ok(worker),
            Err(e) => {
                worker.kill();
                Err(e)
            }
        }
    }

    /// A new worker whose exports match the manifest (killed when not).
    async fn spawn_checked(&self, rt: &Runtime) -> Result<Arc<Worker>, String> {
        let worker = self.spawn_worker(rt).await.map_err(|e| e.reason())?;
        if let Err(e) = self.check_exports(&worker) {
            worker.kill();
            return Err(e);
        }
        Ok(worker)
    }

    /// Compiles the component in a sandboxed worker (filling the compile
    /// cache), checks its exports against the manifest, asks the calls
    /// without effects (a tool's spec, a provider's or storage's name; a
    /// module's `on-load` is not run) and stops the worker: an install can
    /// make sure a version starts, and its later load is a cached one.
    pub async fn compile_check(&self, rt: &Runtime) -> Result<(), String> {
        // A check, not a version that serves: nothing it writes is kept.
        self.broker.begin_staging();
        let worker = self.spawn_checked(rt).await?;
        let named = self.ask_names(&worker, rt).await;
        worker.kill();
        named
    }

    /// Makes a started standby this plugin's serving worker, in place of
    /// `previous` (which the caller retires), and watches it.
    pub fn go_live(self: &Arc<Self>, rt: &Runtime, worker: Arc<Worker>, previous: &Plugin) {
        self.reloads.store(
            previous.reloads.load(Ordering::Relaxed) + 1,
            Ordering::Relaxed,
        );
        self.worker.send_replace(Some(worker.clone()));
        self.set_state(PluginState::Running);
        self.announce(
            "prx.lifecycle.reloaded",
            serde_json::json!({
                "pid": worker.pid(),
                "from_version": previous.manifest.plugin.version,
                "digest": self.digest_hex(),
            }),
        );
        tokio::spawn(supervise(self.clone(), rt.clone(), worker));
    }

    /// Hands this version over to `successor`: no call enters it any more
    /// (those routed here go on to the successor), the calls in it finish
    /// (for at most `drain`), then its worker stops. Its subscriptions,
    /// queue and kv data belong to the plugin's name and stay.
    pub async fn retire(&self, successor: Arc<Plugin>, drain: Duration) {
        let _ = self.successor.set(successor);
        *self.gate.write().unwrap_or_else(|p| p.into_inner()) = false;
        self.stopping.store(true, Ordering::SeqCst);
        self.wake.notify_waiters();
        // Calls waiting for a worker of this version give up and go on.
        self.worker.send_modify(|_| {});
        let drained = tokio::time::timeout(drain, async {
            loop {
                let woken = self.drained.notified();
                if self.active.load(Ordering::SeqCst) == 0 {
                    return;
                }
                woken.await;
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(plugin = %self.name, in_flight = self.active.load(Ordering::SeqCst),
                "the replaced version's calls did not finish in time; stopping it");
        }
        self.set_state(PluginState::Stopped);
        if let Some(worker) = self.worker.send_replace(None) {
            worker.stop(Duration::from_secs(2)).await;
        }
    }

    /// Starts the first worker, checks the exports against the manifest and
    /// reads the tool spec. On success the plugin is running and watched.
    pub async fn load(self: &Arc<Self>, rt: &Runtime) -> Result<(), String> {
        let worker = match self.start_worker(rt).await {
            Ok(worker) => worker,
            Err(e) if e.is_security_event() => return Err(self.quarantine(e.reason())),
            Err(e) => return Err(self.fail(format!("{e}"))),
        };
        if let Err(e) = self.check_exports(&worker) {
            worker.kill();
            return Err(self.fail(e));
        }
        if let Err(e) = self.init_worker(&worker, rt).await {
            worker.kill();
            return Err(self.fail(e));
        }
        self.worker.send_replace(Some(worker.clone()));
        self.set_state(PluginState::Running);
        self.announce(
            "prx.lifecycle.loaded",
            serde_json::json!({ "pid": worker.pid() }),
        );
        tokio::spawn(supervise(self.clone(), rt.clone(), worker));
        Ok(())
    }

    /// Lifts a quarantine: the crash history is forgotten and a worker is
    /// started at once. Errors when the plugin is not quarantined.
    pub async fn release(self: &Arc<Self>, rt: &Runtime) -> Result<(), String> {
        {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if !matches!(*state, PluginState::Quarantined(_)) {
                return Err(format!(
                    "plugin `{}` is {}, not quarantined",
                    self.name,
                    state.label()
                ));
            }
            *state = PluginState::Restarting;
        }
        tracing::info!(plugin = %self.name, event = "prx.lifecycle.released", "quarantine lifted by the operator");
        let started = match self.start_worker(rt).await {
            Ok(worker) => match self.init_worker(&worker, rt).await {
                Ok(()) => Ok(worker),
                Err(e) => {
                    worker.kill();
                    Err(e)
                }
            },
            Err(e) => Err(e.to_string()),
        };
        match started {
            Ok(worker) => {
                self.worker.send_replace(Some(worker.clone()));
                self.set_state(PluginState::Running);
                self.announce(
                    "prx.lifecycle.released",
                    serde_json::json!({ "pid": worker.pid() }),
                );
                tokio::spawn(supervise(self.clone(), rt.clone(), worker));
                Ok(())
            }
            Err(e) => Err(self.quarantine(format!("restart after release failed: {e}"))),
        }
    }

    fn quarantine(&self, reason: String) -> String {
        let message = format!(
            "plugin `{}` quarantined: {reason}; release it with `prx release {}`",
            self.name, self.name
        );
        self.set_state(PluginState::Quarantined(message.clone()));
        self.stats().count_quarantine();
        tracing::error!(plugin = %self.name, event = "prx.lifecycle.quarantined", "{message}");
        self.announce(
            "prx.lifecycle.quarantined",
            serde_json::json!({ "reason": message }),
        );
        message
    }

    /// Marks the plugin failed (not retried until its files change); its
    /// event queue and subscriptions go.
    pub(crate) fn fail(&self, reason: String) -> String {
        let message = format!("plugin `{}` ({}): {reason}", self.name, self.dir.display());
        self.set_state(PluginState::Failed(message.clone()));
        self.broker.plugin_removed();
        message
    }

    async fn start_worker(&self, rt: &Runtime) -> Result<Arc<Worker>, StartError> {
        // A new instance starts with no subscriptions.
        self.broker.instance_ended();
        self.spawn_worker(rt).await
    }

    /// Starts a worker from the compile cache, or compiles the component
    /// in a compile worker first (and caches the result for this plugin).
    async fn spawn_worker(&self, rt: &Runtime) -> Result<Arc<Worker>, StartError> {
        let key = self
            .cache_key
            .get_or_init(|| rt.cache.key(&self.name, &self.wasm, &self.engine))
            .clone();
        if let Some(worker) = self.start_cached(rt, &key).await? {
            return Ok(worker);
        }
        // Wait for a turn to compile (the load timeout starts after it);
        // the same component may have been compiled meanwhile.
        let turn = rt.compiles.acquire().await;
        if let Some(worker) = self.start_cached(rt, &key).await? {
            return Ok(worker);
        }
        let compiled = Worker::compile(&self.spec(rt, self.wasm.clone(), SourceKind::Wasm)).await?;
        drop(turn);
        tracing::info!(plugin = %self.name, compile_ms = compiled.compile.as_millis() as u64, "compiled");
        let cache = rt.cache.clone();
        let stored =
            tokio::task::spawn_blocking(move || cache.put_and_open(&key, &compiled.bytes)).await;
        let artifact = match stored {
            Ok(Ok(artifact)) => artifact,
            Ok(Err(e)) => {
                return Err(StartError::Load {
                    stage: LoadStage::Receive,
                    message: format!("keeping the compiled artifact: {e}"),
                });
            }
            Err(e) => {
                return Err(StartError::Load {
                    stage: LoadStage::Receive,
                    message: format!("keeping the compiled artifact: {e}"),
                });
            }
        };
        let source = SourceKind::Artifact(Arc::new(artifact));
        let started = Worker::start(self.spec(rt, self.wasm.clone(), source)).await?;
        self.compiled_here.store(true, Ordering::Relaxed);
        Ok(started.worker)
    }

    /// A worker started from the compile cache's artifact for `key`, if
    /// there is one; an artifact the worker refuses is removed (`None`).
    async fn start_cached(
        &self,
        rt: &Runtime,
        key: &str,
    ) -> Result<Option<Arc<Worker>>, StartError> {
        // The first open of a cache file hashes it (45 MB for a Python
        // plugin): off the runtime's threads.
        let cache = rt.cache.clone();
        let owned = key.to_owned();
        let found = tokio::task::spawn_blocking(move || cache.get(&owned)).await;
        let Ok(Some(artifact)) = found else {
            return Ok(None);
        };
        let source = SourceKind::Artifact(Arc::new(artifact));
        match Worker::start(self.spec(rt, self.wasm.clone(), source)).await {
            Ok(started) => {
                self.compiled_here.store(false, Ordering::Relaxed);
                Ok(Some(started.worker))
            }
            Err(e) if e.is_stale_artifact() => {
                tracing::info!(plugin = %self.name, "cached artifact refused ({e}); compiling again");
                rt.cache.remove(key);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn spec(&self, rt: &Runtime, component: Arc<Vec<u8>>, source: SourceKind) -> WorkerSpec {
        WorkerSpec {
            plugin: self.name.clone(),
            binary: rt.worker_binary.clone(),
            limits: self.limits,
            engine: self.engine,
            component,
            source,
            load_timeout: rt.load_timeout,
            broker: self.broker.clone(),
            liveness: rt.liveness,
            extra_args: rt.extra_worker_args.clone(),
            sandbox: rt.sandbox.clone(),
            cgroups: rt.cgroups.clone(),
        }
    }

    fn check_exports(&self, worker: &Worker) -> Result<(), String> {
        for cap in &self.manifest.capabilities {
            let needed = cap.kind.export();
            if !worker.exports().iter().any(|e| e == needed) {
                let has = if worker.exports().is_empty() {
                    "nothing".to_owned()
                } else {
                    worker.exports().join(", ")
                };
                return Err(format!(
                    "declares a `{}` capability but the component does not export {needed} (it exports {has}); build it for the `{}` world or fix [[capabilities]]",
                    cap.kind, cap.kind
                ));
            }
        }
        Ok(())
    }

    async fn read_tool_spec(&self, worker: &Worker, rt: &Runtime) -> Result<ToolSpec, CallError> {
        match self
            .call_worker(worker, rt, Call::ToolGetSpec, no_chain())
            .await?
        {
            Output::ToolSpec(spec) => Ok(spec),
            _ => Err(self.bad_reply()),
        }
    }

    /// The error for a reply of the wrong type (the worker, which sent it,
    /// was already killed for it).
    pub fn bad_reply(&self) -> CallError {
        CallError::BadReply {
            plugin: self.name.to_string(),
        }
    }

    /// The supervisor's own deadline for one invocation.
    pub fn deadline(&self, rt: &Runtime) -> Duration {
        Duration::from_millis(self.limits.max_execution_time_ms) + rt.deadline_grace
    }

    /// A worker to call, waiting up to `wait` while one is being started.
    pub async fn ready_worker(&self, wait: Duration) -> Result<Arc<Worker>, CallError> {
        // The common case: a live worker, no waiting and no timer.
        if let Some(worker) = self.worker.borrow().as_ref().filter(|w| !w.is_closed()) {
            return Ok(worker.clone());
        }
        let mut rx = self.worker.subscribe();
        let ready = tokio::time::timeout(wait, async {
            loop {
                let current = rx.borrow_and_update().clone();
                if let Some(worker) = current.filter(|w| !w.is_closed()) {
                    return Some(worker);
                }
                if self.is_stopping()
                    || matches!(
                        self.state(),
                        PluginState::Failed(_) | PluginState::Quarantined(_) | PluginState::Stopped
                    )
                {
                    return None;
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await;
        match ready {
            Ok(Some(worker)) => Ok(worker),
            _ if matches!(self.state(), PluginState::Quarantined(_)) => {
                Err(CallError::NotRunning {
                    plugin: self.name.to_string(),
                    state: "quarantined".into(),
                    detail: match self.state() {
                        PluginState::Quarantined(reason) => Some(reason),
                        _ => None,
                    },
                })
            }
            _ => {
                let state = self.state();
                Err(CallError::NotRunning {
                    plugin: self.name.to_string(),
                    state: state.label().into(),
                    detail: match state {
                        PluginState::Failed(reason) => Some(reason),
                        _ => None,
                    },
                })
            }
        }
    }

    pub fn call_error(&self, e: crate::worker::InvokeError, rt: &Runtime) -> CallError {
        use crate::worker::InvokeError;
        let plugin = self.name.to_string();
        match e {
            InvokeError::Guest(g) => CallError::Guest {
                plugin,
                kind: g.kind,
                message: g.message.escaped(),
            },
            InvokeError::Timeout(_) => CallError::Unresponsive {
                plugin,
                after_ms: self.deadline(rt).as_millis() as u64,
            },
            InvokeError::Died(cause) => CallError::Crashed { plugin, cause },
            InvokeError::BadReply => CallError::BadReply { plugin },
            InvokeError::Busy(why) => CallError::Busy { plugin, why },
        }
    }

    /// A module's `describe()`, asked of the worker at most once per
    /// [`DESCRIBE_FRESH`] however many requests want it: callers at the
    /// same time wait for one answer, later ones share it while it is
    /// fresh. `GET /v1/modules` needs no token; this keeps any number of
    /// its callers from queueing calls at the module.
    pub async fn describe(&self, rt: &Runtime) -> Result<Output, String> {
        let mut last = self.described.lock().await;
        if let Some((at, answer)) = &*last
            && at.elapsed() < DESCRIBE_FRESH
        {
            return answer.clone();
        }
        let answer = self
            .call(rt, Call::ModuleDescribe, no_chain())
            .await
            .map_err(|e| e.to_string());
        *last = Some((Instant::now(), answer.clone()));
        answer
    }

    /// Stops the worker for good (shutdown).
    pub async fn stop(&self, grace: Duration) {
        self.stopping.store(true, Ordering::SeqCst);
        self.set_state(PluginState::Stopped);
        self.wake.notify_waiters();
        if let Some(worker) = self.worker.send_replace(None) {
            worker.stop(grace).await;
        }
        self.broker.instance_ended();
        self.broker.plugin_removed();
        self.announce("prx.lifecycle.unloaded", serde_json::json!({}));
    }
}

/// Sizes and modification times of a plugin's manifest and component.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprint(Vec<Option<(u64, SystemTime)>>);

impl Fingerprint {
    /// Reads the fingerprint of the plugin in `dir` now.
    pub fn of(dir: &Path) -> Self {
        let wasm = Manifest::load(&dir.join("plugin.toml"))
            .map(|m| m.wasm_path(dir))
            .unwrap_or_else(|_| dir.join("plugin.wasm"));
        Self::of_files(dir, &wasm)
    }

    /// The same, with the component's path already known.
    pub fn of_files(dir: &Path, wasm: &Path) -> Self {
        let stat = |p: &Path| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.len(), m.modified().ok()?)))
        };
        Self(vec![stat(&dir.join("plugin.toml")), stat(wasm)])
    }
}

/// Why a worker ended, as the operator should read it.
enum Exit {
    /// The worker broke the protocol or was killed by seccomp: a security
    /// event, quarantined at once.
    Security(String),
    /// Anything else unexpected: restarted with backoff.
    Crash(String),
}

fn classify_exit(worker: &Worker, status: &ExitCause) -> Exit {
    if let Some(what) = worker.violation_seen() {
        return Exit::Security(format!("protocol violation: {what}"));
    }
    if status.is_seccomp_kill() {
        return Exit::Security("killed by seccomp (a forbidden system call)".into());
    }
    Exit::Crash(worker.kill_reason().unwrap_or_else(|| status.to_string()))
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

/// How long a module's `describe()` answer is served again.
pub const DESCRIBE_FRESH: Duration = Duration::from_secs(1);

/// One-for-one supervision of a plugin's worker: waits for it to exit and
/// starts a new one, with backoff; quarantines a plugin that keeps
/// crashing or whose worker breaks the protocol.
async fn supervise(plugin: Arc<Plugin>, rt: Runtime, mut worker: Arc<Worker>) {
    let policy = rt.restart;
    let mut crashes: VecDeque<Instant> = VecDeque::new();
    let mut consecutive = 0u32;
    loop {
        let status = worker.exited().await;
        if plugin.stopping.load(Ordering::SeqCst) {
            return;
        }
        plugin.worker.send_replace(None);
        let exit = classify_exit(&worker, &status);
        let cause = match &exit {
            Exit::Security(c) | Exit::Crash(c) => c.clone(),
        };
        *plugin.last_exit.lock().unwrap_or_else(|p| p.into_inner()) = Some(cause.clone());
        plugin.announce(
            "prx.lifecycle.crashed",
            serde_json::json!({
                "pid": worker.pid(),
                "cause": cause,
                "security": matches!(exit, Exit::Security(_)),
            }),
        );
        if let Exit::Security(reason) = exit {
            tracing::error!(plugin = %plugin.name, pid = worker.pid(), event = "prx.lifecycle.crashed",
                security = true, %reason, "worker stopped for a security reason");
            plugin.quarantine(reason);
            return;
        }
        tracing::warn!(plugin = %plugin.name, pid = worker.pid(), event = "prx.lifecycle.crashed",
            %cause, "worker exited unexpectedly");
        if worker.uptime() >= policy.healthy_after {
            consecutive = 0;
        }
        // Restart attempts: a worker that cannot even be started counts as
        // one more crash and goes round again.
        let mut cause = cause;
        worker = loop {
            let now = Instant::now();
            crashes.push_back(now);
            while crashes
                .front()
                .is_some_and(|t| now.duration_since(*t) > policy.crash_window)
            {
                crashes.pop_front();
            }
            if crashes.len() > policy.max_crashes as usize {
                plugin.quarantine(format!(
                    "{} crashes within {} s (last: {cause})",
                    crashes.len(),
                    policy.crash_window.as_secs()
                ));
                return;
            }
            let delay = backoff(&policy, consecutive);
            consecutive += 1;
            if !delay.is_zero() {
                plugin.set_state(PluginState::BackingOff {
                    until: SystemTime::now() + delay,
                });
                tracing::info!(plugin = %plugin.name, delay_ms = delay.as_millis() as u64,
                    "backing off before restarting");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = plugin.wake.notified() => {}
                }
            }
            if plugin.stopping.load(Ordering::SeqCst) {
                return;
            }
            plugin.set_state(PluginState::Restarting);
            plugin.restarts.fetch_add(1, Ordering::Relaxed);
            plugin.stats().count_restart();
            let started = Instant::now();
            match plugin.start_worker(&rt).await {
                Ok(new) => {
                    if let Err(e) = plugin.init_worker(&new, &rt).await {
                        // Counted as one more crash: the instance never served.
                        tracing::warn!(plugin = %plugin.name, "restarted worker failed to initialise: {e}");
                        new.kill();
                        cause = e;
                        continue;
                    }
                    tracing::info!(plugin = %plugin.name, pid = new.pid(), event = "prx.lifecycle.restarted",
                        took_ms = started.elapsed().as_millis() as u64, "worker restarted");
                    plugin.announce(
                        "prx.lifecycle.restarted",
                        serde_json::json!({
                            "pid": new.pid(),
                            "restarts": plugin.restarts.load(Ordering::Relaxed),
                        }),
                    );
                    break new;
                }
                Err(e) if e.is_security_event() => {
                    plugin.quarantine(e.reason());
                    return;
                }
                Err(e @ (StartError::Load { .. } | StartError::Sandbox(_))) => {
                    // The same bytes fail the same way: retrying cannot help.
                    let reason = plugin.fail(format!("restart failed: {e}"));
                    tracing::error!(plugin = %plugin.name, "{reason}");
                    return;
                }
                Err(e) => {
                    tracing::warn!(plugin = %plugin.name, "restart failed: {e}");
                    cause = e.to_string();
                    *plugin.last_exit.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(cause.clone());
                }
            }
        };
        if plugin.stopping.load(Ordering::SeqCst) {
            worker.kill();
            return;
        }
        plugin.worker.send_replace(Some(worker.clone()));
        plugin.set_state(PluginState::Running);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
