//! One loaded plugin: its manifest, its current worker, its state, and the
//! task that brings the worker back when it dies.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prx_ipc::{EngineSettings, Limits, ToolSpec};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::broker::PluginBroker;
use crate::cache::CompileCache;
use crate::error::CallError;
use crate::manifest::{CapabilityType, Manifest};
use crate::worker::{SourceKind, StartError, Worker, WorkerSpec};

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
/// The first restart is immediate; another one within this interval waits
/// for the rest of it, so a plugin that crashes at once cannot spin the CPU.
const MIN_RESTART_INTERVAL: Duration = Duration::from_secs(1);

/// Where a plugin is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "reason")]
pub enum PluginState {
    Starting,
    Running,
    Restarting,
    /// Not restarted until its files change.
    Failed(String),
    Stopped,
}

impl PluginState {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Restarting => "restarting",
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
    pub error: Option<String>,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub last_exit: Option<String>,
    pub uptime_ms: Option<u64>,
}

pub struct Plugin {
    pub name: Arc<str>,
    pub dir: PathBuf,
    pub manifest: Manifest,
    wasm: Arc<Vec<u8>>,
    limits: Limits,
    engine: EngineSettings,
    broker: Arc<PluginBroker>,
    state: Mutex<PluginState>,
    worker: watch::Sender<Option<Arc<Worker>>>,
    spec: Mutex<Option<ToolSpec>>,
    restarts: AtomicU32,
    last_exit: Mutex<Option<String>>,
    stopping: AtomicBool,
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
}

impl Plugin {
    pub fn new(dir: PathBuf, manifest: Manifest, wasm: Vec<u8>) -> Arc<Self> {
        let name: Arc<str> = manifest.plugin.name.as_str().into();
        let r = &manifest.resources;
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
        let broker = Arc::new(PluginBroker::new(name.clone(), manifest.config_pairs()));
        Arc::new(Self {
            name,
            dir,
            manifest,
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
        })
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
                PluginState::Failed(reason) => Some(reason.clone()),
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
            uptime_ms: worker.map(|w| w.uptime().as_millis() as u64),
        }
    }

    /// Starts the first worker, checks the exports against the manifest and
    /// reads the tool spec. On success the plugin is running and watched.
    pub async fn load(self: &Arc<Self>, rt: &Runtime) -> Result<(), String> {
        let worker = match self.start_worker(rt).await {
            Ok(worker) => worker,
            Err(e) => return Err(self.fail(format!("{e}"))),
        };
        if let Err(e) = self.check_exports(&worker) {
            worker.kill();
            return Err(self.fail(e));
        }
        if self
            .manifest
            .capabilities_of(CapabilityType::Tool)
            .next()
            .is_some()
        {
            match self.read_tool_spec(&worker, rt).await {
                Ok(spec) => *self.spec.lock().unwrap_or_else(|p| p.into_inner()) = Some(spec),
                Err(e) => {
                    worker.kill();
                    return Err(self.fail(format!("get-spec failed: {e}")));
                }
            }
        }
        self.worker.send_replace(Some(worker.clone()));
        self.set_state(PluginState::Running);
        tokio::spawn(watch_worker(self.clone(), rt.clone(), worker));
        Ok(())
    }

    fn fail(&self, reason: String) -> String {
        let message = format!("plugin `{}` ({}): {reason}", self.name, self.dir.display());
        self.set_state(PluginState::Failed(message.clone()));
        message
    }

    async fn start_worker(&self, rt: &Runtime) -> Result<Arc<Worker>, StartError> {
        let key = rt.cache.key(&self.wasm, &self.engine);
        if let Some(artifact) = rt.cache.get(&key) {
            match Worker::start(self.spec(rt, Arc::new(artifact), SourceKind::Artifact)).await {
                Ok(started) => return Ok(started.worker),
                Err(e) if e.is_stale_artifact() => {
                    tracing::info!(plugin = %self.name, "cached artifact refused ({e}); compiling again");
                    rt.cache.remove(&key);
                }
                Err(e) => return Err(e),
            }
        }
        let source = SourceKind::Wasm {
            want_artifact: true,
        };
        let started = Worker::start(self.spec(rt, self.wasm.clone(), source)).await?;
        tracing::info!(plugin = %self.name, compile_ms = started.compile.as_millis() as u64, "compiled");
        if let Some(artifact) = started.artifact
            && let Err(e) = rt.cache.put(&key, &artifact)
        {
            tracing::warn!(plugin = %self.name, "cannot store the compiled artifact: {e}");
        }
        Ok(started.worker)
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
        let deadline = self.deadline(rt);
        match worker.invoke(prx_ipc::Call::ToolGetSpec, deadline).await {
            Ok(prx_ipc::Output::ToolSpec(spec)) => Ok(spec),
            Ok(_) => Err(CallError::BadReply {
                plugin: self.name.to_string(),
            }),
            Err(e) => Err(self.call_error(e, rt)),
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
                if matches!(self.state(), PluginState::Failed(_) | PluginState::Stopped) {
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
                message: g.message,
            },
            InvokeError::Timeout(_) => CallError::Unresponsive {
                plugin,
                after_ms: self.deadline(rt).as_millis() as u64,
            },
            InvokeError::Died(cause) => CallError::Crashed { plugin, cause },
        }
    }

    /// Stops the worker for good (shutdown).
    pub async fn stop(&self, grace: Duration) {
        self.stopping.store(true, Ordering::SeqCst);
        self.set_state(PluginState::Stopped);
        if let Some(worker) = self.worker.send_replace(None) {
            worker.stop(grace).await;
        }
    }
}

/// Waits for the worker to exit and starts a new one, until the plugin is
/// stopped or a restart fails.
async fn watch_worker(plugin: Arc<Plugin>, rt: Runtime, mut worker: Arc<Worker>) {
    let mut last_restart: Option<Instant> = None;
    loop {
        let cause = worker.exited().await;
        if plugin.stopping.load(Ordering::SeqCst) {
            return;
        }
        plugin.worker.send_replace(None);
        plugin.set_state(PluginState::Restarting);
        plugin.restarts.fetch_add(1, Ordering::Relaxed);
        *plugin.last_exit.lock().unwrap_or_else(|p| p.into_inner()) = Some(cause.clone());
        tracing::warn!(plugin = %plugin.name, pid = worker.pid(), %cause, "worker exited; restarting");
        if let Some(since) = last_restart.map(|t| t.elapsed())
            && since < MIN_RESTART_INTERVAL
        {
            tokio::time::sleep(MIN_RESTART_INTERVAL - since).await;
        }
        let started = Instant::now();
        last_restart = Some(started);
        match plugin.start_worker(&rt).await {
            Ok(new) => {
                tracing::info!(plugin = %plugin.name, pid = new.pid(),
                    took_ms = started.elapsed().as_millis() as u64, "worker restarted");
                if plugin.stopping.load(Ordering::SeqCst) {
                    new.kill();
                    return;
                }
                plugin.worker.send_replace(Some(new.clone()));
                plugin.set_state(PluginState::Running);
                worker = new;
            }
            Err(e) => {
                let reason = plugin.fail(format!("restart failed: {e}"));
                tracing::error!(plugin = %plugin.name, "{reason}");
                return;
            }
        }
    }
}
