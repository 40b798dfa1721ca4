//! config: the plugin's `[config]` values from its manifest, read-only.

use prx_ipc::{HostCall, HostReply, HostValue};

use crate::broker::PluginBroker;

impl PluginBroker {
    pub(in crate::broker) fn config_get(&self, call: HostCall) -> HostReply {
        match call {
            HostCall::ConfigGet { key } => HostReply::Ok(HostValue::OptString(
                self.config
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| v.clone()),
            )),
            HostCall::ConfigGetAll => HostReply::Ok(HostValue::Pairs(self.config.clone())),
            _ => HostReply::Trap("not a config call".into()),
        }
    }
}
