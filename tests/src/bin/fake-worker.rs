//! A stand-in for `prx-worker` that speaks the protocol and then lies, the
//! way a worker taken over by an attacker would. What it does is chosen by
//! the plugin name the supervisor sends in `Welcome`:
//!
//! - `forge-reply-id`: answers a call with a reply to an id never issued;
//! - `double-reply`: answers a call twice;
//! - `unknown-kind`: sends a frame of a kind that does not exist;
//! - `oversized`: announces a frame longer than `MAX_FRAME_LEN`;
//! - `trailing-bytes`: sends a valid reply with bytes after it;
//! - `pong-without-ping`: sends a pong nobody asked for;
//! - `call-not-imported`: makes a host call to `memory`, which it did not
//!   report among its imports;
//! - `sandbox-liar`: reports every sandbox layer applied, having applied
//!   none;
//! - `code-lie`: says it mapped a cached artifact when it was sent a
//!   component to compile;
//! - `reload-liar`: behaves, but tells the `code-lie` lie when the
//!   component it is sent holds the bytes `prx-fake-lie` (a new version);
//! - `fuel-lie`: reports more fuel used than any call may burn;
//! - `partial-frame`: answers a call with half a frame header, then stalls;
//! - `flood`: sends 100,000 log lines before each answer;
//! - `evil-compile`: answers a compile with bytes of its own choosing
//!   (`prx-fake-evil`) instead of an artifact;
//! - `host-call-before-confined`: makes a host call before it reports its
//!   sandbox in place;
//! - `flood-no-read`: once it has answered `get-spec` (so it loads),
//!   sends host calls (config, always granted) without end and never
//!   reads again;
//! - `fatal-flood`: sends 100,000 `Fatal` frames before each answer;
//! - `publish-after-reply`: after each answer, while no call is pending,
//!   publishes 20,000 events on `loop.tick`;
//! - `slow-start-*`: behaves, but takes 400 ms to load (a start on a busy
//!   machine);
//! - `ring-writer-ahead`: answers a call by claiming, in the shared
//!   memory, to have written more than the ring from it holds;
//! - `ring-reader-ahead`: claims to have read more of the ring to it than
//!   was written, then makes a host call (whose answer the supervisor
//!   must write there);
//! - `ring-resize`: tries to shrink and to grow the shared memory (which
//!   would make the supervisor's mapping fault), then answers with what
//!   the kernel said;
//! - `socket-frame`: answers a call on the socket instead of the ring, as
//!   a worker from before the shared memory would;
//! - `wake-flood`: once loaded, sends wake-up bytes on the socket without
//!   end from a second thread, while it answers calls as usual;
//! - `frame-flood`: once it has answered `get-spec`, writes log frames
//!   into the ring without end, as fast as it has room, and never reads
//!   again;
//!
//! A worker started on an artifact reads it: a tool call answers
//! `GOT-EVIL` when the artifact holds the `prx-fake-evil` bytes, so a test
//! sees whose artifact a plugin was given.
//! - anything else: behaves.
//!
//! It never loads wasm: it claims to export the tool interface and answers
//! `get-spec` itself, so the supervisor sees a normal plugin until it lies.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use prx_ipc::channel::{ChannelReader, ChannelWriter};
use prx_ipc::ring::{self, Region};

use prx_ipc::{
    Call, FromWorker, Hello, InvokeReply, Loaded, MAX_FRAME_LEN, Output, PROTOCOL_VERSION,
    PluginResult, SandboxReport, ToWorker, ToolSpec, encode, read_frame, write_frame,
};

