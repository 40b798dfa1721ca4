//! The supervisor's end of a worker link: async frame I/O that trusts
//! nothing it reads.
//!
//! Every frame is checked in this order: header length against
//! `MAX_FRAME_LEN` (before the body is allocated), reserved bytes, kind,
//! then a strict body decode that refuses trailing bytes. Any failure is a
//! [`LinkError`], and the caller kills the worker: a worker that sends a bad
//! frame is treated as compromised.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use prx_ipc::{FrameHeader, FromWorker, HEADER_LEN, Message, ToWorker, WireError};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("the worker closed its link")]
    Closed,
    #[error("link I/O failed")]
    Io(#[from] std::io::Error),
    #[error("malformed frame from the worker: {0}")]
    Malformed(WireError),
}

/// Reads frames from a worker.
#[derive(Debug)]
pub struct FrameReader {
    /// Buffered, so a frame's header and body usually take one read.
    half: BufReader<OwnedReadHalf>,
    body: Vec<u8>,
}

impl FrameReader {
    pub fn new(half: OwnedReadHalf) -> Self {
        Self {
            half: BufReader::with_capacity(64 << 10, half),
            body: Vec::new(),
        }
    }

    /// The link's descriptor, for [`poll_briefly`].
    pub fn raw_fd(&self) -> RawFd {
        self.half.get_ref().as_ref().as_raw_fd()
    }

    /// True when a frame's bytes are already read into the buffer.
    pub fn has_buffered(&self) -> bool {
        !self.half.buffer().is_empty()
    }

    pub async fn read(&mut self) -> Result<FromWorker, LinkError> {
        let mut header = [0u8; HEADER_LEN];
        if let Err(e) = self.half.read_exact(&mut header).await {
            return Err(match e.kind() {
                std::io::ErrorKind::UnexpectedEof => LinkError::Closed,
                _ => LinkError::Io(e),
            });
        }
        let header = FrameHeader::parse(&header).map_err(LinkError::Malformed)?;
        FromWorker::check_kind(header.kind).map_err(LinkError::Malformed)?;
        self.body.clear();
        self.body.resize(header.len, 0);
        match self.half.read_exact(&mut self.body).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(LinkError::Malformed(WireError::Closed));
            }
            Err(e) => return Err(LinkError::Io(e)),
        }
        let msg = FromWorker::decode_body(header.kind, &self.body).map_err(LinkError::Malformed)?;
        // Keep a large buffer only while it is in use.
        if self.body.capacity() > 1 << 20 {
            self.body = Vec::new();
        }
        Ok(msg)
    }
}

/// How long the supervisor polls a link for an answer it expects soon
/// before it lets the runtime sleep in `epoll_wait`. Waking a sleeping
/// thread costs more than most answers take (tens of microseconds in a
/// virtual machine: the CPU halts and needs an interrupt), so a worker's
/// answer to a short call, or its next host call, is usually caught here.
/// Bounded, and only while a call is in flight, so an idle supervisor
/// never spins.
pub const LINK_SPIN: Duration = Duration::from_micros(30);

/// Calls in flight to any worker of this process.
static CALLS_IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Counts one call in flight while it lives.
pub struct InFlight(());

impl InFlight {
    pub fn begin() -> Self {
        CALLS_IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
        Self(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        CALLS_IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Polls `fd` without reading until bytes arrive or `within` passes. The
/// bytes are left in the socket, for the reader to take as usual; the
/// runtime then finds them ready without sleeping.
///
/// Only when a single call is in flight in the whole supervisor: with
/// more, the runtime has other work to wake it and a polling thread would
/// only take a core from the workers.
pub fn poll_briefly(fd: RawFd, within: Duration) {
    if CALLS_IN_FLIGHT.load(Ordering::Relaxed) > 1 {
        return;
    }
    use nix::sys::socket::{MsgFlags, recv};
    let start = std::time::Instant::now();
    let mut probe = [0u8; 1];
    while start.elapsed() < within {
        match recv(fd, &mut probe, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT) {
            Err(nix::errno::Errno::EAGAIN) => std::thread::yield_now(),
            // Bytes, the end of the stream, or an error: the reader sees it.
            _ => return,
        }
    }
}

/// Writes frames to a worker.
#[derive(Debug)]
pub struct FrameWriter {
    half: OwnedWriteHalf,
}

impl FrameWriter {
    pub fn new(half: OwnedWriteHalf) -> Self {
        Self { half }
    }

    pub async fn write(&mut self, msg: &ToWorker) -> Result<(), LinkError> {
        let bytes = prx_ipc::encode(msg).map_err(LinkError::Malformed)?;
        self.half.write_all(&bytes).await?;
        Ok(())
    }
}
