//! Calls into a plugin: the export called, its arguments, and what it
//! answers (an output of the type the call expects, or a guest error).

use bincode::{Decode, Encode};

use crate::text::WorkerText;

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
