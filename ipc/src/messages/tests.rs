//! Every message round-trips through bytes; malformed frames are refused.

use super::*;
use crate::codec::{
    FrameHeader, HEADER_LEN, MAX_FRAME_LEN, WireError, decode_body, encode, read_frame,
};

fn round_trip<M: Message + std::fmt::Debug + PartialEq>(msg: M) {
    let bytes = encode(&msg).expect("encode");
    let back: M = read_frame(&mut bytes.as_slice()).expect("decode");
    assert_eq!(back, msg);
}

fn limits() -> Limits {
    Limits {
        max_fuel: 100_000_000,
        max_memory_bytes: 16 << 20,
        max_execution_time_ms: 5000,
        max_instances: 10,
        max_tables: 10,
        max_table_elements: 10_000,
    }
}

/// One of every ToWorker frame kind, with each variant of what it carries.
fn to_worker_samples() -> Vec<ToWorker> {
    let mut out = Vec::new();
    let engine = EngineSettings {
        memory_reservation: 16 << 20,
        memory_guard: 64 << 10,
    };
    let modes = [SeccompMode::Off, SeccompMode::Log, SeccompMode::Enforce];
    for (component, seccomp) in [
        ComponentSource::Wasm { len: 1234 },
        ComponentSource::Artifact {
            offset: 4096,
            len: 99,
        },
    ]
    .into_iter()
    .flat_map(|c| modes.map(|m| (c, m)))
    {
        out.push(ToWorker::Welcome(Welcome {
            protocol: crate::PROTOCOL_VERSION,
            plugin: "echo".into(),
            limits: limits(),
            engine,
            component,
            log_level: LogLevel::Info,
            sandbox: SandboxSettings {
                seccomp,
                landlock: seccomp != SeccompMode::Off,
                ..SandboxSettings::all(8 << 30)
            },
        }));
    }
    out.push(ToWorker::Chunk(Chunk {
        bytes: vec![0, 1, 2, 255],
    }));
    out.push(ToWorker::Invoke(Invoke {
        id: 7,
        call: Call::ToolGetSpec,
    }));
    out.push(ToWorker::Invoke(Invoke {
        id: u64::MAX,
        call: Call::ToolExecute {
            args: r#"{"text":"héllo"}"#.into(),
        },
    }));
    let calls = [
        Call::HookOnEvent {
            event: "tool.call".into(),
            payload: "{}".into(),
        },
        Call::MiddlewareProcess {
            stage: "inbound".into(),
            data: r#"{"text":"hi"}"#.into(),
        },
        Call::CronRun,
        Call::ProviderName,
        Call::ProviderChat {
            messages: vec![ChatMessage {
                role: "user".into(),
                content: "hello".into(),
            }],
            model: "m".into(),
            temperature: 0.25,
        },
        Call::StorageName,
        Call::StorageStore {
            key: "k".into(),
            content: "c".into(),
            category: "fact".into(),
            session_id: Some("s".into()),
        },
        Call::StorageRecall {
            query: "q".into(),
            limit: 3,
            session_id: None,
        },
        Call::StorageForget { key: "k".into() },
        Call::StorageCount,
        Call::StorageHealth,
        Call::ModuleOnLoad,
        Call::ModuleRpc {
            name: "stats.mean".into(),
            payload: "[1,2]".into(),
        },
        Call::ModuleOnEvent {
            topic: "a.b".into(),
            payload: "{}".into(),
        },
        Call::ModuleDescribe,
    ];
    for call in calls {
        assert!(call.export().starts_with("prx:plugin/"));
        out.push(ToWorker::Invoke(Invoke { id: 9, call }));
    }
    let values = [
        HostValue::Unit,
        HostValue::Bool(true),
        HostValue::U64(42),
        HostValue::S64(-42),
        HostValue::String("s".into()),
        HostValue::OptString(None),
        HostValue::OptString(Some("v".into())),
        HostValue::OptBytes(Some(vec![1, 2, 3])),
        HostValue::Strings(vec!["a".into(), "b".into()]),
        HostValue::Pairs(vec![("k".into(), "v".into())]),
        HostValue::Http(HttpResponse {
            status: 200,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: b"ok".to_vec(),
        }),
        HostValue::Memories(vec![MemoryEntry {
            id: "m1".into(),
            text: "Paris".into(),
            category: "fact".into(),
            importance: 0.5,
        }]),
    ];
    for value in values {
        out.push(ToWorker::HostReply(HostReplyMsg {
            id: 3,
            reply: HostReply::Ok(value),
        }));
    }
    out.push(ToWorker::HostReply(HostReplyMsg {
        id: 4,
        reply: HostReply::Err("permission denied: kv".into()),
    }));
    out.push(ToWorker::HostReply(HostReplyMsg {
        id: 5,
        reply: HostReply::Trap("permission denied: kv".into()),
    }));
    out.push(ToWorker::Ping(9));
    out.push(ToWorker::Shutdown(()));
    out
}

