//! The shared-memory link: two byte rings in one sealed memfd that the
//! supervisor and a worker both map, one per direction. Frames travel
//! through them exactly as they would through a socket (the same bytes,
//! read by the same checks); the socket pair stays, but from the first
//! frame on it carries only wake-up bytes and the end of the link.
//!
//! A reader that finds nothing to read spins for a moment, then says in
//! the ring that it is going to sleep, looks once more, and sleeps in a
//! read of the socket. The writer, after each write to the ring, looks at
//! that word and sends one [`WAKE`] byte only when it is set. So while
//! both sides are busy a frame costs no system call at all; a wake-up
//! costs one `send`, as a frame did before. A writer that finds the ring
//! full never sleeps on the socket (only readers take bytes from it): it
//! looks again, yielding, then in short sleeps, until the reader has made
//! room or its deadline passes.
//!
//! **Trust.** The worker can write every byte of the region at any moment.
//! So each side keeps its own position (how far it has read, or written)
//! in private memory and only *publishes* it to the region; the peer's
//! position is read once per use and refused when it is impossible (a
//! writer more than the ring's capacity ahead, or a reader ahead of what
//! was written): [`RingError`]. Only [`Probe`], which decides no more than
//! when to stop polling, reads positions unchecked. Data is copied out of
//! the region into
//! private memory before anything looks at it, so a peer that changes
//! bytes while they are copied only changes which bytes arrive, which
//! the frame checks then judge like any others (a plain `memcpy` racing
//! the other process's writes: accepted, since nothing reads the region's
//! bytes twice). The memfd is sealed
//! against shrinking and growing before the worker gets it, so no size
//! change can make the supervisor's mapping fault. The waiting words are
//! hints: a lie in one costs its liar a wake-up it needed, or the other
//! side one `send`.
//!
//! Layout (little-endian, [`REGION_LEN`] bytes): one page of control
//! words, then the data of the ring to the worker, then the data of the
//! ring from the worker, [`CAPACITY`] bytes each. The control of ring `r`
//! is at `r * 256`: the producer's position (`u64`) on one cache line, the
//! consumer's position and its sleeping word (`u32`) on the next.

#[cfg(not(target_has_atomic = "64"))]
compile_error!("the link's rings need lock-free 64-bit atomics");

use std::num::NonZeroUsize;
use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

/// Bytes of data in each ring: enough for almost every frame, small enough
/// that an idle worker's share of it costs little.
pub const CAPACITY: usize = 64 << 10;
const CONTROL: usize = 4096;
/// Bytes of the whole region.
pub const REGION_LEN: usize = CONTROL + 2 * CAPACITY;
/// The only byte either side writes to the socket once the rings carry
/// the frames.
pub const WAKE: u8 = 0x57;

/// The ring the supervisor writes and the worker reads.
pub const TO_WORKER: usize = 0;
/// The ring the worker writes and the supervisor reads.
pub const FROM_WORKER: usize = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    #[error("the ring's writer claims {ahead} unread bytes, more than its {CAPACITY}")]
    WriterAhead { ahead: u64 },
    #[error(
        "the ring's reader claims a position {distance} bytes from the writer's, outside the ring"
    )]
    ReaderAhead { distance: u64 },
    #[error("byte {0:#04x} on the link's socket, where only wake-ups travel")]
    NotAWake(u8),
}

/// One mapping of the region, unmapped when the last end is dropped.
#[derive(Debug)]
pub struct Region {
    base: NonNull<u8>,
}

// SAFETY: the region is shared memory reached only through atomics (the
// control words) and bulk copies of bytes that each side owns at the time
// by the ring protocol; nothing in it is a Rust object with invariants.
unsafe impl Send for Region {}
// SAFETY: as above.
unsafe impl Sync for Region {}

impl Region {
    /// A new region for one worker: an anonymous memory file of
    /// [`REGION_LEN`] zero bytes, sealed so its size can never change, and
    /// this process's mapping of it. The descriptor is close-on-exec; the
    /// spawner passes it on.
    pub fn create() -> std::io::Result<(Arc<Self>, OwnedFd)> {
        use nix::fcntl::{FcntlArg, SealFlag, fcntl};
        use nix::sys::memfd::{MFdFlags, memfd_create};
        let fd = memfd_create(
            c"prx-link",
            MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
        )?;
        nix::unistd::ftruncate(&fd, REGION_LEN as i64)?;
        fcntl(
            &fd,
            FcntlArg::F_ADD_SEALS(
                SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL,
            ),
        )?;
        let region = Self::map(&fd)?;
        Ok((region, fd))
    }

