//! rpc: the names a bus module registers during its on-load, checked and
//! counted.

use prx_ipc::{HostReply, HostValue};

use crate::broker::PluginBroker;

/// Longest RPC name; dot-separated words of `[a-z0-9_-]`.
pub const MAX_RPC_NAME: usize = 128;

/// Most RPCs one module may register.
pub const MAX_RPCS_PER_PLUGIN: usize = 64;

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

impl PluginBroker {
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

    pub(in crate::broker) fn register_rpc(&self, name: &str) -> HostReply {
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
}
