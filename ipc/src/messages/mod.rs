//! The messages of the link, one Rust type per frame kind.
//!
//! Kinds are numbered per direction; kind 0 is reserved as invalid in both,
//! so a zeroed header never decodes. Adding a kind or changing a payload's
//! layout means bumping [`crate::PROTOCOL_VERSION`] (a test holds the
//! bytes to the record in `ipc/wire/`). The payloads are grouped by the
//! phase of the link they belong to: handshake, load, invoke, host calls,
//! log lines.

mod handshake;
mod host;
mod invoke;
mod load;
mod log;

pub use handshake::*;
pub use host::*;
pub use invoke::*;
pub use load::*;
pub use log::*;

use crate::codec::{WireError, put, take};
use crate::text::WorkerText;

/// A message type that travels in frames: one enum per direction.
pub trait Message: Sized {
    /// The frame kind of this value.
    fn kind(&self) -> u8;
    /// Refuses kinds this direction does not know, before the body is read.
    fn check_kind(kind: u8) -> Result<(), WireError>;
    /// Appends the body (without header) to `buf`.
    fn encode_body(&self, buf: &mut Vec<u8>) -> Result<(), WireError>;
    /// Decodes a body of a known kind; trailing bytes are an error.
    fn decode_body(kind: u8, body: &[u8]) -> Result<Self, WireError>;
}

/// Declares a direction's enum: each variant has one payload and a kind.
macro_rules! direction {
    ($(#[$meta:meta])* $name:ident { $($kind:literal => $variant:ident($payload:ty),)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $name {
            $($variant($payload),)+
        }

        impl Message for $name {
            fn kind(&self) -> u8 {
                match self {
                    $(Self::$variant(_) => $kind,)+
                }
            }

            fn check_kind(kind: u8) -> Result<(), WireError> {
                match kind {
                    $($kind => Ok(()),)+
                    other => Err(WireError::UnknownKind(other)),
                }
            }

            fn encode_body(&self, buf: &mut Vec<u8>) -> Result<(), WireError> {
                match self {
                    $(Self::$variant(payload) => put(buf, payload),)+
                }
            }

            fn decode_body(kind: u8, body: &[u8]) -> Result<Self, WireError> {
                match kind {
                    $($kind => Ok(Self::$variant(take(
                        concat!(stringify!($name), "::", stringify!($variant)),
                        body,
                    )?)),)+
                    other => Err(WireError::UnknownKind(other)),
                }
            }
        }
    };
}

direction! {
    /// Frames the supervisor sends to a worker.
    ToWorker {
        1 => Welcome(Welcome),
        2 => Chunk(Chunk),
        3 => Invoke(Invoke),
        4 => HostReply(HostReplyMsg),
        5 => Ping(u64),
        6 => Shutdown(()),
    }
}

direction! {
    /// Frames a worker sends to the supervisor. Everything in them is
    /// untrusted input.
    FromWorker {
        1 => Hello(Hello),
        2 => Loaded(Loaded),
        3 => LoadFailed(LoadFailed),
        4 => Chunk(Chunk),
        5 => InvokeReply(InvokeReply),
        6 => HostCall(HostCallMsg),
        7 => Log(LogMsg),
        8 => Pong(u64),
        9 => Fatal(WorkerText),
        10 => Compiled(Compiled),
        11 => Confined(SandboxReport),
    }
}

#[cfg(test)]
mod tests;
