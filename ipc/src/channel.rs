//! A blocking byte stream over the shared-memory rings ([`crate::ring`])
//! and the socket that wakes each side: what a worker reads frames from
//! and writes them to, with `std::io::Read` and `Write`.
//!
//! Only the reader sleeps on the socket, so no one else can take its
//! wake-up; a writer that finds the ring full looks again, yielding for
//! [`ROOM_SPIN`], then every [`ROOM_SLEEP`].

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ring::{self, Consumer, Producer, Region};

/// How long a writer that finds the ring full yields between looks: the
/// supervisor empties a ring in microseconds once it reads.
const ROOM_SPIN: Duration = Duration::from_micros(200);
/// Then it sleeps this long between looks.
const ROOM_SLEEP: Duration = Duration::from_millis(1);

/// The reading half.
#[derive(Debug)]
pub struct ChannelReader {
    rx: Consumer,
    socket: UnixStream,
}

/// The writing half.
#[derive(Debug)]
pub struct ChannelWriter {
    tx: Producer,
    socket: UnixStream,
}

/// Both halves of this side of the link: `out` names the ring this side
/// writes ([`ring::TO_WORKER`] or [`ring::FROM_WORKER`]).
pub fn split(
    region: &Arc<Region>,
    out: usize,
    socket: UnixStream,
) -> std::io::Result<(ChannelReader, ChannelWriter)> {
    let (tx, rx) = ring::ends(region, out);
    let reader = ChannelReader {
        rx,
        socket: socket.try_clone()?,
    };
    Ok((reader, ChannelWriter { tx, socket }))
}

/// Sleeps until the socket has bytes, then takes them: Ok(false) when the
/// peer closed the link.
fn sleep_on(socket: &UnixStream) -> std::io::Result<bool> {
    let mut bytes = [0u8; 256];
    loop {
        match (&mut &*socket).read(&mut bytes) {
            Ok(0) => return Ok(false),
            Ok(n) => {
                ring::check_wakes(&bytes[..n]).map_err(ring::io_error)?;
                return Ok(true);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Whether the peer closed its end (looked at without taking bytes).
fn peer_gone(socket: &UnixStream) -> bool {
    use nix::sys::socket::{MsgFlags, recv};
    let mut byte = [0u8; 1];
    let flags = MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT;
    matches!(recv(socket.as_raw_fd(), &mut byte, flags), Ok(0))
}

impl ChannelReader {
    /// Whether bytes are waiting, without reading them.
    pub fn ready(&self) -> bool {
        self.rx.probe().ready()
    }

    /// Looks for bytes for up to `within`, yielding the CPU between looks;
    /// true when some arrived. Costs no system call but the yields.
    pub fn poll_for(&self, within: Duration) -> bool {
        let start = Instant::now();
        while !self.ready() {
            if start.elapsed() >= within {
                return false;
            }
            std::thread::yield_now();
        }
        true
    }

    /// The socket, for what must still travel on it (a probe's
    /// descriptor).
    pub fn socket(&self) -> &UnixStream {
        &self.socket
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let n = self.rx.read(buf).map_err(ring::io_error)?;
            if n > 0 {
                return Ok(n);
            }
            self.rx.set_sleeping(true);
            let waiting = self.rx.available().map_err(ring::io_error)?;
            let open = waiting > 0 || sleep_on(&self.socket)?;
            self.rx.set_sleeping(false);
            if !open {
                return Ok(0);
            }
        }
    }
}

impl ChannelWriter {
    /// Writes what fits now, without waiting for room; returns how much.
    pub fn try_write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let n = self.tx.write(bytes).map_err(ring::io_error)?;
        if n > 0 && self.tx.reader_sleeps() {
            ring::send_wake(self.socket.as_raw_fd());
        }
        Ok(n)
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut written = 0;
        let mut full_since: Option<Instant> = None;
        while written < bytes.len() {
            written += self.try_write(&bytes[written..])?;
            if written == bytes.len() {
                break;
            }
            if peer_gone(&self.socket) {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
            if full_since.get_or_insert_with(Instant::now).elapsed() < ROOM_SPIN {
                std::thread::yield_now();
            } else {
                std::thread::sleep(ROOM_SLEEP);
            }
        }
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::{FROM_WORKER, TO_WORKER};

    #[test]
    fn frames_larger_than_the_ring_cross_between_threads() {
        let (region, fd) = Region::create().unwrap();
        let theirs = Region::map(&fd).unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let (mut a_rx, mut a_tx) = split(&region, TO_WORKER, a).unwrap();
        let (mut b_rx, mut b_tx) = split(&theirs, FROM_WORKER, b).unwrap();
        let big: Vec<u8> = (0..5 * ring::CAPACITY + 17).map(|i| i as u8).collect();
        let expect = big.clone();
        // An echo on the other side, which sleeps between messages.
        let echo = std::thread::spawn(move || {
            let mut got = vec![0; expect.len()];
            b_rx.read_exact(&mut got).unwrap();
            assert_eq!(got, expect);
            std::thread::sleep(Duration::from_millis(20));
            b_tx.write_all(&got).unwrap();
            // The end of the link: the reader sees it.
            drop(b_tx);
            drop(b_rx);
        });
        a_tx.write_all(&big).unwrap();
        let mut back = vec![0; big.len()];
        a_rx.read_exact(&mut back).unwrap();
        assert_eq!(back, big);
        echo.join().unwrap();
        let mut more = [0u8; 1];
        assert_eq!(a_rx.read(&mut more).unwrap(), 0);
    }

    #[test]
    fn a_byte_on_the_socket_that_is_not_a_wake_up_is_an_error() {
        let (region, _fd) = Region::create().unwrap();
        let (a, mut b) = UnixStream::pair().unwrap();
        let (mut rx, _tx) = split(&region, TO_WORKER, a).unwrap();
        b.write_all(b"frame").unwrap();
        let e = rx.read(&mut [0u8; 8]).unwrap_err();
        assert_eq!(
            ring::as_ring_error(&e),
            Some(&ring::RingError::NotAWake(b'f'))
        );
    }
}
