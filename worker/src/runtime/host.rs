//! The host imports a plugin sees, each forwarded to the [`HostBackend`].
//!
//! Every function here is a thin translation between WIT types and the wire's
//! [`HostCall`] / [`HostReply`]. None of them checks permissions or limits:
//! that is the supervisor's job, and a compromised worker could skip a check
//! made here anyway. A reply of the wrong shape traps the guest.

use std::sync::Arc;

use prx_ipc::{HostCall, HostReply, HostValue, LogLevel};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::HostBackend;
use super::output::GuestOutput;

wasmtime::component::bindgen!({
    path: "../wit",
    inline: "
        package prx:worker;

        // Everything a PRX plugin may import, and every export the host
        // knows how to call. A component needs only a subset of both.
        world plugin-host {
            import prx:host/log@0.1.0;
            import prx:host/config@0.1.0;
            import prx:host/kv@0.1.0;
            import prx:host/events@0.1.0;
            import prx:host/http-outbound@0.1.0;
            import prx:host/memory@0.1.0;
            import prx:host/kv-atomic@0.1.0;
            import prx:host/cache@0.1.0;
            import prx:host/rpc@0.1.0;

            export prx:plugin/tool-exports@0.1.0;
            export prx:plugin/hook-exports@0.1.0;
            export prx:plugin/middleware-exports@0.1.0;
            export prx:plugin/cron-exports@0.1.0;
            export prx:plugin/provider-exports@0.1.0;
            export prx:plugin/storage-exports@0.1.0;
            export prx:plugin/module-exports@0.1.0;
        }
    ",
    world: "prx:worker/plugin-host",
    imports: { default: trappable },
});

pub use exports::prx::plugin::{
    cron_exports, hook_exports, middleware_exports, module_exports, provider_exports,
    storage_exports, tool_exports,
};
use prx::host::{cache, config, events, http_outbound, kv, kv_atomic, log, memory, rpc};

/// A guest trap raised because a host call could not be answered.
#[derive(Debug)]
pub struct HostTrap(pub String);

impl std::fmt::Display for HostTrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HostTrap {}

/// A memory or table growth the store limits refused.
#[derive(Debug, Default, Clone, Copy)]
pub struct Limiter {
    pub max_memory_bytes: usize,
    pub max_table_elements: usize,
    pub max_instances: usize,
    pub max_tables: usize,
    /// Set when a growth past `max_memory_bytes` was refused during the
    /// current invocation; turns the resulting trap into a memory error.
    pub refused_memory: Option<usize>,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory_bytes {
            self.refused_memory = Some(desired);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.max_table_elements)
    }

    fn instances(&self) -> usize {
        self.max_instances
    }

    fn tables(&self) -> usize {
        self.max_tables
    }

    fn memories(&self) -> usize {
        // One memory per core instance at most; components built by the
        // usual toolchains have one or two.
        self.max_instances
    }
}

/// The data of one store: WASI state, limits and the way to the host.
pub struct StoreState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: Limiter,
    pub backend: Arc<dyn HostBackend>,
    pub stdout: GuestOutput,
    pub stderr: GuestOutput,
}

impl StoreState {
    pub fn new(backend: Arc<dyn HostBackend>, limiter: Limiter) -> Self {
        let stdout = GuestOutput::new(LogLevel::Info, backend.clone());
        let stderr = GuestOutput::new(LogLevel::Warn, backend.clone());
        // A locked-down WASI: no preopened directories, no environment, no
        // arguments, no network; clocks and randomness work.
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter,
            backend,
            stdout,
            stderr,
        }
    }

    /// Forwards a call and hands back the value, or the guest-visible error.
    fn call(&mut self, call: HostCall) -> wasmtime::Result<Result<HostValue, String>> {
        let function = call.function();
        match self.backend.call(call) {
            HostReply::Ok(value) => Ok(Ok(value)),
            HostReply::Err(message) => Ok(Err(message)),
            HostReply::Trap(message) => Err(trap(format!("{function}: {message}"))),
        }
    }

    /// Like [`Self::call`] for functions without an error channel: an error
    /// reply traps.
    fn call_infallible(&mut self, call: HostCall) -> wasmtime::Result<HostValue> {
        let function = call.function();
        self.call(call)?
            .map_err(|message| trap(format!("{function}: {message}")))
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn trap(message: String) -> wasmtime::Error {
    wasmtime::Error::new(HostTrap(message))
}

fn wrong_shape(function: &str) -> wasmtime::Error {
    trap(format!("{function}: the host answered with the wrong type"))
}

/// Maps `Ok(value)` of the expected variant, passing guest-visible errors.
macro_rules! expect {
    ($reply:expr, $function:literal, $pat:pat => $out:expr) => {
        match $reply {
            Ok($pat) => Ok(Ok($out)),
            Ok(_) => Err(wrong_shape($function)),
            Err(message) => Ok(Err(message)),
        }
    };
}

impl log::Host for StoreState {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        self.backend.log(level, message);
        Ok(())
    }
}

