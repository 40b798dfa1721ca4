//! prx-ipc: the wire between the supervisor and one worker.
//!
//! This crate defines frames, messages and the handshake, and the codec that
//! turns them into bytes and back. It does no I/O policy (who may send what
//! when is the supervisor's business) and it never trusts a length it reads:
//! every size is checked against [`MAX_FRAME_LEN`] before anything is
//! allocated.
//!
//! ```text
//!  supervisor                                        worker (exec'd)
//!      |  <------ Hello {protocol range, sandbox report} -----|
//!      |  ------- Welcome {protocol, plugin, limits, ------->  |
//!      |          component source + length}                  |
//!
//!  a compile worker (ComponentSource::Wasm):
//!      |  ------- Chunk * n (the component's bytes) -------->  |  seccomp on,
//!      |  <------ Compiled {artifact length, sandbox} -------  |  compiles,
//!      |  <------ Chunk * n (the artifact) ------------------  |  runs nothing
//!      |  ------- Shutdown --------------------------------->  |
//!
//!  a worker that runs the plugin (ComponentSource::Artifact, in --artifact-fd):
//!      |  <------ Confined {sandbox report} -----------------  |  maps, links,
//!      |  <------ Loaded {exports, imports, code source} ----  |  then starts
//!      |                                                       |
//!      |  ------- Invoke {id, call} ------------------------>  |
//!      |  <------ HostCall {id', call} (nested, 0..n) ------  |  guest runs
//!      |  ------- HostReply {id', reply} ------------------->  |
//!      |  <------ Log {level, message} (one-way) -----------  |
//!      |  <------ InvokeReply {id, outcome, fuel_used} -----  |
//!      |                                                       |
//!      |  ------- Ping {nonce} / <------ Pong {nonce} ------   |
//!      |  ------- Shutdown --------------------------------->  |  exits 0
//! ```
//!
//! The bytes of one frame of every kind are recorded per protocol version
//! in `wire/`; a test fails when they change without a new version.

pub mod channel;
mod codec;
mod messages;
pub mod ring;
mod text;

pub use codec::{
    FrameHeader, HEADER_LEN, MAX_FRAME_LEN, WireError, decode_body, encode, read_frame, write_frame,
};
pub use messages::*;
pub use text::{WorkerText, escape as escape_worker_text};

/// The protocol version this build speaks. Bump it on any change to a
/// message's layout; old workers are then refused at the handshake.
pub const PROTOCOL_VERSION: u16 = 5;

/// The oldest protocol version this build still accepts.
pub const MIN_PROTOCOL_VERSION: u16 = 5;

/// `RLIMIT_NOFILE` of a worker: stdio, the link, memfd images, spare. The
/// supervisor checks `/proc/<pid>/limits` against it.
pub const WORKER_MAX_FDS: u64 = 32;

/// `RLIMIT_NPROC` of a worker: main, epoch ticker, compile threads.
pub const WORKER_MAX_THREADS: u64 = 128;

/// The descriptor a worker takes as its link when the supervisor does not
/// name one with `--link-fd`.
pub const WORKER_SOCKET_FD: i32 = 3;

/// Component and artifact bytes travel in chunks of this size, so no single
/// frame approaches [`MAX_FRAME_LEN`] however large the plugin is.
pub const CHUNK_LEN: usize = 1 << 20;

/// Picks the version both sides speak, or `None` when the ranges do not meet.
pub fn negotiate(worker_min: u16, worker_max: u16) -> Option<u16> {
    let high = worker_max.min(PROTOCOL_VERSION);
    let low = worker_min.max(MIN_PROTOCOL_VERSION);
    (low <= high).then_some(high)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_picks_the_highest_common_version() {
        assert_eq!(
            negotiate(MIN_PROTOCOL_VERSION, MIN_PROTOCOL_VERSION),
            Some(MIN_PROTOCOL_VERSION)
        );
        assert_eq!(negotiate(1, 9), Some(PROTOCOL_VERSION));
    }

    #[test]
    fn negotiation_refuses_disjoint_ranges() {
        assert_eq!(negotiate(PROTOCOL_VERSION + 1, PROTOCOL_VERSION + 5), None);
        assert_eq!(negotiate(0, 0), None);
        // Version 1 lacked the calls of every capability but `tool`.
        assert_eq!(negotiate(1, 1), None);
    }
}