    /// Maps a region made by [`Region::create`] (the worker's side).
    pub fn map(fd: impl AsFd) -> std::io::Result<Arc<Self>> {
        use nix::sys::mman::{MapFlags, ProtFlags, mmap};
        let size = nix::sys::stat::fstat(fd.as_fd())?.st_size;
        if size != REGION_LEN as i64 {
            return Err(std::io::Error::other(format!(
                "the link's shared memory is {size} bytes, not {REGION_LEN}"
            )));
        }
        let len = NonZeroUsize::new(REGION_LEN).ok_or_else(|| std::io::Error::other("empty"))?;
        // SAFETY: a fresh shared mapping of a whole file whose size was
        // just checked (and, made by `create`, is sealed); nothing else in
        // this process refers to the address yet.
        let base = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                fd,
                0,
            )?
        };
        Ok(Arc::new(Self { base: base.cast() }))
    }

    /// The position `line` ([`PRODUCER`] or [`CONSUMER`]) of ring `ring`.
    fn position(&self, ring: usize, line: usize) -> &AtomicU64 {
        // SAFETY: `ring * 256 + line * 64` is inside the control page of a
        // live mapping and 8-byte aligned (the mapping is page aligned); an
        // atomic may alias shared memory that another process changes.
        unsafe { &*(self.base.as_ptr().add(ring * 256 + line * 64) as *const AtomicU64) }
    }

    /// The reader's sleeping word of ring `ring`, after its position.
    fn sleeping(&self, ring: usize) -> &AtomicU32 {
        // SAFETY: as for `position`, 8 bytes further on the same line.
        unsafe { &*(self.base.as_ptr().add(ring * 256 + CONSUMER * 64 + 8) as *const AtomicU32) }
    }

    /// Sets or clears the reader's sleeping word, then fences: the look
    /// at the ring that must follow comes after it.
    fn set_sleeping(&self, ring: usize, sleeping: bool) {
        self.sleeping(ring)
            .store(u32::from(sleeping), Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }

    fn data(&self, ring: usize) -> *mut u8 {
        // SAFETY: both rings' data lie inside the mapping.
        unsafe { self.base.as_ptr().add(CONTROL + ring * CAPACITY) }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, of that length; no end refers
        // to it any more (each holds an `Arc` of this region).
        let _ = unsafe { nix::sys::mman::munmap(self.base.cast(), REGION_LEN) };
    }
}

const PRODUCER: usize = 0;
const CONSUMER: usize = 1;

/// The writing end of one ring.
#[derive(Debug)]
pub struct Producer {
    region: Arc<Region>,
    ring: usize,
    /// Bytes written so far: ours, whatever the region says.
    head: u64,
}

/// The reading end of one ring.
#[derive(Debug)]
pub struct Consumer {
    region: Arc<Region>,
    ring: usize,
    /// Bytes read so far: ours, whatever the region says.
    tail: u64,
}

/// This side's ends: the producer of `out` and the consumer of the other
/// ring. Both sides start at position 0 of a fresh region.
pub fn ends(region: &Arc<Region>, out: usize) -> (Producer, Consumer) {
    (
        Producer {
            region: region.clone(),
            ring: out,
            head: 0,
        },
        Consumer {
            region: region.clone(),
            ring: 1 - out,
            tail: 0,
        },
    )
}

impl Producer {
    /// Bytes that fit now.
    pub fn room(&self) -> Result<usize, RingError> {
        let tail = self.region.position(self.ring, CONSUMER);
        let tail = tail.load(Ordering::Acquire);
        let unread = self.head.wrapping_sub(tail);
        if unread > CAPACITY as u64 {
            let distance = unread.min(tail.wrapping_sub(self.head));
            return Err(RingError::ReaderAhead { distance });
        }
        Ok(CAPACITY - unread as usize)
    }

