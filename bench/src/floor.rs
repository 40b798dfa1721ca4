//! The floor under every isolated call: a round trip of a call-sized
//! message over a Unix socket between two processes, with blocking reads
//! on both sides and nothing else. No host that puts a plugin in another
//! process can answer faster over a socket.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use anyhow::Result;

/// About the size of an echo call's frame.
const MESSAGE: usize = 64;

/// How a side waits for the next message.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// A blocking read: every message wakes a sleeping process.
    Blocking,
    /// Polls without blocking: the side is always on a CPU, the cheapest
    /// a socket gets (worker and supervisor poll for a short while when
    /// they expect a frame, for this reason).
    Polling,
}

/// Reads exactly `buf.len()` bytes, blocking or polling.
fn read_all(stream: &mut UnixStream, buf: &mut [u8], wait: Wait) -> std::io::Result<()> {
    if wait == Wait::Blocking {
        return stream.read_exact(buf);
    }
    let mut got = 0;
    while got < buf.len() {
        match stream.read(&mut buf[got..]) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Round trips to a forked child that echoes each message back.
///
/// Must run before the process starts any thread: the child of a fork
/// only makes `read`/`write` calls and exits.
pub fn socket_round_trip(
    rounds: usize,
    echo: Wait,
    caller: Wait,
) -> Result<(Vec<Duration>, Duration)> {
    let (mut ours, mut theirs) = UnixStream::pair()?;
    // SAFETY: called while the process has one thread; the child only
    // reads, writes and calls `_exit`.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => {
            drop(ours);
            let mut buf = [0u8; MESSAGE];
            // A socket in non-blocking mode still writes a 64-byte message
            // at once: the buffer is never full here.
            let _ = theirs.set_nonblocking(echo == Wait::Polling);
            while read_all(&mut theirs, &mut buf, echo).is_ok() && theirs.write_all(&buf).is_ok() {}
            // SAFETY: ends the child without running the parent's exit
            // handlers or destructors.
            unsafe { nix::libc::_exit(0) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(theirs);
            ours.set_nonblocking(caller == Wait::Polling)?;
            let mut buf = [7u8; MESSAGE];
            for _ in 0..rounds / 10 {
                ours.write_all(&buf)?;
                read_all(&mut ours, &mut buf, caller)?;
            }
            let mut samples = Vec::with_capacity(rounds);
            let wall = Instant::now();
            for _ in 0..rounds {
                let t = Instant::now();
                ours.write_all(&buf)?;
                read_all(&mut ours, &mut buf, caller)?;
                samples.push(t.elapsed());
            }
            let wall = wall.elapsed();
            drop(ours);
            nix::sys::wait::waitpid(child, None)?;
            Ok((samples, wall))
        }
    }
}
