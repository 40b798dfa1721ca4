//! `prx:host/log`: lines in the host's log, tagged with the plugin's name.
//! Always granted.

#[cfg(target_arch = "wasm32")]
fn emit(level: crate::bindings::host::prx::host::log::Level, _name: &str, message: &str) {
    crate::bindings::host::prx::host::log::log(level, message);
}

#[cfg(not(target_arch = "wasm32"))]
fn emit(_level: crate::bindings::host::prx::host::log::Level, name: &str, message: &str) {
    crate::testing::log(name, message);
}

use crate::bindings::host::prx::host::log::Level;

pub fn trace(message: &str) {
    emit(Level::Trace, "trace", message);
}

pub fn debug(message: &str) {
    emit(Level::Debug, "debug", message);
}

pub fn info(message: &str) {
    emit(Level::Info, "info", message);
}

pub fn warn(message: &str) {
    emit(Level::Warn, "warn", message);
}

pub fn error(message: &str) {
    emit(Level::Error, "error", message);
}
