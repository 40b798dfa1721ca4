//! Answers to the host calls of one plugin.
//!
//! The supervisor alone decides what a plugin may do: this module checks
//! every call against the plugin's permissions, whatever the worker
//! claims, and the plugin is known by the link the call came on, never by
//! anything in the frame. Three sets matter:
//!
//! - *declared*: `[permissions] required` and `optional` in the manifest;
//! - *granted*: declared and allowed by the operator's policy (`log` and
//!   `config` always);
//! - *imported*: interfaces the component imports, as its worker reported.
//!
//! A call to an interface the component does not import cannot come from
//! the component: the worker is compromised (the caller of
//! [`PluginBroker::answer`] checks that first). A call needing a permission
//! that was not declared traps the guest, as in PRX 0.1.0; one that was
//! declared but not granted gets `permission denied: <name>` (or traps,
//! for the functions that have no error channel).

pub mod backend;
pub mod events;
pub mod http;
pub mod kv;
pub mod memory;
pub mod rate;
pub mod staged;
pub mod wal;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use prx_ipc::{HostCall, HostReply, HostValue, LogLevel, MemoryEntry};

use crate::manifest::Permission;
use crate::metrics::PluginStats;
use crate::topics::{self, Chain};
use rate::{Admit, LogLimiter, LogRate, PUBLISH_RATE};

pub use backend::MemoryBackend;
use events::EventBus;
use kv::KvStore;
use memory::MemoryStore;
use prx_ipc::WorkerText;

/// What the supervisor serves every plugin from; cheap to clone.
#[derive(Debug, Clone)]
pub struct Services {
    pub kv: KvStore,
    pub bus: EventBus,
    pub memory: MemoryStore,
    pub log_rate: LogRate,
    pub http: http::HttpPolicy,
    /// A storage plugin serving memory instead of the built-in store.
    pub storage: Option<Arc<dyn MemoryBackend>>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Longest RPC name; dot-separated words of `[a-z0-9_-]`.
pub const MAX_RPC_NAME: usize = 128;
/// Most RPCs one module may register.
pub const MAX_RPCS_PER_PLUGIN: usize = 64;
/// Longest cache namespace and key.
pub const MAX_CACHE_NAMESPACE: usize = 64;
pub const MAX_CACHE_KEY: usize = kv::MAX_KEY_LEN;
/// Separates namespace and key in the kv store; refused inside both.
const CACHE_SEPARATOR: char = '\u{1f}';

/// Per-plugin broker state.
#[derive(Debug)]
pub struct PluginBroker {
    plugin: Arc<str>,
    config: Vec<(String, String)>,
    declared: BTreeSet<Permission>,
    granted: BTreeSet<Permission>,
    kv: Option<KvStore>,
    kv_quota: u64,
    bus: Option<EventBus>,
    memory: Option<MemoryStore>,
    http: Option<http::PluginHttp>,
    log: LogLimiter,
    /// Events this plugin may publish ([`PUBLISH_RATE`]).
    publish_rate: LogLimiter,
    storage: Option<Arc<dyn MemoryBackend>>,
    /// The causal chain of the invocation the worker runs now.
    chain: Mutex<Chain>,
    /// RPC names registered by the `on-load` running now; `None` outside it.
    registering: Mutex<Option<Vec<String>>>,
    /// Counters and recent log lines, kept by name across versions.
    stats: Arc<PluginStats>,
    /// While this version is readied: its kv writes, kept apart.
    staged: staged::Staged,
}

impl PluginBroker {
    /// A broker that serves `config` and nothing else (benchmarks, tests).
    pub fn new(plugin: Arc<str>, config: Vec<(String, String)>) -> Self {
        Self {
            plugin,
            config,
            declared: BTreeSet::new(),
            granted: [Permission::Log, Permission::Config].into(),
            kv: None,
            kv_quota: 0,
            bus: None,
            memory: None,
            http: None,
            log: LogLimiter::new(LogRate::default()),
            publish_rate: LogLimiter::new(PUBLISH_RATE),
            storage: None,
            chain: Mutex::new(topics::no_chain()),
            registering: Mutex::new(None),
            stats: Arc::default(),
            staged: staged::Staged::default(),
        }
    }

