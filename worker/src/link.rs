//! The worker's end of the link: blocking frame I/O on the shared-memory
//! rings the supervisor made (`prx_ipc::ring`), woken through the
//! inherited socket.
//!
//! The worker is single-threaded with respect to the link: the main loop
//! reads invocations, and host calls made during an invocation read their
//! replies on the same thread. The mutexes only make the type `Sync` for
//! wasmtime's `Send` store data; they are never contended.

use std::io::{BufReader, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use prx_ipc::channel::{ChannelReader, ChannelWriter};
use prx_ipc::ring::{FROM_WORKER, Region};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prx_ipc::{
    FromWorker, HostCall, HostCallMsg, HostReply, LogLevel, LogMsg, ToWorker, WireError, encode,
    read_frame, write_frame,
};

use crate::runtime::HostBackend;

/// Reads are buffered so a frame's header and body usually arrive in one
/// system call.
/// Large enough for typical frames; larger ones are read straight through.
const READ_BUFFER: usize = 64 << 10;

#[derive(Debug)]
pub struct Link {
    reader: Mutex<BufReader<ChannelReader>>,
    writer: Mutex<Writer>,
    /// Invocations that arrived while one was running (the supervisor
    /// pipelines calls); served in order once it ends.
    deferred: Mutex<std::collections::VecDeque<ToWorker>>,
}

/// Frames that need no answer (log lines) wait here and leave with the next
/// frame that does, in one write: fewer system calls and wake-ups.
#[derive(Debug)]
struct Writer {
    stream: ChannelWriter,
    queued: Vec<u8>,
}

/// Queued bytes are flushed early past this, so a chatty plugin cannot make
/// the worker buffer without bound.
const MAX_QUEUED: usize = 64 << 10;

impl Link {
    /// Takes ownership of the inherited socket and shared memory, maps
    /// the memory and closes its descriptor.
    ///
    /// # Safety
    /// `socket` must be an open socket and `ring` an open descriptor of
    /// the link's memory, neither owned by anything else in the process.
    pub unsafe fn from_raw_fds(socket: i32, ring: i32) -> std::io::Result<Self> {
        // SAFETY: the caller guarantees both are open and owned by no one
        // else; `OwnedFd` takes over closing them.
        let (socket, ring) = unsafe { (OwnedFd::from_raw_fd(socket), OwnedFd::from_raw_fd(ring)) };
        let region = Region::map(&ring)?;
        drop(ring);
        Self::new(&region, UnixStream::from(socket))
    }

    pub fn new(region: &Arc<Region>, socket: UnixStream) -> std::io::Result<Self> {
        let (reader, writer) = prx_ipc::channel::split(region, FROM_WORKER, socket)?;
        Ok(Self {
            writer: Mutex::new(Writer {
                stream: writer,
                queued: Vec::new(),
            }),
            reader: Mutex::new(BufReader::with_capacity(READ_BUFFER, reader)),
            deferred: Mutex::new(std::collections::VecDeque::new()),
        })
    }

    /// The descriptor frames arrive on (what a probe passes over the link).
    pub fn raw_fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.reader
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_ref()
            .socket()
            .as_raw_fd()
    }

    /// Sends a frame now, after any queued ones.
    pub fn send(&self, msg: &FromWorker) -> Result<(), WireError> {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let Writer { stream, queued } = &mut *w;
        if queued.is_empty() {
            return write_frame(stream, msg);
        }
        queued.extend_from_slice(&encode(msg)?);
        let result = stream.write_all(queued);
        queued.clear();
        Ok(result?)
    }

    /// Queues a frame that needs no answer; it leaves with the next
    /// [`Link::send`] (or now, when the queue is full).
    pub fn queue(&self, msg: &FromWorker) -> Result<(), WireError> {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let Writer { stream, queued } = &mut *w;
        queued.extend_from_slice(&encode(msg)?);
        if queued.len() >= MAX_QUEUED {
            let result = stream.write_all(queued);
            queued.clear();
            result?;
        }
        Ok(())
    }

    /// The next frame to serve: a deferred invocation first, else one
    /// from the socket.
    pub fn recv(&self) -> Result<ToWorker, WireError> {
        self.recv_expecting(true)
    }

    /// The same; `soon` says whether a frame is likely to follow quickly
    /// (after a call's answer: the next call of a busy caller), which is
    /// when polling briefly before blocking pays. After a heartbeat's
    /// answer nothing is coming, and an idle worker should not poll.
    pub fn recv_expecting(&self, soon: bool) -> Result<ToWorker, WireError> {
        let deferred = self
            .deferred
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front();
        match deferred {
            Some(frame) => Ok(frame),
            None => self.recv_wire_expecting(soon),
        }
    }

    /// Keeps an invocation that arrived during another for later.
    fn defer(&self, frame: ToWorker) {
        self.deferred
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(frame);
    }

    /// The next frame from the socket.
    fn recv_wire(&self) -> Result<ToWorker, WireError> {
        self.recv_wire_expecting(true)
    }

    fn recv_wire_expecting(&self, soon: bool) -> Result<ToWorker, WireError> {
        let mut r = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        if soon && r.buffer().is_empty() {
            r.get_ref().poll_for(SPIN);
        }
        read_frame(&mut *r)
    }
}

