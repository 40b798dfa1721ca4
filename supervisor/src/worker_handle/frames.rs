//! The supervisor's end of a worker link: async frame I/O that trusts
//! nothing it reads.
//!
//! Frames travel through the shared-memory rings ([`prx_ipc::ring`]); the
//! socket carries wake-ups and tells when the worker is gone. A position
//! in a ring the worker could not have reached, or any byte on the socket
//! but a wake-up, is a [`LinkError::Lied`]. Every frame is then checked in
//! this order: header length against `MAX_FRAME_LEN` (before the body is
//! allocated), reserved bytes, kind, then a strict body decode that
//! refuses trailing bytes. Any failure but the link's end kills the
//! worker: a worker that sends a bad frame is treated as compromised.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use prx_ipc::ring::{self, Consumer, Probe, Producer};
use prx_ipc::{FrameHeader, FromWorker, HEADER_LEN, Message, ToWorker, WireError};
use tokio::io::{AsyncRead, AsyncReadExt, BufReader, ReadBuf};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("the worker closed its link")]
    Closed,
    #[error("link I/O failed")]
    Io(#[from] std::io::Error),
    #[error("malformed frame from the worker: {0}")]
    Malformed(WireError),
    #[error("the worker broke the link's shared memory: {0}")]
    Lied(ring::RingError),
}

/// The ring from the worker as an async byte stream; the socket wakes it
/// and ends it.
#[derive(Debug)]
struct RingRead {
    rx: Consumer,
    socket: OwnedReadHalf,
    /// The task reading, once it waits: [`poll_briefly`] wakes it when it
    /// sees bytes the worker did not send a wake-up for.
    waker: Arc<Mutex<Option<Waker>>>,
}

/// Watches a worker's ring on its reader's behalf ([`poll_briefly`]).
#[derive(Debug, Clone)]
pub struct Watch {
    probe: Probe,
    waker: Arc<Mutex<Option<Waker>>>,
}

impl AsyncRead for RingRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        // Reading the ring is no I/O tokio sees: without spending the
        // task's budget, a worker that keeps the ring full would keep this
        // task (and the thread under it) from ever yielding.
        let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        loop {
            let n = this
                .rx
                .read(buf.initialize_unfilled())
                .map_err(ring::io_error)?;
            if n > 0 {
                this.rx.set_sleeping(false);
                buf.advance(n);
                coop.made_progress();
                return Poll::Ready(Ok(()));
            }
            // Whoever sees bytes while this sleeps must find this task's
            // waker: it is stored before the word says so.
            {
                let mut slot = this.waker.lock().unwrap_or_else(|p| p.into_inner());
                if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *slot = Some(cx.waker().clone());
                }
            }
            this.rx.set_sleeping(true);
            if this.rx.available().map_err(ring::io_error)? > 0 {
                continue;
            }
            let mut wakes = [0u8; 64];
            let mut wakes = ReadBuf::new(&mut wakes);
            match Pin::new(&mut this.socket).poll_read(cx, &mut wakes) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                // The worker is gone: the end of the stream.
                Poll::Ready(Ok(())) if wakes.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => ring::check_wakes(wakes.filled()).map_err(ring::io_error)?,
            }
        }
    }
}

/// Reads frames from a worker.
#[derive(Debug)]
pub struct FrameReader {
    /// Buffered, so a frame's header and body usually take one read.
    half: BufReader<RingRead>,
    body: Vec<u8>,
}

impl FrameReader {
    pub fn new(rx: Consumer, socket: OwnedReadHalf) -> Self {
        let read = RingRead {
            rx,
            socket,
            waker: Arc::default(),
        };
        Self {
            half: BufReader::with_capacity(64 << 10, read),
            body: Vec::new(),
        }
    }

    /// A watch on the ring, for [`poll_briefly`].
    pub fn watch(&self) -> Watch {
        let read = self.half.get_ref();
        Watch {
            probe: read.rx.probe(),
            waker: read.waker.clone(),
        }
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
                _ => link_error(e),
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
            Err(e) => return Err(link_error(e)),
        }
        let msg = FromWorker::decode_body(header.kind, &self.body).map_err(LinkError::Malformed)?;
        // Keep a large buffer only while it is in use.
        if self.body.capacity() > 1 << 20 {
            self.body = Vec::new();
        }
        Ok(msg)
    }
}