    /// Serves kv (with a quota in bytes), events, memory and logs from
    /// the supervisor's services.
    pub fn with_services(mut self, services: &Services, kv_quota: u64) -> Self {
        self.kv = Some(services.kv.clone());
        self.kv_quota = kv_quota;
        self.bus = Some(services.bus.clone());
        self.memory = Some(services.memory.clone());
        self.log = LogLimiter::new(services.log_rate);
        self.storage = services.storage.clone();
        self.stats = services.metrics.plugin(&self.plugin);
        self
    }

    /// The plugin's counters (shared by every version of it).
    pub fn stats(&self) -> &Arc<PluginStats> {
        &self.stats
    }

    /// Grants: what was declared and allowed (log and config always).
    pub fn with_permissions(
        mut self,
        declared: BTreeSet<Permission>,
        granted: BTreeSet<Permission>,
    ) -> Self {
        self.declared = declared;
        self.granted.extend(granted);
        self
    }

    /// Serves http-outbound for this plugin.
    pub fn with_http(mut self, http: http::PluginHttp) -> Self {
        self.http = Some(http);
        self
    }

    /// An invocation begins (counts and time per invocation restart);
    /// its host calls carry `chain`.
    pub fn begin_invocation(&self, chain: Chain) {
        if let Some(http) = &self.http {
            http.begin_invocation();
        }
        *self.chain.lock().unwrap_or_else(|p| p.into_inner()) = chain;
    }

    /// The invocation answered: host calls until the next one belong to
    /// none (and carry only the plugin itself, see [`Self::events`]).
    pub fn end_invocation(&self) {
        *self.chain.lock().unwrap_or_else(|p| p.into_inner()) = topics::no_chain();
    }

    fn current_chain(&self) -> Chain {
        self.chain.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `on-load` is about to run: `rpc.register` is accepted until
    /// [`Self::end_registration`].
    pub fn begin_registration(&self) {
        *self.registering.lock().unwrap_or_else(|p| p.into_inner()) = Some(Vec::new());
    }

    /// `on-load` returned: the RPC names it registered.
    pub fn end_registration(&self) -> Vec<String> {
        self.registering
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_default()
    }

    /// Serves kv from `store` with a quota in bytes (alone: tests).
    pub fn with_kv(mut self, store: KvStore, quota: u64) -> Self {
        self.kv = Some(store);
        self.kv_quota = quota;
        self
    }

    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// The plugin's instance is gone (crash, restart): the subscriptions
    /// it made end with it.
    pub fn instance_ended(&self) {
        if let Some(bus) = &self.bus {
            bus.end_instance(&self.plugin);
        }
        self.registering
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }

    /// The plugin is gone for good: every subscription ends, manifest ones
    /// included, and its event queue closes.
    pub fn plugin_removed(&self) {
        if let Some(bus) = &self.bus {
            bus.remove_plugin(&self.plugin);
        }
    }

    pub fn granted(&self) -> &BTreeSet<Permission> {
        &self.granted
    }

    /// Answers one host call of this plugin.
    pub async fn answer(&self, call: HostCall) -> HostReply {
        if let HostCall::RpcRegister { name } = &call {
            return self.register_rpc(name);
        }
        let Some(permission) = permission_of(&call) else {
            return HostReply::Trap(format!("{}: no permission applies", call.function()));
        };
        if !self.granted.contains(&permission) {
            let why = if self.declared.contains(&permission) {
                "not granted by the operator's policy"
            } else {
                "not declared in [permissions]"
            };
            tracing::debug!(plugin = %self.plugin, function = call.function(), %permission, why, "host call refused");
            let message = format!("permission denied: {permission}");
            return if self.declared.contains(&permission) && has_error_channel(&call) {
                HostReply::Err(message)
            } else {
                HostReply::Trap(format!("{message} ({why})"))
            };
        }
        match call {
            HostCall::ConfigGet { key } => HostReply::Ok(HostValue::OptString(
                self.config
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| v.clone()),
            )),
            HostCall::ConfigGetAll => HostReply::Ok(HostValue::Pairs(self.config.clone())),
            HostCall::KvGet { .. }
            | HostCall::KvSet { .. }
            | HostCall::KvDelete { .. }
            | HostCall::KvListKeys { .. }
            | HostCall::KvIncrement { .. } => self.kv(call).await,
            HostCall::EventsPublish { .. }
            | HostCall::EventsSubscribe { .. }
            | HostCall::EventsUnsubscribe { .. } => self.events(call),
            HostCall::MemoryStore { .. } | HostCall::MemoryRecall { .. } => self.memory(call).await,
            HostCall::HttpRequest { .. } => self.http(call).await,
            HostCall::CacheGet { .. } | HostCall::CachePut { .. } | HostCall::CacheClear { .. } => {
                self.cache(call).await
            }
            HostCall::RpcRegister { .. } => HostReply::Trap("rpc.register: misrouted".into()),
        }
    }