/// How long the worker polls the ring for the next frame before it sleeps.
/// Waking a sleeping process costs several microseconds (more in a VM); a
/// caller that sends calls back to back usually has the next one here
/// sooner. Bounded and short, so an idle worker costs nothing measurable.
const SPIN: std::time::Duration = std::time::Duration::from_micros(30);

/// Host calls answered by the supervisor over the link.
#[derive(Debug)]
pub struct LinkBackend {
    link: Arc<Link>,
    next_id: AtomicU64,
    log_level: LogLevel,
    /// Test-only (feature `test-hooks`): abort when the plugin logs this.
    #[cfg(feature = "test-hooks")]
    abort_marker: Option<String>,
}

impl LinkBackend {
    pub fn new(link: Arc<Link>, log_level: LogLevel) -> Self {
        Self {
            link,
            next_id: AtomicU64::new(1),
            log_level,
            #[cfg(feature = "test-hooks")]
            abort_marker: None,
        }
    }

    /// Test-only: the worker aborts, the way a runtime bug would crash it,
    /// when the plugin logs `marker`.
    #[cfg(feature = "test-hooks")]
    pub fn abort_on_log(mut self, marker: Option<String>) -> Self {
        self.abort_marker = marker;
        self
    }
}

impl HostBackend for LinkBackend {
    fn call(&self, call: HostCall) -> HostReply {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self
            .link
            .send(&FromWorker::HostCall(HostCallMsg { id, call }))
        {
            link_lost(&e);
        }
        loop {
            match self.link.recv_wire() {
                Ok(ToWorker::HostReply(reply)) if reply.id == id => return reply.reply,
                // The next call, sent before this one ended: after it.
                Ok(frame @ ToWorker::Invoke(_)) => self.link.defer(frame),
                Ok(ToWorker::Ping(nonce)) => {
                    if let Err(e) = self.link.send(&FromWorker::Pong(nonce)) {
                        link_lost(&e);
                    }
                }
                Ok(ToWorker::Shutdown(())) => std::process::exit(0),
                Ok(other) => {
                    return HostReply::Trap(format!(
                        "unexpected frame while waiting for host call {id}: kind {}",
                        prx_ipc::Message::kind(&other)
                    ));
                }
                Err(e) => link_lost(&e),
            }
        }
    }

    fn log(&self, level: LogLevel, message: String) {
        #[cfg(feature = "test-hooks")]
        if self.abort_marker.as_deref() == Some(message.as_str()) {
            // The test hook: crash the way a runtime bug would.
            std::process::abort();
        }
        if level < self.log_level {
            return;
        }
        if let Err(e) = self.link.queue(&FromWorker::Log(LogMsg {
            level,
            message: message.into(),
        })) {
            link_lost(&e);
        }
    }
}

/// The supervisor is gone or sent garbage: nothing is left to serve.
fn link_lost(e: &WireError) -> ! {
    // stderr is /dev/null in production; this helps when run by hand.
    eprintln!("prx-worker: link to the supervisor lost: {e}");
    std::process::exit(EXIT_LINK_LOST)
}

/// Exit code when the link breaks.
pub const EXIT_LINK_LOST: i32 = 70;
