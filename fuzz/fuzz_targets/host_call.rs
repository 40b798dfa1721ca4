//! Arbitrary host calls, as a hostile worker would send them, answered by
//! the supervisor's broker with real (in-memory) kv, events and memory.
//! The broker may refuse anything; it must never panic, and never answer
//! a call whose permission was not granted with a value.
#![no_main]

use std::collections::BTreeSet;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use prx_ipc::{FromWorker, HostReply, decode_body};
use prx_supervisor::broker::rate::LogRate;
use prx_supervisor::broker::{PluginBroker, Services, permission_of};
use prx_supervisor::manifest::Permission;
use prx_supervisor::services::events::EventBus;
use prx_supervisor::services::kv::KvStore;
use prx_supervisor::services::memory::MemoryStore;

const PERMISSIONS: [Permission; 4] = [
    Permission::Kv,
    Permission::Events,
    Permission::HttpOutbound,
    Permission::Memory,
];

fn services() -> &'static (tokio::runtime::Runtime, Services) {
    static SERVICES: OnceLock<(tokio::runtime::Runtime, Services)> = OnceLock::new();
    SERVICES.get_or_init(|| {
        let kv = KvStore::in_memory().expect("kv");
        let memory = MemoryStore::new(kv.database()).expect("memory");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let services = Services {
            kv,
            shared_kv: None,
            bus: EventBus::new(64),
            memory,
            log_rate: LogRate::default(),
            http: Default::default(),
            storage: None,
            metrics: Default::default(),
        };
        (runtime, services)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&grants, body)) = data.split_first() else {
        return;
    };
    // The first byte picks what was declared (low nibble) and granted
    // (high nibble); the rest is a HostCall frame body.
    let Ok(FromWorker::HostCall(msg)) = decode_body::<FromWorker>(6, body) else {
        return;
    };
    let pick = |bits: u8| -> BTreeSet<Permission> {
        PERMISSIONS
            .iter()
            .enumerate()
            .filter(|(i, _)| bits & (1 << i) != 0)
            .map(|(_, p)| *p)
            .collect()
    };
    let declared = pick(grants & 0x0f);
    let granted: BTreeSet<Permission> =
        pick(grants >> 4).intersection(&declared).copied().collect();
    let (runtime, services) = services();
    let broker = PluginBroker::new("fuzzed".into(), vec![("k".into(), "v".into())])
        .with_permissions(declared, granted.clone())
        .with_services(services, 64 * 1024);
    let permission = permission_of(&msg.call);
    let reply = runtime.block_on(broker.answer(msg.call));
    // `rpc.register` needs no permission, and outside an `on-load` (always,
    // here) it is refused.
    let allowed = permission
        .is_none_or(|p| granted.contains(&p) || matches!(p, Permission::Log | Permission::Config));
    if !allowed || permission.is_none() {
        assert!(
            !matches!(reply, HostReply::Ok(_)),
            "{permission:?} answered without the grant"
        );
    }
});
