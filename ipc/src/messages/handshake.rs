//! The handshake: the worker's Hello (its protocol range and sandbox), the
//! supervisor's Welcome (the plugin, its limits and engine settings, where
//! its component comes from), and the chunks that carry a component.

use bincode::{Decode, Encode};

use super::log::LogLevel;

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
    /// included, it sends the artifact back ([`super::Compiled`]) and never runs
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