#[test]
fn every_supervisor_message_round_trips() {
    for msg in to_worker_samples() {
        round_trip(msg);
    }
}

/// One of every FromWorker frame kind, with each variant of what it carries.
fn from_worker_samples() -> Vec<FromWorker> {
    let mut out = Vec::new();
    out.push(FromWorker::Hello(Hello {
        min_protocol: 1,
        max_protocol: 1,
        worker_version: "0.1.0".into(),
        sandbox: SandboxReport {
            layers: vec![
                LayerReport {
                    layer: "seccomp".into(),
                    status: LayerStatus::Applied,
                },
                LayerReport {
                    layer: "landlock".into(),
                    status: LayerStatus::Unavailable("ENOSYS".into()),
                },
                LayerReport {
                    layer: "userns".into(),
                    status: LayerStatus::Disabled,
                },
            ],
        },
    }));
    let report = SandboxReport {
        layers: vec![LayerReport {
            layer: "seccomp".into(),
            status: LayerStatus::Unavailable("not built in".into()),
        }],
    };
    out.push(FromWorker::Compiled(Compiled {
        artifact_len: 1 << 20,
        compile_us: 1500,
        sandbox: report.clone(),
    }));
    out.push(FromWorker::Confined(report));
    out.push(FromWorker::Loaded(Loaded {
        exports: vec!["prx:plugin/tool-exports@0.1.0".into()],
        imports: vec!["prx:host/log@0.1.0".into()],
        compile_us: 1500,
        code: CodeSource::Mapped,
    }));

    for stage in [
        LoadStage::Receive,
        LoadStage::Compile,
        LoadStage::Deserialize,
        LoadStage::Link,
        LoadStage::Instantiate,
    ] {
        out.push(FromWorker::LoadFailed(LoadFailed {
            stage,
            message: "bad".into(),
        }));
    }
    out.push(FromWorker::Chunk(Chunk { bytes: vec![7; 10] }));
    out.push(FromWorker::InvokeReply(InvokeReply {
        id: 1,
        fuel_used: 0,
        outcome: Ok(Output::ToolSpec(ToolSpec {
            name: "echo".into(),
            description: "Echo".into(),
            parameters_schema: "{}".into(),
        })),
    }));
    out.push(FromWorker::InvokeReply(InvokeReply {
        id: 2,
        fuel_used: 0,
        outcome: Ok(Output::ToolResult(PluginResult {
            success: false,
            output: String::new(),
            error: Some("nope".into()),
        })),
    }));
    let outputs = [
        Output::Unit,
        Output::Text("t".into()),
        Output::Bool(true),
        Output::Count(7),
        Output::Chat(ChatResponse {
            text: Some("hi".into()),
            tool_calls: vec![ToolCall {
                id: "1".into(),
                name: "echo".into(),
                arguments: "{}".into(),
            }],
        }),
        Output::Stored(vec![StoredMemory {
            id: "1".into(),
            key: "k".into(),
            content: "c".into(),
            category: "fact".into(),
            timestamp: "2026-11-22T00:00:00Z".into(),
            score: Some(0.5),
        }]),
        Output::ModuleInfo(ModuleInfo {
            status: "LOADED".into(),
            stats: vec![("calls".into(), "3".into())],
        }),
        Output::Refused("no".into()),
    ];
    for output in outputs {
        out.push(FromWorker::InvokeReply(InvokeReply {
            id: 4,
            fuel_used: 0,
            outcome: Ok(output),
        }));
    }
    for kind in [
        GuestErrorKind::Trap,
        GuestErrorKind::OutOfFuel,
        GuestErrorKind::Deadline,
        GuestErrorKind::MemoryLimit,
        GuestErrorKind::MissingExport,
        GuestErrorKind::HostCall,
    ] {
        out.push(FromWorker::InvokeReply(InvokeReply {
            id: 3,
            fuel_used: 0,
            outcome: Err(GuestError {
                kind,
                message: "wasm trap: unreachable".into(),
            }),
        }));
    }
    let calls = [
        HostCall::ConfigGet { key: "k".into() },
        HostCall::ConfigGetAll,
        HostCall::KvGet { key: "k".into() },
        HostCall::KvSet {
            key: "k".into(),
            value: vec![0; 3],
        },
        HostCall::KvDelete { key: "k".into() },
        HostCall::KvListKeys { prefix: "p".into() },
        HostCall::KvIncrement {
            key: "n".into(),
            delta: -3,
        },
        HostCall::EventsPublish {
            topic: "a.b".into(),
            payload: "{}".into(),
        },
        HostCall::EventsSubscribe {
            pattern: "a.*".into(),
        },
        HostCall::EventsUnsubscribe { id: 5 },
        HostCall::HttpRequest {
            method: "GET".into(),
            url: "https://example.com/".into(),
            headers: vec![("a".into(), "b".into())],
            body: Some(vec![1]),
        },
        HostCall::MemoryStore {
            text: "t".into(),
            category: "fact".into(),
        },
        HostCall::MemoryRecall {
            query: "q".into(),
            limit: 5,
        },
        HostCall::CacheGet {
            namespace: "n".into(),
            key: "k".into(),
        },
        HostCall::CachePut {
            namespace: "n".into(),
            key: "k".into(),
            value: vec![1],
        },
        HostCall::CacheClear {
            namespace: "n".into(),
        },
        HostCall::RpcRegister {
            name: "forecast".into(),
        },
    ];
    let mut interfaces = std::collections::BTreeSet::new();
    let mut variants = std::collections::BTreeSet::new();
    for call in calls {
        variants.insert(host_call_variant(&call));
        // `kv.get` belongs to `prx:host/kv@0.1.0`: the function's name and
        // its interface come from the same table.
        let (interface, _) = call.function().split_once('.').expect("interface.function");
        let wit = call.interface().wit_name();
        assert_eq!(wit, format!("prx:host/{interface}@0.1.0"), "{call:?}");
        assert_eq!(Interface::from_wit_name(wit), Some(call.interface()));
        interfaces.insert(call.interface());
        out.push(FromWorker::HostCall(HostCallMsg { id: 11, call }));
    }
    assert_eq!(interfaces.into_iter().collect::<Vec<_>>(), Interface::ALL);
    assert_eq!(
        variants.len(),
        HOST_CALL_VARIANTS,
        "a HostCall variant has no sample"
    );
    for level in [
        LogLevel::Trace,
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Warn,
        LogLevel::Error,
    ] {
        out.push(FromWorker::Log(LogMsg {
            level,
            message: "line".into(),
        }));
    }
    out.push(FromWorker::Pong(9));
    out.push(FromWorker::Fatal("panicked".into()));
    out
}

