//! Which permission each host call needs, and which calls can answer an
//! error rather than trap: the table the broker checks every call against.

use prx_ipc::HostCall;

use crate::manifest::Permission;

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
