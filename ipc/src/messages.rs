//! The messages of the link, one Rust type per frame kind.
//!
//! Kinds are numbered per direction; kind 0 is reserved as invalid in both,
//! so a zeroed header never decodes. Adding a kind or changing a payload's
//! layout means bumping [`crate::PROTOCOL_VERSION`].

use bincode::{Decode, Encode};

use crate::codec::{WireError, put, take};
use crate::text::WorkerText;

/// A message type that travels in frames: one enum per direction.
pub trait Message: Sized {
    /// The frame kind of this value.
    fn kind(&self) -> u8;
    /// Refuses kinds this direction does not know, before the body is read.
    fn check_kind(kind: u8) -> Result<(), WireError>;
    /// Appends the body (without header) to `buf`.
    fn encode_body(&self, buf: &mut Vec<u8>) -> Result<(), WireError>;
    /// Decodes a body of a known kind; trailing bytes are an error.
    fn decode_body(kind: u8, body: &[u8]) -> Result<Self, WireError>;
}

/// Declares a direction's enum: each variant has one payload and a kind.
macro_rules! direction {
    ($(#[$meta:meta])* $name:ident { $($kind:literal => $variant:ident($payload:ty),)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $name {
            $($variant($payload),)+
        }

        impl Message for $name {
            fn kind(&self) -> u8 {
                match self {
                    $(Self::$variant(_) => $kind,)+
                }
            }

            fn check_kind(kind: u8) -> Result<(), WireError> {
                match kind {
                    $($kind => Ok(()),)+
                    other => Err(WireError::UnknownKind(other)),
                }
            }

            fn encode_body(&self, buf: &mut Vec<u8>) -> Result<(), WireError> {
                match self {
                    $(Self::$variant(payload) => put(buf, payload),)+
                }
            }

            fn decode_body(kind: u8, body: &[u8]) -> Result<Self, WireError> {
                match kind {
                    $($kind => Ok(Self::$variant(take(
                        concat!(stringify!($name), "::", stringify!($variant)),
                        body,
                    )?)),)+
                    other => Err(WireError::UnknownKind(other)),
                }
            }
        }
    };
}

direction! {
    /// Frames the supervisor sends to a worker.
    ToWorker {
        1 => Welcome(Welcome),
        2 => Chunk(Chunk),
        3 => Invoke(Invoke),
        4 => HostReply(HostReplyMsg),
        5 => Ping(u64),
        6 => Shutdown(()),
    }
}

direction! {
    /// Frames a worker sends to the supervisor. Everything in them is
    /// untrusted input.
    FromWorker {
        1 => Hello(Hello),
        2 => Loaded(Loaded),
        3 => LoadFailed(LoadFailed),
        4 => Chunk(Chunk),
        5 => InvokeReply(InvokeReply),
        6 => HostCall(HostCallMsg),
        7 => Log(LogMsg),
        8 => Pong(u64),
        9 => Fatal(WorkerText),
        10 => Compiled(Compiled),
        11 => Confined(SandboxReport),
    }
}

/// First frame of a worker: what it speaks and what sandbox it runs in.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct Hello {
    pub min_protocol: u16,
    pub max_protocol: u16,
    /// The worker binary's version, for the logs and the compile cache key.
    pub worker_version: String,
    pub sandbox: SandboxReport,
}

/// The names both sides use for the sandbox layers in a [`SandboxReport`].
pub mod layer {
    pub const NAMESPACES: &str = "namespaces";
    pub const RLIMITS: &str = "rlimits";
    pub const CAPABILITIES: &str = "capabilities";
    pub const NO_NEW_PRIVS: &str = "no-new-privs";
    pub const LANDLOCK: &str = "landlock";
    pub const SECCOMP: &str = "seccomp";
    /// Applied by the supervisor, not the worker.
    pub const CGROUP: &str = "cgroup";
    /// The ones a worker applies, in order.
    pub const WORKER: [&str; 6] = [
        NAMESPACES,
        RLIMITS,
        CAPABILITIES,
        NO_NEW_PRIVS,
        LANDLOCK,
        SECCOMP,
    ];
}