impl config::Host for StoreState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        match self.call_infallible(HostCall::ConfigGet { key })? {
            HostValue::OptString(v) => Ok(v),
            _ => Err(wrong_shape("config.get")),
        }
    }

    fn get_all(&mut self) -> wasmtime::Result<Vec<(String, String)>> {
        match self.call_infallible(HostCall::ConfigGetAll)? {
            HostValue::Pairs(v) => Ok(v),
            _ => Err(wrong_shape("config.get-all")),
        }
    }
}

impl kv::Host for StoreState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        match self.call_infallible(HostCall::KvGet { key })? {
            HostValue::OptBytes(v) => Ok(v),
            _ => Err(wrong_shape("kv.get")),
        }
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), String>> {
        let reply = self.call(HostCall::KvSet { key, value })?;
        expect!(reply, "kv.set", HostValue::Unit => ())
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<Result<bool, String>> {
        let reply = self.call(HostCall::KvDelete { key })?;
        expect!(reply, "kv.delete", HostValue::Bool(b) => b)
    }

    fn list_keys(&mut self, prefix: String) -> wasmtime::Result<Vec<String>> {
        match self.call_infallible(HostCall::KvListKeys { prefix })? {
            HostValue::Strings(v) => Ok(v),
            _ => Err(wrong_shape("kv.list-keys")),
        }
    }
}

impl kv_atomic::Host for StoreState {
    fn increment(&mut self, key: String, delta: i64) -> wasmtime::Result<Result<i64, String>> {
        let reply = self.call(HostCall::KvIncrement { key, delta })?;
        expect!(reply, "kv-atomic.increment", HostValue::S64(n) => n)
    }
}

impl events::Host for StoreState {
    fn publish(&mut self, topic: String, payload: String) -> wasmtime::Result<Result<(), String>> {
        let reply = self.call(HostCall::EventsPublish { topic, payload })?;
        expect!(reply, "events.publish", HostValue::Unit => ())
    }

    fn subscribe(&mut self, pattern: String) -> wasmtime::Result<Result<u64, String>> {
        let reply = self.call(HostCall::EventsSubscribe { pattern })?;
        expect!(reply, "events.subscribe", HostValue::U64(id) => id)
    }

    fn unsubscribe(&mut self, id: u64) -> wasmtime::Result<Result<(), String>> {
        let reply = self.call(HostCall::EventsUnsubscribe { id })?;
        expect!(reply, "events.unsubscribe", HostValue::Unit => ())
    }
}

impl http_outbound::Host for StoreState {
    fn request(
        &mut self,
        method: String,
        url: String,
        headers: Vec<(String, String)>,
        body: Option<Vec<u8>>,
    ) -> wasmtime::Result<Result<http_outbound::HttpResponse, String>> {
        let reply = self.call(HostCall::HttpRequest {
            method,
            url,
            headers,
            body,
        })?;
        expect!(reply, "http-outbound.request", HostValue::Http(r) => http_outbound::HttpResponse {
            status: r.status,
            headers: r.headers,
            body: r.body,
        })
    }
}

impl memory::Host for StoreState {
    fn store(
        &mut self,
        text: String,
        category: String,
    ) -> wasmtime::Result<Result<String, String>> {
        let reply = self.call(HostCall::MemoryStore { text, category })?;
        expect!(reply, "memory.store", HostValue::String(id) => id)
    }

    fn recall(
        &mut self,
        query: String,
        limit: u32,
    ) -> wasmtime::Result<Result<Vec<memory::MemoryEntry>, String>> {
        let reply = self.call(HostCall::MemoryRecall { query, limit })?;
        expect!(reply, "memory.recall", HostValue::Memories(entries) => entries
            .into_iter()
            .map(|e| memory::MemoryEntry {
                id: e.id,
                text: e.text,
                category: e.category,
                importance: e.importance,
            })
            .collect())
    }
}

impl cache::Host for StoreState {
    fn get(
        &mut self,
        namespace: String,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, String>> {
        let reply = self.call(HostCall::CacheGet { namespace, key })?;
        expect!(reply, "cache.get", HostValue::OptBytes(v) => v)
    }

    fn put(
        &mut self,
        namespace: String,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), String>> {
        let reply = self.call(HostCall::CachePut {
            namespace,
            key,
            value,
        })?;
        expect!(reply, "cache.put", HostValue::Unit => ())
    }

    fn clear(&mut self, namespace: String) -> wasmtime::Result<Result<u32, String>> {
        let reply = self.call(HostCall::CacheClear { namespace })?;
        expect!(reply, "cache.clear", HostValue::U64(n) => u32::try_from(n).unwrap_or(u32::MAX))
    }
}

impl rpc::Host for StoreState {
    fn register(&mut self, name: String) -> wasmtime::Result<Result<(), String>> {
        let reply = self.call(HostCall::RpcRegister { name })?;
        expect!(reply, "rpc.register", HostValue::Unit => ())
    }
}
