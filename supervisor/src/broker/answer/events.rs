//! events: publishing (under the plugin's rate, with its causal chain)
//! and subscribing to patterns.

use prx_ipc::{HostCall, HostReply, HostValue};

use crate::broker::PluginBroker;
use crate::broker::rate::{Admit, PUBLISH_RATE};
use crate::topics::{self};

impl PluginBroker {
    pub(in crate::broker) fn events(&self, call: HostCall) -> HostReply {
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
}
