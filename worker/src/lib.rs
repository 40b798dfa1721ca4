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
//! - [`seccomp`]: the system-call allowlist installed before any code of
//!   the plugin runs.
//!
//! The feature `test-hooks` adds what only the integration tests use (a
//! probe that attacks from inside a worker, an abort on a log line); the
//! release binaries are built without it (`cargo build --release -p
//! prx-worker`), and `scripts/test.sh` checks that nothing but the test
//! crate turns it on.
//!
//! Nothing here decides policy: every host call is answered by the
//! supervisor, which does not trust this process.

pub mod link;
#[cfg(feature = "test-hooks")]
pub mod probe;
pub mod runtime;
pub mod sandbox;
pub mod seccomp;
