//! Starting a plugin: compiling or mapping its component in a worker,
//! checking what the component exports, asking a tool its spec and a module
//! its names, running a module's on-load; quarantine when start-up shows
//! the plugin cannot run.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prx_ipc::{Call, LoadStage, Output, ToolSpec};

use crate::broker::PluginBroker;
use crate::error::CallError;
use crate::manifest::CapabilityType;
use crate::topics::no_chain;
use crate::worker_handle::{SourceKind, StartError, Worker, WorkerSpec};

use super::heal::{Lifter, Quarantine};
use super::supervision::init_failed;
use super::{Plugin, PluginState, Runtime, supervise};

impl Plugin {
    /// What a new instance needs before it serves: the tool spec, the
    /// provider's or storage's name, a module's `on-load`.
    pub(super) async fn init_worker(&self, worker: &Worker, rt: &Runtime) -> Result<(), String> {
        self.ask_names(worker, rt).await?;
        self.module_on_load(worker, rt).await
    }

    /// The tool spec and the provider's or storage's name: calls without
    /// effects outside the instance.
    pub(super) async fn ask_names(&self, worker: &Worker, rt: &Runtime) -> Result<(), String> {
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
            // The spec of the first start stays for this version: routes
            // are made from it once, and a later worker (a restart, an
            // idle wake) may not rename or redescribe the tool under them.
            let mut kept = self.spec.lock().unwrap_or_else(|p| p.into_inner());
            match &*kept {
                None => *kept = Some(spec),
                Some(first) if *first != spec => {
                    tracing::warn!(plugin = %self.name, first = %first.name, now = %spec.name,
                        "get-spec answered differently after a restart; keeping the first answer");
                }
                Some(_) => {}
            }
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

    /// Starts the first worker, checks the exports against the manifest and
    /// reads the tool spec. On success the plugin is running and watched.
    ///
    /// `route` runs once the worker is ready and before the state says
    /// `running`, so that whoever sees it running can call it (the caller
    /// routes its tools and RPCs there); an error from it fails the load.
    pub async fn load(
        self: &Arc<Self>,
        rt: &Runtime,
        route: impl FnOnce(&Arc<Self>) -> Result<(), String>,
    ) -> Result<(), String> {
        let worker = match self.start_worker(rt).await {
            Ok(worker) => worker,
            Err(e) if e.is_security_event() => {
                return Err(self.quarantine(rt, Quarantine::Security(e.reason())));
            }
            Err(e) => return Err(self.fail(format!("{e}"))),
        };
        if let Err(e) = self.check_exports(&worker) {
            worker.kill();
            return Err(self.fail(e));
        }
        match self.get_ready(&worker, rt).await {
            Ok(()) => {}
            Err(security @ Quarantine::Security(_)) => return Err(self.quarantine(rt, security)),
            Err(Quarantine::Crashes(e)) => return Err(self.fail(e)),
        }
        self.worker.send_replace(Some(worker.clone()));
        if let Err(e) = route(self) {
            self.worker.send_replace(None);
            worker.kill();
            return Err(self.fail(e));
        }
        self.set_state(PluginState::Running);
        self.announce(
            "prx.lifecycle.loaded",
            serde_json::json!({ "pid": worker.pid() }),
        );
        tokio::spawn(supervise(self.clone(), rt.clone(), worker));
        self.watch_idle(rt);
        self.start_spares(rt).await;
        Ok(())
    }

    /// Lifts a quarantine (an operator's `prx release`): the crash
    /// history is forgotten and a worker is started at once. Errors when
    /// the plugin is not quarantined.
    pub async fn release(self: &Arc<Self>, rt: &Runtime) -> Result<(), String> {
        self.lift(rt, Lifter::Operator).await
    }

    /// Lifts a quarantine for `by`; a start that fails quarantines the
    /// plugin again (one more in its streak).
    pub(super) async fn lift(self: &Arc<Self>, rt: &Runtime, by: Lifter) -> Result<(), String> {
        {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if !matches!(*state, PluginState::Quarantined { .. }) || !by.may_lift(&self.healing) {
                return Err(format!(
                    "plugin `{}` is {}, not quarantined",
                    self.name,
                    state.label()
                ));
            }
            *state = PluginState::Restarting;
        }
        self.note_released();
        tracing::info!(plugin = %self.name, event = "prx.lifecycle.released", by = by.as_str(),
            "quarantine lifted");
        let started = match self.start_worker(rt).await {
            Ok(worker) => self.get_ready(&worker, rt).await.map(|()| worker),
            Err(e) if e.is_security_event() => Err(Quarantine::Security(e.reason())),
            Err(e) => Err(Quarantine::Crashes(e.to_string())),
        };
        if let Ok(worker) = &started {
            self.worker.send_replace(Some(worker.clone()));
        }
        // Discarded or stopped while it started (both set `stopping` before
        // they take the worker, so one of the two sees the other): nothing
        // to serve, nothing to take out.
        if self.is_stopping() {
            if let Some(worker) = self.worker.send_replace(None) {
                worker.kill();
            }
            return Err(format!(
                "plugin `{}` was replaced or stopped while it started",
                self.name
            ));
        }
        match started {
            Ok(worker) => {
                self.set_state(PluginState::Running);
                self.announce(
                    "prx.lifecycle.released",
                    serde_json::json!({ "pid": worker.pid(), "by": by.as_str() }),
                );
                tokio::spawn(supervise(self.clone(), rt.clone(), worker));
                self.start_spares(rt).await;
                Ok(())
            }
            Err(why) => {
                let why = match why {
                    Quarantine::Crashes(e) => {
                        Quarantine::Crashes(format!("restart after release failed: {e}"))
                    }
                    security => security,
                };
                Err(self.quarantine(rt, why))
            }
        }
    }

    /// [`Plugin::init_worker`], its failure told apart: a worker that broke
    /// the protocol or met seccomp while it got ready is a security event,
    /// anything else a plain failure. A worker that fails is killed.
    pub(super) async fn get_ready(&self, worker: &Worker, rt: &Runtime) -> Result<(), Quarantine> {
        match self.init_worker(worker, rt).await {
            Ok(()) => Ok(()),
            Err(e) => Err(init_failed(worker, e).await),
        }
    }

    /// Marks the plugin failed (not retried until its files change); its
    /// event queue and subscriptions go.
    pub(crate) fn fail(&self, reason: String) -> String {
        let message = format!("plugin `{}` ({}): {reason}", self.name, self.dir.display());
        self.set_state(PluginState::Failed(message.clone()));
        self.kill_spares();
        self.broker.plugin_removed();
        message
    }

    /// [`Plugin::fail`], with the reason in the log (supervision's case).
    pub(super) fn fail_logged(&self, reason: String) {
        let reason = self.fail(reason);
        tracing::error!(plugin = %self.name, "{reason}");
    }

    pub(super) async fn start_worker(&self, rt: &Runtime) -> Result<Arc<Worker>, StartError> {
        // A new instance starts with no subscriptions.
        self.broker.instance_ended();
        self.spawn_worker(rt).await
    }

    /// Starts a worker from the compile cache, or compiles the component
    /// in a compile worker first (and caches the result for this plugin).
    pub(super) async fn spawn_worker(&self, rt: &Runtime) -> Result<Arc<Worker>, StartError> {
        self.spawn_worker_for(rt, &self.broker).await
    }

    /// The same, for a worker that answers through `broker` (a spare's).
    pub(super) async fn spawn_worker_for(
        &self,
        rt: &Runtime,
        broker: &Arc<PluginBroker>,
    ) -> Result<Arc<Worker>, StartError> {
        let key = self
            .cache_key
            .get_or_init(|| rt.cache.key(&self.name, &self.wasm, &self.engine))
            .clone();
        if let Some(worker) = self.start_cached(rt, &key, broker).await? {
            return Ok(worker);
        }
        // Wait for a turn to compile (the load timeout starts after it);
        // the same component may have been compiled meanwhile.
        let turn = rt.compiles.acquire().await;
        if let Some(worker) = self.start_cached(rt, &key, broker).await? {
            return Ok(worker);
        }
        let compiled = Worker::compile(&self.spec(rt, &self.broker, SourceKind::Wasm)).await?;
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
        let started = self.start_in_turn(rt, source, broker).await?;
        self.compiled_here.store(true, Ordering::Relaxed);
        Ok(started.worker)
    }

    /// A worker started from the compile cache's artifact for `key`, if
    /// there is one; an artifact the worker refuses is removed (`None`).
    async fn start_cached(
        &self,
        rt: &Runtime,
        key: &str,
        broker: &Arc<PluginBroker>,
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
        match self.start_in_turn(rt, source, broker).await {
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

    /// Starts a worker on a compiled artifact once a start turn is free;
    /// the load timeout starts with the turn.
    async fn start_in_turn(
        &self,
        rt: &Runtime,
        source: SourceKind,
        broker: &Arc<PluginBroker>,
    ) -> Result<crate::worker_handle::Started, StartError> {
        let _turn = rt.starts.acquire().await;
        Worker::start(self.spec(rt, broker, source)).await
    }

    pub(super) fn spec(
        &self,
        rt: &Runtime,
        broker: &Arc<PluginBroker>,
        source: SourceKind,
    ) -> WorkerSpec {
        WorkerSpec {
            plugin: self.name.clone(),
            binary: rt.worker_binary.clone(),
            limits: self.limits,
            engine: self.engine,
            component: self.wasm.clone(),
            source,
            load_timeout: rt.load_timeout,
            broker: broker.clone(),
            liveness: rt.liveness,
            extra_args: rt.extra_worker_args.clone(),
            sandbox: rt.sandbox.clone(),
            cgroups: rt.cgroups.clone(),
        }
    }

    pub(super) fn check_exports(&self, worker: &Worker) -> Result<(), String> {
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
}