fn main() {
    let mut args = std::env::args().skip(1);
    let mut fd = 3;
    let mut artifact_fd: Option<i32> = None;
    let mut ring_fd: Option<i32> = None;
    while let Some(arg) = args.next() {
        if arg == "--link-fd" {
            fd = args.next().and_then(|v| v.parse().ok()).unwrap_or(3);
        } else if arg == "--artifact-fd" {
            artifact_fd = args.next().and_then(|v| v.parse().ok());
        } else if arg == "--ring-fd" {
            ring_fd = args.next().and_then(|v| v.parse().ok());
        }
    }
    // SAFETY: the supervisor passes its socket and shared memory as these
    // descriptors; nothing else in this process uses them.
    let (socket, ring_fd) = unsafe {
        (
            UnixStream::from_raw_fd(fd),
            OwnedFd::from_raw_fd(ring_fd.expect("--ring-fd")),
        )
    };
    let region = Region::map(&ring_fd).expect("map the ring");
    let (reader, writer) =
        prx_ipc::channel::split(&region, ring::FROM_WORKER, socket).expect("channel");
    let mut link = Link {
        reader,
        writer,
        ring_fd,
    };
    let hello = Hello {
        min_protocol: PROTOCOL_VERSION,
        max_protocol: PROTOCOL_VERSION,
        worker_version: "fake".into(),
        sandbox: SandboxReport::default(),
    };
    write_frame(&mut link, &FromWorker::Hello(hello)).expect("hello");
    let ToWorker::Welcome(welcome) = read_frame(&mut link).expect("welcome") else {
        return;
    };
    let mut component = Vec::new();
    let len = welcome.component.chunked_len();
    while (component.len() as u64) < len {
        match read_frame(&mut link).expect("chunk") {
            ToWorker::Chunk(c) => component.extend_from_slice(&c.bytes),
            _ => return,
        }
    }
    let marked = component.windows(12).any(|w| w == b"prx-fake-lie");
    let mut sandbox = SandboxReport::default();
    if welcome.plugin == "sandbox-liar" {
        for layer in prx_ipc::layer::WORKER {
            sandbox.layers.push(prx_ipc::LayerReport {
                layer: layer.into(),
                status: prx_ipc::LayerStatus::Applied,
            });
        }
    }
    let mode = welcome.plugin.as_str();
    if let prx_ipc::ComponentSource::Wasm { .. } = welcome.component {
        // A compile worker. "code-lie" (and "reload-liar" on a marked
        // version) claims to have loaded and mapped code instead.
        if mode == "code-lie" || (mode == "reload-liar" && marked) {
            let lie = Loaded {
                exports: vec!["prx:plugin/tool-exports@0.1.0".into()],
                imports: Vec::new(),
                compile_us: 0,
                code: prx_ipc::CodeSource::Mapped,
            };
            let _ = write_frame(&mut link, &FromWorker::Loaded(lie));
            let _ = read_frame::<ToWorker>(&mut link);
            return;
        }
        let artifact: Vec<u8> = if mode == "evil-compile" {
            b"prx-fake-evil".to_vec()
        } else {
            b"prx-fake-artifact".to_vec()
        };
        let compiled = prx_ipc::Compiled {
            artifact_len: artifact.len() as u64,
            compile_us: 0,
            sandbox,
        };
        write_frame(&mut link, &FromWorker::Compiled(compiled)).expect("compiled");
        let chunk = prx_ipc::Chunk { bytes: artifact };
        write_frame(&mut link, &FromWorker::Chunk(chunk)).expect("chunk");
        let _ = read_frame::<ToWorker>(&mut link);
        return;
    }
    let evil = artifact_fd.is_some_and(|fd| {
        // SAFETY: the supervisor passes the artifact as this descriptor.
        let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
        // The position is shared with the supervisor's descriptor: from 0.
        let _ = std::io::Seek::rewind(&mut file);
        let mut bytes = Vec::new();
        let _ = std::io::Read::read_to_end(&mut file, &mut bytes);
        bytes.windows(13).any(|w| w == b"prx-fake-evil")
    });
    if mode == "host-call-before-confined" {
        let call = prx_ipc::HostCallMsg {
            id: 1,
            call: prx_ipc::HostCall::ConfigGetAll,
        };
        let _ = write_frame(&mut link, &FromWorker::HostCall(call));
    }
    if mode.starts_with("slow-start") {
        std::thread::sleep(std::time::Duration::from_millis(400));
    }
    write_frame(&mut link, &FromWorker::Confined(sandbox)).expect("confined");
    let loaded = Loaded {
        exports: vec!["prx:plugin/tool-exports@0.1.0".into()],
        imports: vec![
            "prx:host/log@0.1.0".into(),
            "prx:host/kv@0.1.0".into(),
            "prx:host/config@0.1.0".into(),
            "prx:host/events@0.1.0".into(),
        ],
        compile_us: 0,
        code: prx_ipc::CodeSource::Mapped,
    };
    write_frame(&mut link, &FromWorker::Loaded(loaded)).expect("loaded");
    if mode == "wake-flood" {
        let socket = link.reader.socket().try_clone().expect("socket");
        std::thread::spawn(move || {
            let wakes = [ring::WAKE; 4096];
            while (&socket).write_all(&wakes).is_ok() {}
        });
    }
    loop {
        let Ok(frame) = read_frame::<ToWorker>(&mut link) else {
            return;
        };
        serve_one(&mut link, mode, evil, frame);
    }
}

