//! The answer to each host interface, one file per interface: what the
//! call does once the broker has checked that the plugin may make it.
//! Adding a host function means its case in `prx_ipc::HostCall`, its row
//! in [`super::permissions`], and its answer here.

mod cache;
mod config;
mod events;
mod http;
mod kv;
mod memory;
mod rpc;

pub use cache::{MAX_CACHE_KEY, MAX_CACHE_NAMESPACE};
pub use rpc::{MAX_RPC_NAME, MAX_RPCS_PER_PLUGIN, check_rpc_name};
