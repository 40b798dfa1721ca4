//! Frames: a fixed 8-byte header and a bincode 2 body.
//!
//! ```text
//!  0       4      5       6        8
//!  +-------+------+-------+--------+----------------+
//!  | len   | kind | flags | zero   | body (len)     |
//!  | u32le | u8   | u8    | 2 bytes| bincode        |
//!  +-------+------+-------+--------+----------------+
//! ```
//!
//! The length is checked against [`MAX_FRAME_LEN`] before the body buffer is
//! allocated; the kind is checked against the known kinds before the body is
//! decoded; decoding must consume the whole body. This module never trusts a
//! length read from the peer.

use std::io::{Read, Write};

use bincode::config::{Configuration, Limit, LittleEndian, Varint};

use crate::messages::Message;

/// Size of the fixed frame header.
pub const HEADER_LEN: usize = 8;

/// The largest body either side accepts: big enough for a tool's output or a
/// kv value, small enough that a hostile worker cannot make the supervisor
/// allocate without bound. Larger payloads (components, artifacts) are sent
/// as chunks.
pub const MAX_FRAME_LEN: usize = 16 << 20;

/// bincode with a byte limit, so a length prefix inside a body cannot make
/// the decoder allocate more than the body could hold.
type Config = Configuration<LittleEndian, Varint, Limit<MAX_FRAME_LEN>>;

const CONFIG: Config = bincode::config::standard().with_limit::<MAX_FRAME_LEN>();

/// Everything that can go wrong between two frames.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("link closed")]
    Closed,
    #[error("link I/O failed")]
    Io(#[from] std::io::Error),
    #[error("frame of {0} bytes exceeds the {MAX_FRAME_LEN}-byte maximum")]
    TooLong(usize),
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("frame header has non-zero reserved bytes or flags")]
    BadHeader,
    #[error("frame body does not decode as {kind}")]
    Decode {
        kind: &'static str,
        #[source]
        source: bincode::error::DecodeError,
    },
    #[error("frame body for {kind} has {extra} trailing bytes")]
    TrailingBytes { kind: &'static str, extra: usize },
    #[error("message could not be encoded")]
    Encode(#[from] bincode::error::EncodeError),
}

/// The parsed fixed header of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub len: usize,
    pub kind: u8,
}

impl FrameHeader {
    /// Parses and checks a header: the length cap and the reserved bytes.
    /// The kind is checked when the body is decoded.
    pub fn parse(bytes: &[u8; HEADER_LEN]) -> Result<Self, WireError> {
        let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        if len > MAX_FRAME_LEN {
            return Err(WireError::TooLong(len));
        }
        if bytes[5] != 0 || bytes[6] != 0 || bytes[7] != 0 {
            return Err(WireError::BadHeader);
        }
        Ok(Self {
            len,
            kind: bytes[4],
        })
    }
}

/// Encodes a message as one complete frame (header and body).
pub fn encode<M: Message>(msg: &M) -> Result<Vec<u8>, WireError> {
    let mut buf = vec![0u8; HEADER_LEN];
    msg.encode_body(&mut buf)?;
    let len = buf.len() - HEADER_LEN;
    if len > MAX_FRAME_LEN {
        return Err(WireError::TooLong(len));
    }
    buf[..4].copy_from_slice(&(len as u32).to_le_bytes());
    buf[4] = msg.kind();
    Ok(buf)
}

/// Decodes a body of the given kind; the whole body must be consumed.
pub fn decode_body<M: Message>(kind: u8, body: &[u8]) -> Result<M, WireError> {
    M::decode_body(kind, body)
}

/// Writes one frame. The caller serialises writers.
pub fn write_frame<M: Message>(w: &mut impl Write, msg: &M) -> Result<(), WireError> {
    w.write_all(&encode(msg)?)?;
    Ok(())
}

/// Reads one frame, checking the header before allocating the body.
pub fn read_frame<M: Message>(r: &mut impl Read) -> Result<M, WireError> {
    let mut header = [0u8; HEADER_LEN];
    if let Err(e) = r.read_exact(&mut header) {
        return Err(match e.kind() {
            std::io::ErrorKind::UnexpectedEof => WireError::Closed,
            _ => WireError::Io(e),
        });
    }
    let header = FrameHeader::parse(&header)?;
    M::check_kind(header.kind)?;
    let mut body = vec![0u8; header.len];
    r.read_exact(&mut body)?;
    M::decode_body(header.kind, &body)
}

/// Appends the bincode encoding of `value` to `buf`.
pub(crate) fn put<T: bincode::Encode>(buf: &mut Vec<u8>, value: &T) -> Result<(), WireError> {
    bincode::encode_into_std_write(value, buf, CONFIG)?;
    Ok(())
}

/// Decodes exactly one `T` from `body`, refusing trailing bytes.
pub(crate) fn take<T: bincode::Decode<()>>(
    kind: &'static str,
    body: &[u8],
) -> Result<T, WireError> {
    let (value, used) = bincode::decode_from_slice(body, CONFIG)
        .map_err(|source| WireError::Decode { kind, source })?;
    if used != body.len() {
        return Err(WireError::TrailingBytes {
            kind,
            extra: body.len() - used,
        });
    }
    Ok(value)
}
