//! Host calls: the guest's calls to the host functions, as the worker
//! forwards them, and the supervisor's replies.

use bincode::{Decode, Encode};

/// A host function called by the guest while an invocation runs.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct HostCallMsg {
    pub id: u64,
    pub call: HostCall,
}

/// One variant per host function that needs the supervisor. `log` is
/// one-way ([`super::LogMsg`]) and has no variant here.
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
    /// The host interface this call belongs to.
    pub fn interface(&self) -> Interface {
        match self {
            Self::ConfigGet { .. } | Self::ConfigGetAll => Interface::Config,
            Self::KvGet { .. }
            | Self::KvSet { .. }
            | Self::KvDelete { .. }
            | Self::KvListKeys { .. } => Interface::Kv,
            Self::KvIncrement { .. } => Interface::KvAtomic,
            Self::EventsPublish { .. }
            | Self::EventsSubscribe { .. }
            | Self::EventsUnsubscribe { .. } => Interface::Events,
            Self::HttpRequest { .. } => Interface::HttpOutbound,
            Self::MemoryStore { .. } | Self::MemoryRecall { .. } => Interface::Memory,
            Self::CacheGet { .. } | Self::CachePut { .. } | Self::CacheClear { .. } => {
                Interface::Cache
            }
            Self::RpcRegister { .. } => Interface::Rpc,
        }
    }

    /// True when the function's WIT result has an `err` case the host can
    /// answer with; the others can only trap to refuse.
    pub fn has_error_channel(&self) -> bool {
        !matches!(
            self,
            Self::KvGet { .. }
                | Self::KvListKeys { .. }
                | Self::ConfigGet { .. }
                | Self::ConfigGetAll
        )
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

/// A host interface of the PRX contract that a component may import and a
/// host call belongs to (`log` is not one: log lines are frames of their
/// own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Interface {
    Config,
    Kv,
    KvAtomic,
    Events,
    HttpOutbound,
    Memory,
    Cache,
    Rpc,
}

impl Interface {
    pub const ALL: [Self; 8] = [
        Self::Config,
        Self::Kv,
        Self::KvAtomic,
        Self::Events,
        Self::HttpOutbound,
        Self::Memory,
        Self::Cache,
        Self::Rpc,
    ];

    /// The name a component imports it by.
    pub fn wit_name(self) -> &'static str {
        match self {
            Self::Config => "prx:host/config@0.1.0",
            Self::Kv => "prx:host/kv@0.1.0",
            Self::KvAtomic => "prx:host/kv-atomic@0.1.0",
            Self::Events => "prx:host/events@0.1.0",
            Self::HttpOutbound => "prx:host/http-outbound@0.1.0",
            Self::Memory => "prx:host/memory@0.1.0",
            Self::Cache => "prx:host/cache@0.1.0",
            Self::Rpc => "prx:host/rpc@0.1.0",
        }
    }

    /// The interface a component's import names; `None` for anything else
    /// (WASI, `log`, a name the host does not know).
    pub fn from_wit_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|i| i.wit_name() == name)
    }
}

impl std::fmt::Display for Interface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.wit_name())
    }
}