    fn register_rpc(&self, name: &str) -> HostReply {
        let mut registering = self.registering.lock().unwrap_or_else(|p| p.into_inner());
        let Some(names) = registering.as_mut() else {
            return HostReply::Err(
                "rpc.register: RPC handlers are registered in on-load only".into(),
            );
        };
        if let Err(why) = check_rpc_name(name) {
            return HostReply::Err(format!("rpc.register: {why}"));
        }
        if names.iter().any(|n| n == name) {
            return HostReply::Err(format!(
                "rpc.register: `{name}` is already registered by this module"
            ));
        }
        if names.len() >= MAX_RPCS_PER_PLUGIN {
            return HostReply::Err(format!(
                "rpc.register: a module may register at most {MAX_RPCS_PER_PLUGIN} RPCs"
            ));
        }
        names.push(name.to_owned());
        HostReply::Ok(HostValue::Unit)
    }

    /// The kv namespace holding this plugin's cache.
    fn cache_namespace(&self) -> String {
        format!("{}{CACHE_SEPARATOR}cache", self.plugin)
    }

    async fn cache(&self, call: HostCall) -> HostReply {
        let Some(store) = &self.kv else {
            return self.unavailable(&call);
        };
        let function = call.function();
        if self.staged.is_on() {
            let reply = self.cache_staged(store, call);
            return self.reply(function, reply);
        }
        let ns = self.cache_namespace();
        let reply = match call {
            HostCall::CacheGet { namespace, key } => match cache_prefix(&namespace, &key) {
                Ok(prefix) => store
                    .get_under(&ns, &prefix, &key)
                    .map(HostValue::OptBytes)
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e),
            },
            HostCall::CachePut {
                namespace,
                key,
                value,
            } => match cache_prefix(&namespace, &key) {
                Ok(prefix) => store
                    .set_under(&ns, &prefix, &key, value, self.kv_quota)
                    .await
                    .map(|()| HostValue::Unit)
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e),
            },
            HostCall::CacheClear { namespace } => match cache_prefix(&namespace, "") {
                Ok(prefix) => match store.list_keys(&ns, &prefix) {
                    // Deleted together, so the store makes them durable in
                    // one batch rather than one sync each.
                    Ok(keys) => {
                        let mut deletes = tokio::task::JoinSet::new();
                        for key in keys {
                            let (store, ns, prefix) = (store.clone(), ns.clone(), prefix.clone());
                            deletes.spawn(async move {
                                match key.strip_prefix(prefix.as_str()) {
                                    Some(own) => store.delete_under(&ns, &prefix, own).await,
                                    None => Ok(false),
                                }
                            });
                        }
                        let mut removed = 0u64;
                        let mut failed = None;
                        while let Some(done) = deletes.join_next().await {
                            match done {
                                Ok(Ok(found)) => removed += u64::from(found),
                                Ok(Err(e)) => failed = Some(e.to_string()),
                                Err(e) => failed = Some(e.to_string()),
                            }
                        }
                        match failed {
                            None => Ok(HostValue::U64(removed)),
                            Some(e) => Err(e),
                        }
                    }
                    Err(e) => Err(e.to_string()),
                },
                Err(e) => Err(e),
            },
            _ => return HostReply::Trap("not a cache call".into()),
        };
        self.reply(function, reply)
    }

    fn events(&self, call: HostCall) -> HostReply {
        let Some(bus) = &self.bus else {
            return self.unavailable(&call);
        };
        let function = call.function();
        let reply = match call {
            HostCall::EventsPublish { topic, payload } => {
                let chain = topics::published_by(&self.current_chain(), &self.plugin);
                match self.publish_rate.admit() {
                    Admit::Yes | Admit::AfterDrops(_) => bus
                        .publish_from(&self.plugin, &topic, &payload, chain)
                        .map(|_| {
                            self.stats.count_published();
                            HostValue::Unit
                        }),
                    Admit::FirstDrop | Admit::No => {
                        Err(topics::EventError::TooFast(PUBLISH_RATE.per_second))
                    }
                }
            }
            HostCall::EventsSubscribe { pattern } => bus
                .subscribe_plugin(&self.plugin, &pattern)
                .map(HostValue::U64),
            HostCall::EventsUnsubscribe { id } => bus
                .unsubscribe_plugin(&self.plugin, id)
                .map(|()| HostValue::Unit),
            _ => return HostReply::Trap("not an events call".into()),
        };
        self.reply(function, reply)
    }

    async fn http(&self, call: HostCall) -> HostReply {
        let Some(http) = &self.http else {
            return self.unavailable(&call);
        };
        let function = call.function();
        let HostCall::HttpRequest {
            method,
            url,
            headers,
            body,
        } = call
        else {
            return HostReply::Trap("not an http call".into());
        };
        let reply = http.request(&method, &url, headers, body).await;
        self.reply(function, reply.map(HostValue::Http))
    }

    async fn memory(&self, call: HostCall) -> HostReply {
        if let Some(route) = &self.storage {
            return self.memory_from_plugin(route.as_ref(), call).await;
        }
        let Some(store) = &self.memory else {
            return self.unavailable(&call);
        };
        let function = call.function();
        let reply = match call {
            HostCall::MemoryStore { text, category } => store
                .store(&self.plugin, &text, &category)
                .await
                .map(HostValue::String),
            // Off the async threads, one at a time per plugin: a recall
            // may read thousands of postings.
            HostCall::MemoryRecall { query, limit } => store
                .recall_for(&self.plugin, &query, limit)
                .await
                .map(|found| {
                    HostValue::Memories(
                        found
                            .into_iter()
                            .map(|r| MemoryEntry {
                                id: r.id,
                                text: r.text,
                                category: r.category,
                                importance: r.importance,
                            })
                            .collect(),
                    )
                }),
            _ => return HostReply::Trap("not a memory call".into()),
        };
        self.reply(function, reply)
    }

    /// Memory served by the operator's storage plugin.
    async fn memory_from_plugin(&self, route: &dyn MemoryBackend, call: HostCall) -> HostReply {
        let function = call.function();
        if route.is_served_by(&self.plugin) {
            return HostReply::Err(format!(
                "{function}: this plugin is the memory backend; it cannot call memory (it would call itself)"
            ));
        }
        let chain = self.current_chain();
        let reply = match call {
            HostCall::MemoryStore { text, category } => route
                .store(&text, &category, chain)
                .await
                .map(HostValue::String),
            HostCall::MemoryRecall { query, limit } => {
                route.recall(&query, limit, chain).await.map(|found| {
                    HostValue::Memories(
                        found
                            .into_iter()
                            .map(|m| MemoryEntry {
                                id: m.key,
                                text: m.content,
                                category: m.category,
                                importance: m.score.unwrap_or(0.0),
                            })
                            .collect(),
                    )
                })
            }
            _ => return HostReply::Trap("not a memory call".into()),
        };
        self.reply(function, reply)
    }

    /// A host function's answer; errors reach the guest prefixed with the
    /// function's name.
    fn reply<E: std::fmt::Display>(
        &self,
        function: &str,
        reply: Result<HostValue, E>,
    ) -> HostReply {
        match reply {
            Ok(value) => HostReply::Ok(value),
            Err(e) => {
                tracing::debug!(plugin = %self.plugin, function, "host call failed: {e}");
                HostReply::Err(format!("{function}: {e}"))
            }
        }
    }

    async fn kv(&self, call: HostCall) -> HostReply {
        let Some(store) = &self.kv else {
            return self.unavailable(&call);
        };
        let ns = &*self.plugin;
        let function = call.function();
        if self.staged.is_on() {
            let reply = self.kv_staged(store, call);
            return self.reply(function, reply);
        }
        let reply = match call {
            HostCall::KvGet { key } => store.get(ns, &key).map(HostValue::OptBytes),
            HostCall::KvListKeys { prefix } => store.list_keys(ns, &prefix).map(HostValue::Strings),
            HostCall::KvSet { key, value } => store
                .set(ns, &key, value, self.kv_quota)
                .await
                .map(|()| HostValue::Unit),
            HostCall::KvDelete { key } => store.delete(ns, &key).await.map(HostValue::Bool),
            HostCall::KvIncrement { key, delta } => store
                .increment(ns, &key, delta, self.kv_quota)
                .await
                .map(HostValue::S64),
            _ => return HostReply::Trap("not a kv call".into()),
        };
        self.reply(function, reply)
    }

    /// kv for a version being readied: reads see its own writes over the
    /// live data; writes stay staged until it takes over.
    fn kv_staged(&self, store: &KvStore, call: HostCall) -> Result<HostValue, kv::KvError> {
        let (ns, staged, quota) = (&*self.plugin, &self.staged, self.kv_quota);
        let slot = |key: &str| staged::Slot::new(ns, "", key);
        match call {
            HostCall::KvGet { key } => staged.get(store, &slot(&key)).map(HostValue::OptBytes),
            HostCall::KvListKeys { prefix } => {
                staged.list(store, ns, "", &prefix).map(HostValue::Strings)
            }
            HostCall::KvSet { key, value } => staged
                .put(store, slot(&key), Some(value), quota)
                .map(|()| HostValue::Unit),
            HostCall::KvDelete { key } => {
                let existed = staged.get(store, &slot(&key))?.is_some();
                staged.put(store, slot(&key), None, quota)?;
                Ok(HostValue::Bool(existed))
            }
            HostCall::KvIncrement { key, delta } => {
                let current = match staged.get(store, &slot(&key))? {
                    None => 0,
                    Some(bytes) => std::str::from_utf8(&bytes)
                        .ok()
                        .and_then(|t| t.trim().parse::<i64>().ok())
                        .ok_or_else(|| kv::KvError::NotANumber { key: key.clone() })?,
                };
                let next = current
                    .checked_add(delta)
                    .ok_or_else(|| kv::KvError::Overflow { key: key.clone() })?;
                staged.put(
                    store,
                    slot(&key),
                    Some(next.to_string().into_bytes()),
                    quota,
                )?;
                Ok(HostValue::S64(next))
            }
            _ => Err(kv::KvError::Storage("not a kv call".into())),
        }
    }

    /// The cache for a version being readied, staged like its kv.
    fn cache_staged(&self, store: &KvStore, call: HostCall) -> Result<HostValue, String> {
        let (ns, staged, quota) = (self.cache_namespace(), &self.staged, self.kv_quota);
        match call {
            HostCall::CacheGet { namespace, key } => {
                let prefix = cache_prefix(&namespace, &key)?;
                staged
                    .get(store, &staged::Slot::new(&ns, &prefix, &key))
                    .map(HostValue::OptBytes)
                    .map_err(|e| e.to_string())
            }
            HostCall::CachePut {
                namespace,
                key,
                value,
            } => {
                let prefix = cache_prefix(&namespace, &key)?;
                staged
                    .put(
                        store,
                        staged::Slot::new(&ns, &prefix, &key),
                        Some(value),
                        quota,
                    )
                    .map(|()| HostValue::Unit)
                    .map_err(|e| e.to_string())
            }
            HostCall::CacheClear { namespace } => {
                let prefix = cache_prefix(&namespace, "")?;
                let keys = staged
                    .list(store, &ns, &prefix, "")
                    .map_err(|e| e.to_string())?;
                for key in &keys {
                    staged
                        .put(store, staged::Slot::new(&ns, &prefix, key), None, quota)
                        .map_err(|e| e.to_string())?;
                }
                Ok(HostValue::U64(keys.len() as u64))
            }
            _ => Err("not a cache call".into()),
        }
    }

    /// This version is being readied beside a live one: its kv and cache
    /// writes are staged from now on.
    pub fn begin_staging(&self) {
        self.staged.begin();
    }

    /// It takes over: what it staged is written to the store, durably,
    /// and its writes go through from now on. A version refused instead
    /// is simply dropped with what it staged.
    pub async fn commit_staged(&self) -> Result<(), String> {
        let writes = self.staged.take();
        match &self.kv {
            Some(store) if !writes.is_empty() => staged::apply(store, writes, self.kv_quota)
                .await
                .map_err(|e| format!("writing what it stored while starting: {e}")),
            _ => Ok(()),
        }
    }

    /// A host interface this supervisor does not serve yet.
    fn unavailable(&self, call: &HostCall) -> HostReply {
        let permission = permission_of(call)
            .map(Permission::as_str)
            .unwrap_or("none");
        let message = format!(
            "{} is not available in this version of prx-sandbox (permission `{permission}`)",
            call.function()
        );
        if has_error_channel(call) {
            HostReply::Err(message)
        } else {
            HostReply::Trap(message)
        }
    }

    /// Log lines of this plugin dropped by the rate limit so far.
    pub fn log_dropped(&self) -> u64 {
        self.log.dropped()
    }

    /// Writes a plugin's log line into the supervisor's log, unless the
    /// plugin is over its rate (then the line is counted and dropped).
    pub fn log(&self, level: LogLevel, message: &WorkerText) {
        let plugin = &*self.plugin;
        match self.log.admit() {
            Admit::Yes => {}
            Admit::No => return,
            Admit::FirstDrop => {
                tracing::warn!(
                    plugin,
                    "plugin logs faster than {} lines/s; dropping lines until it slows down",
                    self.log.rate().per_second
                );
                return;
            }
            Admit::AfterDrops(n) => {
                tracing::warn!(
                    plugin,
                    dropped = n,
                    "plugin log lines dropped by the rate limit"
                );
            }
        }
        // Escaped, and cut when very long: a line is for reading.
        let message = message.escaped();
        self.stats.plugin_line(level.as_str(), &message);
        match level {
            LogLevel::Trace => tracing::trace!(target: "plugin", plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(target: "plugin", plugin, "{message}"),
            LogLevel::Info => tracing::info!(target: "plugin", plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(target: "plugin", plugin, "{message}"),
            LogLevel::Error => tracing::error!(target: "plugin", plugin, "{message}"),
        }
    }
}

/// The permission a host call needs; `None` for `rpc.register`, which
/// any module may call during its `on-load`.
pub fn permission_of(call: &HostCall) -> Option<Permission> {
    Some(match call {
        HostCall::ConfigGet { .. } | HostCall::ConfigGetAll => Permission::Config,
        HostCall::KvGet { .. }
        | HostCall::KvSet { .. }
        | HostCall::KvDelete { .. }
        | HostCall::KvListKeys { .. }
        | HostCall::KvIncrement { .. }
        | HostCall::CacheGet { .. }
        | HostCall::CachePut { .. }
        | HostCall::CacheClear { .. } => Permission::Kv,
        HostCall::EventsPublish { .. }
        | HostCall::EventsSubscribe { .. }
        | HostCall::EventsUnsubscribe { .. } => Permission::Events,
        HostCall::HttpRequest { .. } => Permission::HttpOutbound,
        HostCall::MemoryStore { .. } | HostCall::MemoryRecall { .. } => Permission::Memory,
        HostCall::RpcRegister { .. } => return None,
    })
}

/// RPC names are dot-separated words of lowercase letters, digits, `_`
/// and `-`.
pub fn check_rpc_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_RPC_NAME
        && name.split('.').all(|word| {
            !word.is_empty()
                && word
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not an RPC name (dot-separated words of lowercase letters, digits, `_` and `-`, at most {MAX_RPC_NAME} bytes), e.g. \"stats.mean\""
        ))
    }
}