/// A ring's lie inside an I/O error is told apart: it kills the worker as
/// a violation, not as a broken link.
fn link_error(e: std::io::Error) -> LinkError {
    match ring::as_ring_error(&e) {
        Some(lie) => LinkError::Lied(lie.clone()),
        None => LinkError::Io(e),
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

/// Looks at the ring without reading until bytes arrive or `within`
/// passes (no system call but yields), and wakes the reading task when
/// they do: the worker then needs no wake-up, and the runtime no trip
/// through `epoll_wait`.
///
/// Only when a single call is in flight in the whole supervisor: with
/// more, the runtime has other work to wake it and a polling thread would
/// only take a core from the workers.
pub fn poll_briefly(watch: &Watch, within: Duration) {
    if CALLS_IN_FLIGHT.load(Ordering::Relaxed) > 1 {
        return;
    }
    // The worker sends no wake-up while this watches; so after watching,
    // the word is set again and the ring looked at once more.
    watch.probe.set_reader_sleeping(false);
    let start = Instant::now();
    while !watch.probe.ready() && start.elapsed() < within {
        std::thread::yield_now();
    }
    watch.probe.set_reader_sleeping(true);
    if watch.probe.ready() {
        let waker = watch
            .waker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// How long, in all, a writer that finds the ring full lets other tasks
/// run between looks before it sleeps between them: the worker empties a
/// ring in microseconds when it is reading, and a worker that frees a byte
/// now and then cannot keep the writer spinning for longer than this.
const ROOM_SPIN: Duration = Duration::from_millis(2);
/// Sleep between looks after that. The caller's deadline bounds the whole.
const ROOM_SLEEP: Duration = Duration::from_millis(1);

/// Writes frames to a worker.
#[derive(Debug)]
pub struct FrameWriter {
    tx: Producer,
    /// Kept for wake-ups, and so the worker sees the link end only when
    /// the supervisor is done with it.
    socket: OwnedWriteHalf,
}

impl FrameWriter {
    pub fn new(tx: Producer, socket: OwnedWriteHalf) -> Self {
        Self { tx, socket }
    }

    /// Writes one frame, waiting for room as long as it takes: the caller
    /// bounds it with its deadline.
    pub async fn write(&mut self, msg: &ToWorker) -> Result<(), LinkError> {
        use std::os::fd::AsRawFd;
        let bytes = prx_ipc::encode(msg).map_err(LinkError::Malformed)?;
        let mut rest = &bytes[..];
        let mut full_since: Option<Instant> = None;
        loop {
            let n = self.tx.write(rest).map_err(LinkError::Lied)?;
            rest = &rest[n..];
            if n > 0 && self.tx.reader_sleeps() {
                ring::send_wake(self.socket.as_ref().as_raw_fd());
            }
            if rest.is_empty() {
                return Ok(());
            }
            if full_since.get_or_insert_with(Instant::now).elapsed() < ROOM_SPIN {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(ROOM_SLEEP).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prx_ipc::ring::{FROM_WORKER, Region, TO_WORKER};
    use std::sync::atomic::AtomicBool;

    #[tokio::test(flavor = "current_thread")]
    async fn a_ring_that_never_empties_still_lets_other_tasks_run() {
        // The worker's side refills the ring before every read, so the
        // reader never meets the socket, the only I/O tokio counts. The
        // reading task must still yield, or on this one thread the other
        // task (a call's deadline, in the supervisor) would never run.
        let (region, fd) = Region::create().unwrap();
        let theirs = Region::map(&fd).unwrap();
        let (ours, _peer) = tokio::net::UnixStream::pair().unwrap();
        let (read_half, _write_half) = ours.into_split();
        let (_, rx) = ring::ends(&region, TO_WORKER);
        let (mut tx, _) = ring::ends(&theirs, FROM_WORKER);
        let line = FromWorker::Log(prx_ipc::LogMsg {
            level: prx_ipc::LogLevel::Info,
            message: "x".repeat(1000).into(),
        });
        let burst = prx_ipc::encode(&line).unwrap().repeat(10);
        let mut at = 0;
        let mut refill = || loop {
            let n = tx.write(&burst[at..]).unwrap();
            if n == 0 {
                break;
            }
            at = (at + n) % burst.len();
        };
        let ran = Arc::new(AtomicBool::new(false));
        tokio::spawn({
            let ran = ran.clone();
            async move { ran.store(true, Ordering::Relaxed) }
        });
        let mut reader = FrameReader::new(rx, read_half);
        for _ in 0..100_000 {
            refill();
            reader.read().await.unwrap();
            if ran.load(Ordering::Relaxed) {
                break;
            }
        }
        assert!(
            ran.load(Ordering::Relaxed),
            "the reading task never yielded"
        );
    }
}