#[test]
fn every_worker_message_round_trips() {
    for msg in from_worker_samples() {
        round_trip(msg);
    }
}

#[test]
fn an_oversized_length_is_refused_before_allocating() {
    let mut header = [0u8; HEADER_LEN];
    header[..4].copy_from_slice(&((MAX_FRAME_LEN as u32) + 1).to_le_bytes());
    header[4] = 1;
    // No body follows: a reader that allocated first would block or fail
    // differently; the header check must fire first.
    let err = read_frame::<FromWorker>(&mut header.as_slice()).unwrap_err();
    assert!(matches!(err, WireError::TooLong(n) if n == MAX_FRAME_LEN + 1));
}

#[test]
fn kind_zero_and_unknown_kinds_are_refused() {
    for kind in [0u8, 12, 200] {
        let mut frame = vec![0u8; HEADER_LEN];
        frame[4] = kind;
        let err = read_frame::<FromWorker>(&mut frame.as_slice()).unwrap_err();
        assert!(
            matches!(err, WireError::UnknownKind(k) if k == kind),
            "{err:?}"
        );
    }
    let mut frame = vec![0u8; HEADER_LEN];
    frame[4] = 7;
    assert!(matches!(
        read_frame::<ToWorker>(&mut frame.as_slice()).unwrap_err(),
        WireError::UnknownKind(7)
    ));
}