/// What the host puts before a cache key in the kv store, once the
/// namespace and the plugin's `key` are checked (`""` for the whole
/// namespace). The prefix does not count against the key's limit.
fn cache_prefix(namespace: &str, key: &str) -> Result<String, String> {
    if namespace.is_empty()
        || namespace.len() > MAX_CACHE_NAMESPACE
        || !namespace
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(format!(
            "namespace {namespace:?} must be 1 to {MAX_CACHE_NAMESPACE} letters, digits, `_`, `-` or `.`"
        ));
    }
    if key.len() > MAX_CACHE_KEY || key.contains(CACHE_SEPARATOR) {
        return Err(format!(
            "key of {} bytes: keys are at most {MAX_CACHE_KEY} bytes, without U+001F",
            key.len()
        ));
    }
    Ok(format!("{namespace}{CACHE_SEPARATOR}"))
}

/// Functions whose WIT result has an `err` case; the others can only
/// trap to refuse.
pub(crate) fn has_error_channel(call: &HostCall) -> bool {
    !matches!(
        call,
        HostCall::KvGet { .. }
            | HostCall::KvListKeys { .. }
            | HostCall::ConfigGet { .. }
            | HostCall::ConfigGetAll
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn config_is_served_from_the_manifest() {
        let broker = PluginBroker::new("p".into(), vec![("k".into(), "v".into())]);
        assert_eq!(
            broker.answer(HostCall::ConfigGet { key: "k".into() }).await,
            HostReply::Ok(HostValue::OptString(Some("v".into())))
        );
        assert_eq!(
            broker.answer(HostCall::ConfigGet { key: "x".into() }).await,
            HostReply::Ok(HostValue::OptString(None))
        );
        assert_eq!(
            broker.answer(HostCall::ConfigGetAll).await,
            HostReply::Ok(HostValue::Pairs(vec![("k".into(), "v".into())]))
        );
    }

    fn kv_broker(declared: &[Permission], granted: &[Permission]) -> PluginBroker {
        PluginBroker::new("p".into(), vec![])
            .with_permissions(
                declared.iter().copied().collect(),
                granted.iter().copied().collect(),
            )
            .with_kv(KvStore::in_memory().unwrap(), 1 << 20)
    }

    #[tokio::test]
    async fn declared_but_not_granted_is_permission_denied() {
        let broker = kv_broker(&[Permission::Kv], &[]);
        let set = HostCall::KvSet {
            key: "k".into(),
            value: vec![1],
        };
        assert_eq!(
            broker.answer(set).await,
            HostReply::Err("permission denied: kv".into())
        );
        // No error channel: the guest traps with the same words.
        match broker.answer(HostCall::KvGet { key: "k".into() }).await {
            HostReply::Trap(m) => assert!(m.starts_with("permission denied: kv"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn undeclared_permissions_trap_as_in_prx() {
        let broker = kv_broker(&[], &[]);
        let set = HostCall::KvSet {
            key: "k".into(),
            value: vec![1],
        };
        match broker.answer(set).await {
            HostReply::Trap(m) => {
                assert_eq!(m, "permission denied: kv (not declared in [permissions])")
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn granted_kv_is_served_and_quota_errors_reach_the_guest() {
        let broker = kv_broker(&[Permission::Kv], &[Permission::Kv]);
        let set = HostCall::KvSet {
            key: "k".into(),
            value: b"v".to_vec(),
        };
        assert_eq!(broker.answer(set).await, HostReply::Ok(HostValue::Unit));
        assert_eq!(
            broker.answer(HostCall::KvGet { key: "k".into() }).await,
            HostReply::Ok(HostValue::OptBytes(Some(b"v".to_vec())))
        );
        let big = HostCall::KvSet {
            key: "big".into(),
            value: vec![0; 2 << 20],
        };
        match broker.answer(big).await {
            HostReply::Err(m) => assert!(m.starts_with("kv.set: over quota"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn unserved_interfaces_answer_clearly() {
        let broker = PluginBroker::new("p".into(), vec![]).with_permissions(
            [Permission::HttpOutbound].into(),
            [Permission::HttpOutbound].into(),
        );
        let request = HostCall::HttpRequest {
            method: "GET".into(),
            url: "https://example.com/".into(),
            headers: vec![],
            body: None,
        };
        match broker.answer(request).await {
            HostReply::Err(m) => {
                assert!(
                    m.contains("http-outbound.request") && m.contains("`http-outbound`"),
                    "{m}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn log_lines_past_the_rate_are_dropped_and_counted() {
        let rate = LogRate {
            per_second: 1,
            burst: 10,
        };
        let broker = PluginBroker::new("p".into(), vec![]);
        let broker = PluginBroker {
            log: LogLimiter::new(rate),
            ..broker
        };
        for i in 0..1000 {
            broker.log(LogLevel::Info, &WorkerText::new(format!("line {i}")));
        }
        // The burst passes; at one line a second, at most one more can
        // have been earned while the loop ran.
        let dropped = broker.log_dropped();
        assert!((989..=990).contains(&dropped), "{dropped}");
    }
}
