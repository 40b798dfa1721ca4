//! One loaded plugin: its manifest, its current worker, its state, and the
//! task that brings the worker back when it dies.

mod calls;
mod handover;
mod heal;
mod idle;
mod pool;
mod start;
mod status;
mod supervision;

pub use calls::DESCRIBE_FRESH;
pub use status::{CodeOrigin, Fingerprint, LayerState, PluginState, PluginStatus, StateKind};
pub use supervision::backoff;
use supervision::supervise;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use prx_ipc::{EngineSettings, Limits, Output, ToolSpec};
use tokio::sync::watch;

use crate::broker::PluginBroker;
use crate::broker::Services;
use crate::cache::CompileCache;
use crate::config::{PermissionPolicy, RestartPolicy};
use crate::manifest::Permission;
use crate::manifest::{CapabilityType, Manifest};
use crate::services::events::EventBus;
use crate::topics::Chain;
use crate::worker_handle::Liveness;
use crate::worker_handle::Worker;
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
    /// Calls seen, and the worker stopped when idle (`idle_stop_s`).
    idle: idle::IdleStop,
    /// Workers beyond the first (`[resources] workers`), each with its
    /// own broker.
    spares: Vec<pool::Spare>,
    /// Quarantines in a row, and the release one of them waits for.
    healing: heal::Healing,
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
    pub sandbox: crate::worker_handle::verify::SandboxPolicy,
    pub cgroups: Arc<crate::worker_handle::cgroup::Cgroups>,
    /// Compiles under way at once ([`Runtime::parallel_compiles`]).
    /// Cranelift already spreads one component over every core, so more
    /// at once only make each take longer, until a large one (a Python
    /// plugin) runs past the load timeout. Starts from the compile cache
    /// do not wait for it.
    pub compiles: Arc<tokio::sync::Semaphore>,
    /// Worker starts under way at once ([`Runtime::parallel_starts`]):
    /// spawn, handshake, mapping and instantiating. A start waits for its
    /// turn here, and its load timeout counts from the turn, so a thousand
    /// plugins started together never fail one for being slow only because
    /// the others started with it.
    pub starts: Arc<tokio::sync::Semaphore>,
}

impl Runtime {
    /// One compile per four cores, at least one. On 2 cores, two Python
    /// components compiled side by side took 43-45 s each, against the
    /// 60 s load timeout; one after the other, about 20 s each.
    pub fn parallel_compiles() -> usize {
        std::thread::available_parallelism().map_or(1, |n| (n.get() / 4).max(1))
    }

    /// Two starts per core: a start is a few milliseconds of work split
    /// between the new worker and the supervisor, with waits between (the
    /// worker's exec, its sandbox, the supervisor's checks), so two per
    /// core keep the cores busy without a crowd that slows every one.
    pub fn parallel_starts() -> usize {
        std::thread::available_parallelism().map_or(2, |n| n.get() * 2)
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
        let manifest_idle_stop_s = r.idle_stop_s;
        let p = &manifest.permissions;
        if let Some(refused) = p.required.iter().find(|perm| !policy.allows(&name, **perm)) {
            return Err(format!(
                "plugin `{name}` requires permission `{refused}`, which the operator's policy does not allow for it; allow it in the policy or move it to [permissions].optional"
            ));
        }
        let declared: BTreeSet<Permission> =
            p.required.iter().chain(&p.optional).copied().collect();
        let granted: BTreeSet<Permission> = declared
            .iter()
            .copied()
            .filter(|perm| policy.allows(&name, *perm))
            .collect();
        for perm in declared.iter().filter(|perm| !policy.allows(&name, **perm)) {
            tracing::warn!(plugin = %name, permission = %perm, "optional permission not granted by policy; its calls will fail");
        }
        // One broker per worker: each worker's invocation (its causal
        // chain, its http request count) is its own.
        let brokers = (0..r.workers)
            .map(|_| broker_for(&name, &manifest, policy, services, &declared, &granted))
            .collect::<Result<Vec<_>, _>>()?;
        let mut brokers = brokers.into_iter();
        let broker = brokers.next().expect("at least one worker");
        let spares = brokers.map(pool::Spare::new).collect();
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
            idle: idle::IdleStop::new(manifest_idle_stop_s),
            spares,
            healing: Default::default(),
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

    /// This plugin's counters, shared by all its versions.
    pub fn stats(&self) -> &Arc<crate::metrics::PluginStats> {
        self.broker.stats()
    }

    /// Failed or quarantined: waiting for its files or an operator.
    pub fn is_parked(&self) -> bool {
        matches!(
            self.state(),
            PluginState::Failed(_) | PluginState::Quarantined { .. }
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
}

/// The broker one worker of a plugin answers through: its services, its
/// http client and allowlist (checked against the operator's ceiling),
/// its grants.
fn broker_for(
    name: &Arc<str>,
    manifest: &Manifest,
    policy: &PermissionPolicy,
    services: &Services,
    declared: &BTreeSet<Permission>,
    granted: &BTreeSet<Permission>,
) -> Result<Arc<PluginBroker>, String> {
    let r = &manifest.resources;
    let p = &manifest.permissions;
    let mut broker = PluginBroker::new(name.clone(), manifest.config_pairs())
        .with_services(services, r.kv_quota_bytes());
    if declared.contains(&Permission::HttpOutbound) {
        let allowlist = crate::services::http::Allowlist::parse(&p.http_allowlist)
            .map_err(|e| format!("plugin `{name}`: {e}"))?;
        if let Some(ceiling) = policy.http_ceiling(name) {
            let ceiling = crate::services::http::Allowlist::parse(ceiling)
                .map_err(|e| format!("the operator's http_allowlist for `{name}`: {e}"))?;
            let beyond = allowlist.beyond(&ceiling);
            if !beyond.is_empty() {
                return Err(format!(
                    "plugin `{name}` declares http_allowlist entries beyond what the operator's policy allows ({}); narrow the plugin's [permissions].http_allowlist or widen [permissions.http_allowlist] {name} in the supervisor's config",
                    beyond.join(", ")
                ));
            }
        }
        let http = crate::services::http::PluginHttp::new(
            name.clone(),
            allowlist,
            &services.http,
            r.max_http_requests,
            Duration::from_millis(r.max_execution_time_ms),
        )
        .map_err(|e| format!("plugin `{name}`: {e}"))?;
        broker = broker.with_http(http);
    }
    Ok(Arc::new(
        broker.with_permissions(declared.clone(), granted.clone()),
    ))
}