    /// Copies as much of `bytes` as fits; returns how many.
    pub fn write(&mut self, bytes: &[u8]) -> Result<usize, RingError> {
        let n = self.room()?.min(bytes.len());
        if n == 0 {
            return Ok(0);
        }
        let at = (self.head % CAPACITY as u64) as usize;
        let first = n.min(CAPACITY - at);
        let data = self.region.data(self.ring);
        // SAFETY: `at + first <= CAPACITY` and `n - first < CAPACITY`: both
        // copies stay inside this ring's data, in bytes the consumer has
        // released (the room check), from private memory.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), data.add(at), first);
            std::ptr::copy_nonoverlapping(bytes.as_ptr().add(first), data, n - first);
        }
        self.head = self.head.wrapping_add(n as u64);
        let head = self.region.position(self.ring, PRODUCER);
        head.store(self.head, Ordering::Release);
        Ok(n)
    }

    /// Whether the reader said it sleeps (and so needs a [`WAKE`]). Call
    /// after writing: the fence orders the write before the look.
    pub fn reader_sleeps(&self) -> bool {
        fence(Ordering::SeqCst);
        self.region.sleeping(self.ring).load(Ordering::Relaxed) != 0
    }
}

impl Consumer {
    /// Bytes waiting to be read.
    pub fn available(&self) -> Result<usize, RingError> {
        let head = self.region.position(self.ring, PRODUCER);
        let head = head.load(Ordering::Acquire);
        let unread = head.wrapping_sub(self.tail);
        if unread > CAPACITY as u64 {
            return Err(RingError::WriterAhead { ahead: unread });
        }
        Ok(unread as usize)
    }

    /// Copies up to `buf.len()` waiting bytes into `buf`; returns how many.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, RingError> {
        let n = self.available()?.min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        let at = (self.tail % CAPACITY as u64) as usize;
        let first = n.min(CAPACITY - at);
        let data = self.region.data(self.ring);
        // SAFETY: both copies stay inside this ring's data and inside
        // `buf`. The bytes are copied once into private memory and only
        // looked at there, so a peer writing them meanwhile changes only
        // which bytes arrive.
        unsafe {
            std::ptr::copy_nonoverlapping(data.add(at), buf.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(data, buf.as_mut_ptr().add(first), n - first);
        }
        self.tail = self.tail.wrapping_add(n as u64);
        let tail = self.region.position(self.ring, CONSUMER);
        tail.store(self.tail, Ordering::Release);
        Ok(n)
    }

    /// Says (or unsays) that this reader sleeps until bytes arrive. After
    /// saying it, look at [`Consumer::available`] once more before
    /// sleeping.
    pub fn set_sleeping(&self, sleeping: bool) {
        self.region.set_sleeping(self.ring, sleeping);
    }

    /// A cheap look for polling: whether the region shows unread bytes.
    /// Never an error: a lie here only ends a poll early.
    pub fn probe(&self) -> Probe {
        Probe {
            region: self.region.clone(),
            ring: self.ring,
        }
    }
}

/// Looks at a ring without reading it (see [`Consumer::probe`]).
#[derive(Debug, Clone)]
pub struct Probe {
    region: Arc<Region>,
    ring: usize,
}

impl Probe {
    /// Whether bytes seem to be waiting.
    pub fn ready(&self) -> bool {
        let head = self.region.position(self.ring, PRODUCER);
        let tail = self.region.position(self.ring, CONSUMER);
        head.load(Ordering::Acquire) != tail.load(Ordering::Relaxed)
    }

    /// [`Consumer::set_sleeping`] for one who watches on the reader's
    /// behalf: whoever clears the word must set it again, look once more,
    /// and wake the reader if bytes came meanwhile.
    pub fn set_reader_sleeping(&self, sleeping: bool) {
        self.region.set_sleeping(self.ring, sleeping);
    }
}

/// Sends one wake-up on `socket`; never blocks (a full socket already
/// holds wake-ups) and never raises `SIGPIPE` (a closed one is seen by its
/// reader).
pub fn send_wake(socket: std::os::fd::RawFd) {
    use nix::sys::socket::{MsgFlags, send};
    let _ = send(
        socket,
        &[WAKE],
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
    );
}

