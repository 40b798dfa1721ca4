//! The integration tests, in one binary (one link step) with a module per
//! area. The tests run the real `prx` supervisor and `prx-worker`
//! binaries on real plugins built for wasm32-wasip2; shared helpers are in
//! `common`.

mod common;

mod bus;
mod capabilities;
mod cluster;
mod compile;
mod console;
mod disk_faults;
mod forged_frames;
mod golang;
mod http;
mod javascript;
mod kv;
mod operator;
mod plugin_cli;
mod plugin_cli_js;
mod python;
mod reload;
mod sandbox;
mod scale;
mod supervision;
mod tool_call;
mod wit_abi;