/// The fake's end of the link: the rings like a real worker's, and the
/// shared memory's descriptor kept open for the modes that attack it.
struct Link {
    reader: ChannelReader,
    writer: ChannelWriter,
    ring_fd: OwnedFd,
}

impl Read for Link {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.reader.read(buf)
    }
}

impl Write for Link {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes `value` at `offset` of the shared memory through a mapping of
/// its own, the way code taken over in a worker would.
fn poke(fd: &OwnedFd, offset: usize, value: u64) {
    use nix::sys::mman::{MapFlags, ProtFlags, mmap};
    let len = std::num::NonZeroUsize::new(ring::REGION_LEN).expect("length");
    // SAFETY: a fresh shared mapping of the whole memory file, written at
    // an 8-byte-aligned offset inside its first page, then left mapped.
    unsafe {
        let base = mmap(
            None,
            len,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_SHARED,
            fd,
            0,
        )
        .expect("map");
        std::ptr::write_volatile(base.as_ptr().cast::<u8>().add(offset).cast::<u64>(), value);
    }
}

/// Answers one frame as `mode` says.
fn serve_one(link: &mut Link, mode: &str, evil: bool, frame: ToWorker) {
    let ToWorker::Invoke(invoke) = frame else {
        if let ToWorker::Ping(n) = frame {
            let _ = write_frame(link, &FromWorker::Pong(n));
        }
        return;
    };
    let output = match invoke.call {
        Call::ToolGetSpec => Output::ToolSpec(ToolSpec {
            name: "fake".into(),
            description: "lies".into(),
            parameters_schema: "{}".into(),
        }),
        Call::ToolExecute { .. } => Output::ToolResult(PluginResult {
            success: true,
            output: if evil { "GOT-EVIL" } else { "honest" }.into(),
            error: None,
        }),
        // The fake loads as a tool only; other calls never come.
        _ => Output::Refused("the fake worker serves tools only".into()),
    };
    // "fuel-lie" claims more fuel than any plugin may burn.
    let fuel_used = if mode == "fuel-lie" { u64::MAX } else { 0 };
    let reply = |id| {
        FromWorker::InvokeReply(InvokeReply {
            id,
            fuel_used,
            outcome: Ok(output.clone()),
        })
    };
    if matches!(invoke.call, Call::ToolGetSpec) {
        let _ = write_frame(link, &reply(invoke.id));
        if mode == "frame-flood" {
            let line = FromWorker::Log(prx_ipc::LogMsg {
                level: prx_ipc::LogLevel::Info,
                message: "flood".into(),
            });
            // Encoded once, and written as soon as there is room (never
            // sleeping for it): the ring refills faster than it is read.
            let burst = encode(&line).expect("encode").repeat(1000);
            let mut at = 0;
            while let Ok(n) = link.writer.try_write(&burst[at..]) {
                at = (at + n) % burst.len();
            }
            return;
        }
        if mode == "flood-no-read" {
            for id in 1u64.. {
                let call = FromWorker::HostCall(prx_ipc::HostCallMsg {
                    id,
                    call: prx_ipc::HostCall::ConfigGetAll,
                });
                if write_frame(link, &call).is_err() {
                    return;
                }
            }
        }
        return;
    }
    match mode {
        "forge-reply-id" => {
            let _ = write_frame(link, &reply(invoke.id + 1000));
        }
        "wrong-type" => {
            let lie = FromWorker::InvokeReply(InvokeReply {
                id: invoke.id,
                fuel_used: 0,
                outcome: Ok(Output::Unit),
            });
            let _ = write_frame(link, &lie);
        }
        "double-reply" => {
            let _ = write_frame(link, &reply(invoke.id));
            let _ = write_frame(link, &reply(invoke.id));
        }
        "unknown-kind" => {
            let _ = link.write_all(&[0, 0, 0, 0, 200, 0, 0, 0]);
        }
        "oversized" => {
            let mut header = ((MAX_FRAME_LEN as u32) + 1).to_le_bytes().to_vec();
            header.extend_from_slice(&[5, 0, 0, 0]);
            let _ = link.write_all(&header);
        }
        "trailing-bytes" => {
            let mut frame = encode(&reply(invoke.id)).expect("encode");
            frame.push(0);
            let len = (frame.len() - prx_ipc::HEADER_LEN) as u32;
            frame[..4].copy_from_slice(&len.to_le_bytes());
            let _ = link.write_all(&frame);
        }
        "call-not-imported" => {
            let call = prx_ipc::HostCallMsg {
                id: 1,
                call: prx_ipc::HostCall::MemoryRecall {
                    query: "a".into(),
                    limit: 1,
                },
            };
            let _ = write_frame(link, &FromWorker::HostCall(call));
        }
        "pong-without-ping" => {
            let _ = write_frame(link, &FromWorker::Pong(424242));
        }
        "ring-writer-ahead" => {
            // The producer position of the ring from the worker (ring 1's
            // control at 256), far past anything written.
            poke(&link.ring_fd, 256, 1 << 40);
            let mut socket = link.reader.socket();
            let _ = socket.write_all(&[ring::WAKE]);
        }
        "ring-reader-ahead" => {
            // The consumer position of the ring to the worker (ring 0's
            // consumer line at 64), past anything the supervisor wrote.
            poke(&link.ring_fd, 64, 1 << 40);
            let call = prx_ipc::HostCallMsg {
                id: 1,
                call: prx_ipc::HostCall::ConfigGetAll,
            };
            let _ = write_frame(link, &FromWorker::HostCall(call));
        }
        "ring-resize" => {
            let said: Vec<String> = [0, 1 << 30]
                .iter()
                .map(|&len| match nix::unistd::ftruncate(&link.ring_fd, len) {
                    Ok(()) => format!("resized to {len}"),
                    Err(e) => format!("refused {len}: {e}"),
                })
                .collect();
            let answer = FromWorker::InvokeReply(InvokeReply {
                id: invoke.id,
                fuel_used: 0,
                outcome: Ok(Output::ToolResult(PluginResult {
                    success: true,
                    output: said.join("; "),
                    error: None,
                })),
            });
            let _ = write_frame(link, &answer);
        }
        "socket-frame" => {
            let bytes = encode(&reply(invoke.id)).expect("encode");
            let mut socket = link.reader.socket();
            let _ = socket.write_all(&bytes);
        }
        "partial-frame" => {
            let _ = link.write_all(&[8, 0]);
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
        "flood" => {
            flood(
                link,
                &FromWorker::Log(prx_ipc::LogMsg {
                    level: prx_ipc::LogLevel::Error,
                    message: "flood".into(),
                }),
            );
            let _ = write_frame(link, &reply(invoke.id));
        }
        "fatal-flood" => {
            flood(link, &FromWorker::Fatal("fatal flood".into()));
            let _ = write_frame(link, &reply(invoke.id));
        }
        "publish-after-reply" => {
            let _ = write_frame(link, &reply(invoke.id));
            for n in 0..20_000u64 {
                let call = FromWorker::HostCall(prx_ipc::HostCallMsg {
                    id: 1_000_000 + n,
                    call: prx_ipc::HostCall::EventsPublish {
                        topic: "loop.tick".into(),
                        payload: "{}".into(),
                    },
                });
                let _ = write_frame(link, &call);
                // The reply; a ping or the next call may come first.
                loop {
                    match read_frame::<ToWorker>(link) {
                        Ok(ToWorker::HostReply(_)) => break,
                        Ok(ToWorker::Ping(n)) => {
                            let _ = write_frame(link, &FromWorker::Pong(n));
                        }
                        Ok(_) => {}
                        Err(_) => return,
                    }
                }
            }
        }
        _ => {
            let _ = write_frame(link, &reply(invoke.id));
        }
    }
}

/// Sends `frame` 100,000 times, in bursts of a thousand.
fn flood(link: &mut Link, frame: &FromWorker) {
    let frame = encode(frame).expect("encode");
    let burst = frame.repeat(1000);
    for _ in 0..100 {
        let _ = link.write_all(&burst);
    }
}
