//! The worker's end of the link: blocking frame I/O on the inherited socket.
//!
//! The worker is single-threaded with respect to the link: the main loop
//! reads invocations, and host calls made during an invocation read their
//! replies on the same thread. The mutexes only make the type `Sync` for
//! wasmtime's `Send` store data; they are never contended.

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prx_ipc::{
    FromWorker, HostCall, HostCallMsg, HostReply, LogLevel, LogMsg, ToWorker, WireError,
    read_frame, write_frame,
};

use crate::runtime::HostBackend;

#[derive(Debug)]
pub struct Link {
    reader: Mutex<UnixStream>,
    writer: Mutex<UnixStream>,
}

impl Link {
    /// Takes ownership of the inherited socket.
    ///
    /// # Safety
    /// `fd` must be an open socket that nothing else in the process owns.
    pub unsafe fn from_raw_fd(fd: i32) -> std::io::Result<Self> {
        // SAFETY: the caller guarantees `fd` is an open socket owned by no
        // one else; `OwnedFd` takes over closing it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        Self::new(UnixStream::from(owned))
    }

    pub fn new(stream: UnixStream) -> std::io::Result<Self> {
        Ok(Self {
            writer: Mutex::new(stream.try_clone()?),
            reader: Mutex::new(stream),
        })
    }

    pub fn send(&self, msg: &FromWorker) -> Result<(), WireError> {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        write_frame(&mut *w, msg)
    }

    pub fn recv(&self) -> Result<ToWorker, WireError> {
        let mut r = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        read_frame(&mut *r)
    }
}

/// Host calls answered by the supervisor over the link.
#[derive(Debug)]
pub struct LinkBackend {
    link: Arc<Link>,
    next_id: AtomicU64,
}

impl LinkBackend {
    pub fn new(link: Arc<Link>) -> Self {
        Self {
            link,
            next_id: AtomicU64::new(1),
        }
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
            match self.link.recv() {
                Ok(ToWorker::HostReply(reply)) if reply.id == id => return reply.reply,
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
        if let Err(e) = self.link.send(&FromWorker::Log(LogMsg { level, message })) {
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
