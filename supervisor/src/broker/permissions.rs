//! Which permission each host interface needs: the table the broker
//! checks every call against. (Which functions can answer an error rather
//! than trap is part of the contract: `HostCall::has_error_channel`.)

use prx_ipc::{HostCall, Interface};

use crate::manifest::Permission;

/// The permission a host call needs, by its interface; `None` for
/// `rpc.register`, which any module may call during its `on-load`.
pub fn permission_of(call: &HostCall) -> Option<Permission> {
    Some(match call.interface() {
        Interface::Config => Permission::Config,
        // The cache is kept in the plugin's kv store, under its quota.
        Interface::Kv | Interface::KvAtomic | Interface::Cache => Permission::Kv,
        Interface::Events => Permission::Events,
        Interface::HttpOutbound => Permission::HttpOutbound,
        Interface::Memory => Permission::Memory,
        Interface::Rpc => return None,
    })
}