#[test]
fn reserved_header_bytes_must_be_zero() {
    let mut frame = encode(&FromWorker::Pong(1)).expect("encode");
    frame[6] = 1;
    assert!(matches!(
        read_frame::<FromWorker>(&mut frame.as_slice()).unwrap_err(),
        WireError::BadHeader
    ));
}

#[test]
fn trailing_bytes_are_refused() {
    let mut frame = encode(&FromWorker::Pong(1)).expect("encode");
    frame.push(0);
    let len = (frame.len() - HEADER_LEN) as u32;
    frame[..4].copy_from_slice(&len.to_le_bytes());
    assert!(matches!(
        read_frame::<FromWorker>(&mut frame.as_slice()).unwrap_err(),
        WireError::TrailingBytes { extra: 1, .. }
    ));
}

#[test]
fn a_truncated_body_is_an_error_not_a_panic() {
    let frame = encode(&FromWorker::Fatal("some message".into())).expect("encode");
    let cut = &frame[..frame.len() - 3];
    assert!(read_frame::<FromWorker>(&mut &cut[..]).is_err());
    // A body whose own length prefix claims more than it holds.
    let mut body = Vec::new();
    crate::codec::put(&mut body, &u64::MAX).expect("put");
    assert!(decode_body::<FromWorker>(9, &body).is_err());
}

#[test]
fn an_empty_stream_is_a_closed_link() {
    assert!(matches!(
        read_frame::<FromWorker>(&mut [].as_slice()).unwrap_err(),
        WireError::Closed
    ));
}

#[test]
fn header_parse_reads_length_and_kind() {
    let frame = encode(&ToWorker::Ping(5)).expect("encode");
    let header = FrameHeader::parse(frame[..HEADER_LEN].try_into().expect("8 bytes")).expect("ok");
    assert_eq!(header.kind, 5);
    assert_eq!(header.len, frame.len() - HEADER_LEN);
}

#[test]
fn each_call_accepts_only_its_own_reply_types() {
    let text = Output::Text("x".into());
    let refused = Output::Refused("no".into());
    assert!(Call::CronRun.accepts(&text));
    assert!(Call::CronRun.accepts(&refused));
    assert!(!Call::CronRun.accepts(&Output::Unit));
    // No `result` in the WIT: a refusal is not a possible answer.
    assert!(Call::ProviderName.accepts(&text));
    assert!(!Call::ProviderName.accepts(&refused));
    assert!(!Call::StorageHealth.accepts(&refused));
    assert!(Call::StorageHealth.accepts(&Output::Bool(true)));
    assert!(!Call::ToolGetSpec.accepts(&text));
    assert!(Call::StorageCount.accepts(&Output::Count(1)));
    assert!(!Call::StorageCount.accepts(&Output::Bool(true)));
}