/// Which sandbox layers the worker applied, in the order it tried them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode)]
pub struct SandboxReport {
    pub layers: Vec<LayerReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct LayerReport {
    pub layer: String,
    pub status: LayerStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum LayerStatus {
    Applied,
    /// The kernel or the environment does not offer it (with why).
    Unavailable(String),
    /// The operator turned it off.
    Disabled,
}

/// The supervisor's answer to [`Hello`]: what to run and within which limits.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct Welcome {
    pub protocol: u16,
    pub plugin: String,
    pub limits: Limits,
    pub engine: EngineSettings,
    pub component: ComponentSource,
    /// Plugin log lines below this level are dropped in the worker (the
    /// supervisor would discard them anyway; this saves the frames).
    pub log_level: LogLevel,
    /// The confinement to apply before the component is received.
    pub sandbox: SandboxSettings,
}

/// Which sandbox layers the worker applies after [`Welcome`], and their
/// numbers. Every layer is on in production; tests turn single layers off
/// to show that the others still hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct SandboxSettings {
    /// User, network, IPC and mount namespaces, with an empty root.
    pub namespaces: bool,
    pub rlimits: bool,
    /// Drop every capability (effective, permitted, inheritable, ambient,
    /// bounding).
    pub capabilities: bool,
    /// `no_new_privs` and not dumpable.
    pub no_new_privs: bool,
    /// Landlock: no filesystem access, no TCP, no signals or abstract
    /// sockets outside the sandbox.
    pub landlock: bool,
    pub seccomp: SeccompMode,
    /// `RLIMIT_AS` in bytes; 0 leaves it unlimited.
    pub address_space: u64,
    /// `RLIMIT_FSIZE` in bytes. The worker writes no file, but wasmtime
    /// keeps a module's initial memory in an anonymous memfd, which the
    /// limit covers: at least the component's size.
    pub file_size: u64,
    /// `RLIMIT_CPU` in seconds; 0 leaves it unlimited.
    pub cpu_seconds: u64,
}

impl SandboxSettings {
    /// Every layer on.
    pub fn all(address_space: u64) -> Self {
        Self {
            namespaces: true,
            rlimits: true,
            capabilities: true,
            no_new_privs: true,
            landlock: true,
            seccomp: SeccompMode::Enforce,
            address_space,
            file_size: 0,
            cpu_seconds: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum SeccompMode {
    Off,
    /// Syscalls outside the allowlist are allowed and logged by the
    /// kernel (to derive the list).
    Log,
    /// Syscalls outside the allowlist kill the process.
    Enforce,
}

/// Per-invocation limits the worker applies to every store it makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct Limits {
    pub max_fuel: u64,
    pub max_memory_bytes: u64,
    pub max_execution_time_ms: u64,
    pub max_instances: u32,
    pub max_tables: u32,
    pub max_table_elements: u64,
}

/// Engine settings that change compiled code; part of the compile cache key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode, Decode)]
pub struct EngineSettings {
    /// Virtual address space reserved per linear memory.
    pub memory_reservation: u64,
    /// Guard region after each linear memory.
    pub memory_guard: u64,
}

/// Where the plugin comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum ComponentSource {
    /// Component bytes to compile, in the chunks after the [`Welcome`]. A
    /// worker sent these compiles only: under its whole sandbox, seccomp
    /// included, it sends the artifact back ([`Compiled`]) and never runs
    /// a line of the plugin.
    Wasm { len: u64 },
    /// An artifact a compile worker of the same plugin produced for the
    /// same bytes and engine settings, in the read-only file (a compile
    /// cache entry, or a sealed memfd) the worker inherited as
    /// `--artifact-fd`: `len` bytes from `offset` (a multiple of the page
    /// size, so the worker maps it and runs the code in place). No chunks
    /// follow.
    Artifact { offset: u64, len: u64 },
}

impl ComponentSource {
    /// How many bytes of chunks follow the [`Welcome`].
    pub fn chunked_len(&self) -> u64 {
        match self {
            Self::Wasm { len, .. } => *len,
            Self::Artifact { .. } => 0,
        }
    }
}

/// A piece of a component or artifact; at most [`crate::CHUNK_LEN`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Chunk {
    pub bytes: Vec<u8>,
}