/// Checks bytes read from the socket: wake-ups only.
pub fn check_wakes(bytes: &[u8]) -> Result<(), RingError> {
    match bytes.iter().find(|&&b| b != WAKE) {
        Some(&b) => Err(RingError::NotAWake(b)),
        None => Ok(()),
    }
}

/// The error a ring's lie becomes on an I/O path.
pub fn io_error(e: RingError) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e)
}

/// The ring's lie inside an I/O error, if that is what it is.
pub fn as_ring_error(e: &std::io::Error) -> Option<&RingError> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<RingError>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> ((Producer, Consumer), (Producer, Consumer), Arc<Region>) {
        let (region, fd) = Region::create().unwrap();
        let theirs = Region::map(&fd).unwrap();
        (ends(&region, TO_WORKER), ends(&theirs, FROM_WORKER), region)
    }

    #[test]
    fn bytes_cross_both_ways_and_wrap_around() {
        let ((mut sup_tx, mut sup_rx), (mut w_tx, mut w_rx), _) = pair();
        let mut rng = fastrand::Rng::with_seed(3);
        let mut sent = Vec::new();
        let mut got = Vec::new();
        // Several laps of the ring in odd-sized pieces.
        while sent.len() < 5 * CAPACITY {
            let piece: Vec<u8> = (0..rng.usize(1..9000)).map(|_| rng.u8(..)).collect();
            let n = sup_tx.write(&piece).unwrap();
            sent.extend_from_slice(&piece[..n]);
            let mut buf = vec![0; rng.usize(1..12000)];
            let m = w_rx.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..m]);
        }
        let mut buf = vec![0; CAPACITY];
        let m = w_rx.read(&mut buf).unwrap();
        got.extend_from_slice(&buf[..m]);
        assert_eq!(got, sent);
        // The other direction is separate.
        assert_eq!(w_tx.write(b"reply").unwrap(), 5);
        assert_eq!(sup_rx.read(&mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"reply");
    }

    #[test]
    fn a_full_ring_takes_nothing_more_until_read() {
        let ((mut tx, _), (_, mut rx), _) = pair();
        assert_eq!(tx.write(&vec![1; CAPACITY + 10]).unwrap(), CAPACITY);
        assert_eq!(tx.write(b"x").unwrap(), 0);
        let mut buf = [0; 100];
        assert_eq!(rx.read(&mut buf).unwrap(), 100);
        assert_eq!(tx.room().unwrap(), 100);
    }

    #[test]
    fn impossible_positions_from_the_peer_are_refused() {
        let ((mut sup_tx, mut sup_rx), _, region) = pair();
        // The worker claims to have written more than the ring holds.
        let head = region.position(FROM_WORKER, PRODUCER);
        head.store(CAPACITY as u64 + 1, Ordering::Release);
        let mut buf = [0; 16];
        assert!(matches!(
            sup_rx.read(&mut buf),
            Err(RingError::WriterAhead { .. })
        ));
        // Or a position behind ours (a huge distance once wrapped).
        head.store(u64::MAX, Ordering::Release);
        assert!(sup_rx.read(&mut buf).is_err());
        // The worker claims to have read bytes never written.
        let tail = region.position(TO_WORKER, CONSUMER);
        tail.store(7, Ordering::Release);
        assert!(matches!(
            sup_tx.write(b"call"),
            Err(RingError::ReaderAhead { distance: 7 })
        ));
    }

    #[test]
    fn the_memory_file_cannot_be_resized_by_the_worker() {
        let (_region, fd) = Region::create().unwrap();
        for len in [0, 4096, REGION_LEN as i64 * 2] {
            assert_eq!(
                nix::unistd::ftruncate(&fd, len),
                Err(nix::errno::Errno::EPERM),
                "resized to {len}"
            );
        }
        // Nor can its seals be changed.
        use nix::fcntl::{FcntlArg, SealFlag, fcntl};
        assert!(fcntl(&fd, FcntlArg::F_ADD_SEALS(SealFlag::F_SEAL_WRITE)).is_err());
    }

    #[test]
    fn only_wake_bytes_may_travel_on_the_socket() {
        assert_eq!(check_wakes(&[WAKE, WAKE]), Ok(()));
        assert_eq!(check_wakes(&[WAKE, 0]), Err(RingError::NotAWake(0)));
    }
}
