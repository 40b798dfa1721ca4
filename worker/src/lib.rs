//! prx-worker: runs one PRX plugin on wasmtime inside a sandboxed process.
//!
//! The binary (`main.rs`) is started by the supervisor with its end of the
//! link as its only inherited descriptor. This library holds the pieces, so that the
//! benchmark can run the same runtime in-process as a baseline:
//!
//! - [`link`]: the blocking frame link to the supervisor;
//! - [`runtime`]: the engine, the host imports and the plugin instance;
//! - [`sandbox`]: the OS confinement steps applied before any plugin byte is
//!   read;
//! - [`seccomp`]: the system-call allowlist installed once the plugin is
//!   loaded.
//!
//! Nothing here decides policy: every host call is answered by the
//! supervisor, which does not trust this process.

pub mod link;
pub mod probe;
pub mod runtime;
pub mod sandbox;
pub mod seccomp;