/// A compile worker's answer: the artifact follows in chunks. Sent with
/// every sandbox layer in place, before any code of the plugin could run
/// (none does in a compile worker).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Compiled {
    /// Length of the artifact that follows in chunks.
    pub artifact_len: u64,
    /// How long compiling took, in microseconds.
    pub compile_us: u64,
    /// Every sandbox layer, applied or not, in order.
    pub sandbox: SandboxReport,
}

/// The worker instantiated the plugin. It sent [`FromWorker::Confined`]
/// (every layer in place, seccomp last) before the first line of the
/// plugin ran.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Loaded {
    /// Names of the component's exported interfaces.
    pub exports: Vec<String>,
    /// Names of the component's imported interfaces. A host call to an
    /// interface not among them cannot come from the component.
    pub imports: Vec<String>,
    /// How long mapping (or copying) and deserialising took, in
    /// microseconds.
    pub compile_us: u64,
    /// How the code was obtained.
    pub code: CodeSource,
}

/// How a worker obtained the plugin's machine code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum CodeSource {
    /// Compiled from the component's bytes.
    Compiled,
    /// The cached artifact, mapped and run in place.
    Mapped,
    /// The cached artifact, read and copied: the mapping could not be made
    /// executable (a `noexec` mount, for one).
    Copied,
}

impl CodeSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Compiled => "compiled",
            Self::Mapped => "cache, mapped",
            Self::Copied => "cache, copied",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct LoadFailed {
    pub stage: LoadStage,
    pub message: WorkerText,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum LoadStage {
    Receive,
    Compile,
    Deserialize,
    Link,
    Instantiate,
}

/// A call into the plugin.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct Invoke {
    pub id: u64,
    pub call: Call,
}

/// The guest functions the host calls, one variant per export function.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub enum Call {
    ToolGetSpec,
    ToolExecute {
        args: String,
    },
    HookOnEvent {
        event: String,
        payload: String,
    },
    MiddlewareProcess {
        stage: String,
        data: String,
    },
    CronRun,
    ProviderName,
    ProviderChat {
        messages: Vec<ChatMessage>,
        model: String,
        temperature: f64,
    },
    StorageName,
    StorageStore {
        key: String,
        content: String,
        category: String,
        session_id: Option<String>,
    },
    StorageRecall {
        query: String,
        limit: u32,
        session_id: Option<String>,
    },
    StorageForget {
        key: String,
    },
    StorageCount,
    StorageHealth,
    ModuleOnLoad,
    ModuleRpc {
        name: String,
        payload: String,
    },
    ModuleOnEvent {
        topic: String,
        payload: String,
    },
    ModuleDescribe,
}

impl Call {
    /// True when `output` is a reply this call can have: the function's
    /// return type, or `Refused` for a function returning a `result`.
    pub fn accepts(&self, output: &Output) -> bool {
        match (self, output) {
            (
                Self::ToolGetSpec
                | Self::ToolExecute { .. }
                | Self::ProviderName
                | Self::StorageName
                | Self::StorageHealth
                | Self::ModuleDescribe,
                Output::Refused(_),
            ) => false,
            (_, Output::Refused(_)) => true,
            (Self::ToolGetSpec, Output::ToolSpec(_))
            | (Self::ToolExecute { .. }, Output::ToolResult(_))
            | (
                Self::HookOnEvent { .. }
                | Self::StorageStore { .. }
                | Self::ModuleOnLoad
                | Self::ModuleOnEvent { .. },
                Output::Unit,
            )
            | (
                Self::MiddlewareProcess { .. }
                | Self::CronRun
                | Self::ProviderName
                | Self::StorageName
                | Self::ModuleRpc { .. },
                Output::Text(_),
            )
            | (Self::ProviderChat { .. }, Output::Chat(_))
            | (Self::StorageRecall { .. }, Output::Stored(_))
            | (Self::StorageForget { .. } | Self::StorageHealth, Output::Bool(_))
            | (Self::StorageCount, Output::Count(_))
            | (Self::ModuleDescribe, Output::ModuleInfo(_)) => true,
            _ => false,
        }
    }

