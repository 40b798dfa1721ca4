//! The services every plugin is served from, each standing alone: kv with
//! its write-ahead log, the built-in memory, the event bus and outbound
//! HTTP. They know nothing of permissions or plugins' brokers: the broker
//! checks a call, then asks one of these.

pub mod events;
pub mod http;
pub mod kv;
pub mod memory;