/// The samples as bytes, a line per frame: direction, kind, hex.
fn wire_dump() -> String {
    let hex = |bytes: Vec<u8>| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let mut out = String::new();
    for msg in to_worker_samples() {
        let kind = msg.kind();
        out += &format!("to-worker {kind} {}\n", hex(encode(&msg).expect("encode")));
    }
    for msg in from_worker_samples() {
        let kind = msg.kind();
        out += &format!(
            "from-worker {kind} {}\n",
            hex(encode(&msg).expect("encode"))
        );
    }
    out
}

/// A change to any message's layout must come with a new
/// `PROTOCOL_VERSION`, or an old worker would read new bytes wrongly
/// instead of being refused at the handshake. The bytes of every sample
/// are recorded per version in `ipc/wire/`; a version's record is written
/// once (`UPDATE_WIRE=1 cargo test -p prx-ipc wire`) and never rewritten.
#[test]
fn the_bytes_on_the_wire_are_those_recorded_for_this_protocol_version() {
    let version = crate::PROTOCOL_VERSION;
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("wire/v{version}.txt"));
    let now = wire_dump();
    let recorded = std::fs::read_to_string(&path).ok();
    if std::env::var_os("UPDATE_WIRE").is_some() {
        assert!(
            recorded.as_ref().is_none_or(|r| *r == now),
            "{} is recorded and the bytes differ: bump PROTOCOL_VERSION before recording a new layout",
            path.display()
        );
        std::fs::create_dir_all(path.parent().expect("a directory")).expect("create wire/");
        std::fs::write(&path, &now).expect("record the wire");
        return;
    }
    let Some(recorded) = recorded else {
        panic!(
            "no record of protocol {version}'s bytes at {}: record it with UPDATE_WIRE=1 cargo test -p prx-ipc wire",
            path.display()
        );
    };
    for (line, (was, is)) in recorded.lines().zip(now.lines()).enumerate() {
        assert_eq!(
            was,
            is,
            "line {} of {}: the bytes on the wire changed while PROTOCOL_VERSION is still {version}; bump it, then record the new layout with UPDATE_WIRE=1",
            line + 1,
            path.display()
        );
    }
    assert_eq!(
        recorded.lines().count(),
        now.lines().count(),
        "the samples changed: a message kind was added or removed; bump PROTOCOL_VERSION"
    );
}

/// How many variants `HostCall` has; [`host_call_variant`] numbers them.
const HOST_CALL_VARIANTS: usize = 17;

/// Each `HostCall` variant's number. The match has no wildcard: a new
/// variant does not compile here until it is numbered, and then the
/// samples lack it until one is added (and the wire record with it).
fn host_call_variant(call: &HostCall) -> usize {
    match call {
        HostCall::ConfigGet { .. } => 0,
        HostCall::ConfigGetAll => 1,
        HostCall::KvGet { .. } => 2,
        HostCall::KvSet { .. } => 3,
        HostCall::KvDelete { .. } => 4,
        HostCall::KvListKeys { .. } => 5,
        HostCall::KvIncrement { .. } => 6,
        HostCall::EventsPublish { .. } => 7,
        HostCall::EventsSubscribe { .. } => 8,
        HostCall::EventsUnsubscribe { .. } => 9,
        HostCall::HttpRequest { .. } => 10,
        HostCall::MemoryStore { .. } => 11,
        HostCall::MemoryRecall { .. } => 12,
        HostCall::CacheGet { .. } => 13,
        HostCall::CachePut { .. } => 14,
        HostCall::CacheClear { .. } => 15,
        HostCall::RpcRegister { .. } => 16,
    }
}