    /// The component export the call needs.
    pub fn export(&self) -> &'static str {
        match self {
            Self::ToolGetSpec | Self::ToolExecute { .. } => "prx:plugin/tool-exports@0.1.0",
            Self::HookOnEvent { .. } => "prx:plugin/hook-exports@0.1.0",
            Self::MiddlewareProcess { .. } => "prx:plugin/middleware-exports@0.1.0",
            Self::CronRun => "prx:plugin/cron-exports@0.1.0",
            Self::ProviderName | Self::ProviderChat { .. } => "prx:plugin/provider-exports@0.1.0",
            Self::StorageName
            | Self::StorageStore { .. }
            | Self::StorageRecall { .. }
            | Self::StorageForget { .. }
            | Self::StorageCount
            | Self::StorageHealth => "prx:plugin/storage-exports@0.1.0",
            Self::ModuleOnLoad
            | Self::ModuleRpc { .. }
            | Self::ModuleOnEvent { .. }
            | Self::ModuleDescribe => "prx:plugin/module-exports@0.1.0",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct InvokeReply {
    pub id: u64,
    pub outcome: Result<Output, GuestError>,
    /// Fuel the call consumed (for metrics; the supervisor clamps it to
    /// the plugin's `max_fuel`, since a worker could report anything).
    pub fuel_used: u64,
}

/// What a guest function returned.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub enum Output {
    ToolSpec(ToolSpec),
    ToolResult(PluginResult),
    /// The `ok` of a `result<_, string>`.
    Unit,
    /// A string, or the `ok` of a `result<string, string>`.
    Text(String),
    Bool(bool),
    Count(u32),
    Chat(ChatResponse),
    Stored(Vec<StoredMemory>),
    ModuleInfo(ModuleInfo),
    /// The `err` of a guest function's `result`: the plugin refused,
    /// it did not fail (the instance stays).
    Refused(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct ChatResponse {
    pub text: Option<String>,
    pub tool_calls: Vec<ToolCall>,
}

/// A memory as a storage plugin returns it.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct StoredMemory {
    pub id: String,
    pub key: String,
    pub content: String,
    pub category: String,
    pub timestamp: String,
    pub score: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct ModuleInfo {
    pub status: String,
    pub stats: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct ToolSpec {
    pub name: WorkerText,
    pub description: WorkerText,
    pub parameters_schema: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct PluginResult {
    pub success: bool,
    pub output: String,
    pub error: Option<String>,
}

/// Why a guest call did not return: the instance is discarded afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct GuestError {
    pub kind: GuestErrorKind,
    pub message: WorkerText,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum GuestErrorKind {
    /// A wasm trap (unreachable, out of bounds, a panic, ...).
    Trap,
    /// `max_fuel` was used up.
    OutOfFuel,
    /// `max_execution_time_ms` passed (epoch interruption).
    Deadline,
    /// The guest tried to grow memory past `max_memory_mb`.
    MemoryLimit,
    /// The component does not export what the call needs.
    MissingExport,
    /// The guest was trapped because a host call could not be answered.
    HostCall,
}

/// A host function called by the guest while an invocation runs.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct HostCallMsg {
    pub id: u64,
    pub call: HostCall,
}

/// One variant per host function that needs the supervisor. `log` is
/// one-way ([`LogMsg`]) and has no variant here.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub enum HostCall {
    ConfigGet {
        key: String,
    },
    ConfigGetAll,
    KvGet {
        key: String,
    },
    KvSet {
        key: String,
        value: Vec<u8>,
    },
    KvDelete {
        key: String,
    },
    KvListKeys {
        prefix: String,
    },
    KvIncrement {
        key: String,
        delta: i64,
    },
    EventsPublish {
        topic: String,
        payload: String,
    },
    EventsSubscribe {
        pattern: String,
    },
    EventsUnsubscribe {
        id: u64,
    },
    HttpRequest {
        method: String,
        url: String,
        headers: Vec<(String, String)>,
        body: Option<Vec<u8>>,
    },
    MemoryStore {
        text: String,
        category: String,
    },
    MemoryRecall {
        query: String,
        limit: u32,
    },
    CacheGet {
        namespace: String,
        key: String,
    },
    CachePut {
        namespace: String,
        key: String,
        value: Vec<u8>,
    },
    CacheClear {
        namespace: String,
    },
    RpcRegister {
        name: String,
    },
}

impl HostCall {
    /// The WIT interface the function belongs to, as a component imports it.
    pub fn interface(&self) -> &'static str {
        match self {
            Self::ConfigGet { .. } | Self::ConfigGetAll => "prx:host/config@0.1.0",
            Self::KvGet { .. }
            | Self::KvSet { .. }
            | Self::KvDelete { .. }
            | Self::KvListKeys { .. } => "prx:host/kv@0.1.0",
            Self::KvIncrement { .. } => "prx:host/kv-atomic@0.1.0",
            Self::EventsPublish { .. }
            | Self::EventsSubscribe { .. }
            | Self::EventsUnsubscribe { .. } => "prx:host/events@0.1.0",
            Self::HttpRequest { .. } => "prx:host/http-outbound@0.1.0",
            Self::MemoryStore { .. } | Self::MemoryRecall { .. } => "prx:host/memory@0.1.0",
            Self::CacheGet { .. } | Self::CachePut { .. } | Self::CacheClear { .. } => {
                "prx:host/cache@0.1.0"
            }
            Self::RpcRegister { .. } => "prx:host/rpc@0.1.0",
        }
    }

    /// The WIT name of the function, for logs and errors.
    pub fn function(&self) -> &'static str {
        match self {
            Self::ConfigGet { .. } => "config.get",
            Self::ConfigGetAll => "config.get-all",
            Self::KvGet { .. } => "kv.get",
            Self::KvSet { .. } => "kv.set",
            Self::KvDelete { .. } => "kv.delete",
            Self::KvListKeys { .. } => "kv.list-keys",
            Self::KvIncrement { .. } => "kv-atomic.increment",
            Self::EventsPublish { .. } => "events.publish",
            Self::EventsSubscribe { .. } => "events.subscribe",
            Self::EventsUnsubscribe { .. } => "events.unsubscribe",
            Self::HttpRequest { .. } => "http-outbound.request",
            Self::MemoryStore { .. } => "memory.store",
            Self::MemoryRecall { .. } => "memory.recall",
            Self::CacheGet { .. } => "cache.get",
            Self::CachePut { .. } => "cache.put",
            Self::CacheClear { .. } => "cache.clear",
            Self::RpcRegister { .. } => "rpc.register",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct HostReplyMsg {
    pub id: u64,
    pub reply: HostReply,
}

/// The supervisor's answer to a host call.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub enum HostReply {
    Ok(HostValue),
    /// The `err` of a WIT `result`.
    Err(String),
    /// The call cannot be answered and the function has no error channel:
    /// the worker traps the guest with this message.
    Trap(String),
}

#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub enum HostValue {
    Unit,
    Bool(bool),
    U64(u64),
    S64(i64),
    String(String),
    OptString(Option<String>),
    OptBytes(Option<Vec<u8>>),
    Strings(Vec<String>),
    Pairs(Vec<(String, String)>),
    Http(HttpResponse),
    Memories(Vec<MemoryEntry>),
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct MemoryEntry {
    pub id: String,
    pub text: String,
    pub category: String,
    pub importance: f64,
}

/// A log line from the plugin (the `log` import, or WASI stdout/stderr).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct LogMsg {
    pub level: LogLevel,
    pub message: WorkerText,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Encode, Decode)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trace => "trace",
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

#[cfg(test)]
#[path = "messages_tests.rs"]
mod tests;
