//! The steady load: clients that call through the supervisor's API, each
//! picking at random a tool call (Rust, Python, outbound http), an RPC, a
//! middleware run (one that passes, one the filter blocks), an event, or a
//! durable kv write. Every call's outcome is kept; every kv write the
//! supervisor acknowledged goes into the ledger.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::daemon::{ApiError, Daemon};
use crate::weighted;
use crate::world::WEB_BODY;

/// A client gives up on a call after this long (the supervisor's own
/// limits end every call well before).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    Echo,
    Hello,
    Fetch,
    Rpc,
    Pass,
    Block,
    Event,
    KvWrite,
}

impl Op {
    const ALL: [(Op, u32); 8] = [
        (Op::Echo, 3),
        (Op::Hello, 1),
        (Op::Fetch, 1),
        (Op::Rpc, 2),
        (Op::Pass, 1),
        (Op::Block, 1),
        (Op::Event, 1),
        (Op::KvWrite, 4),
    ];

    /// The plugin that answers it (an event is the supervisor's alone).
    pub fn plugin(self) -> Option<&'static str> {
        match self {
            Op::Echo => Some("echo-tool"),
            Op::Hello => Some("hello-py"),
            Op::Fetch => Some("http-fetch"),
            Op::Rpc => Some("stats-module"),
            Op::Pass | Op::Block => Some("content-filter"),
            Op::Event => None,
            Op::KvWrite => Some("kv-tool"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Op::Echo => "tool echo (Rust)",
            Op::Hello => "tool hello (Python)",
            Op::Fetch => "tool fetch (outbound http)",
            Op::Rpc => "rpc stats.summary",
            Op::Pass => "middleware, passed",
            Op::Block => "middleware, blocked",
            Op::Event => "event published",
            Op::KvWrite => "kv write (durable)",
        }
    }
}

/// How one call ended: `Ok`, or the cause it failed with (an API error's
/// `kind`, `blocked_fail_closed`, `supervisor_down`, `client_timeout` or
/// `wrong_answer`) and its message.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub op: Op,
    pub start: Instant,
    pub end: Instant,
    pub result: Result<(), (String, String)>,
}

/// Everything the clients saw.
#[derive(Default)]
pub struct Record {
    pub outcomes: Mutex<Vec<Outcome>>,
    /// Acknowledged kv writes: key and value.
    pub ledger: Mutex<Vec<(String, String)>>,
}

/// One client: calls until `stop`.
pub async fn client(
    id: usize,
    daemon: Arc<Daemon>,
    seed: u64,
    stop: Arc<AtomicBool>,
    record: Arc<Record>,
) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let op = weighted::pick(&mut rng, &Op::ALL);
        let start = Instant::now();
        let key = format!("c{id}-{seq}");
        let value = format!("{seq}-{}", rng.u64(..));
        let result =
            match tokio::time::timeout(CLIENT_TIMEOUT, call(&daemon, op, &key, &value)).await {
                Ok(result) => result,
                Err(_) => Err((
                    "client_timeout".into(),
                    format!("no answer within {CLIENT_TIMEOUT:?}"),
                )),
            };
        if result.is_ok() && op == Op::KvWrite {
            lock(&record.ledger).push((key, value));
        }
        let down = matches!(&result, Err((cause, _)) if cause == "supervisor_down");
        lock(&record.outcomes).push(Outcome {
            op,
            start,
            end: Instant::now(),
            result,
        });
        if down {
            // Restarting: do not spin on a socket nobody listens on.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One call and the check of its answer.
async fn call(daemon: &Daemon, op: Op, key: &str, value: &str) -> Result<(), (String, String)> {
    let json = |v: serde_json::Value| Some(v.to_string());
    let (method, uri, body, expect): (&str, String, Option<String>, Option<&str>) = match op {
        Op::Echo => (
            "POST",
            "/v1/tools/echo/call".into(),
            json(serde_json::json!({ "text": key })),
            Some(key),
        ),
        Op::Hello => (
            "POST",
            "/v1/tools/hello/call".into(),
            json(serde_json::json!({ "name": "soak" })),
            None,
        ),
        Op::Fetch => (
            "POST",
            "/v1/tools/fetch/call".into(),
            json(serde_json::json!({ "path": "/soak" })),
            Some(WEB_BODY),
        ),
        Op::Rpc => (
            "POST",
            "/v1/rpc/stats.summary".into(),
            json(serde_json::json!({ "values": [1, 2, 3, 6] })),
            None,
        ),
        Op::Pass | Op::Block => {
            let text = if op == Op::Pass {
                "hello there"
            } else {
                "a forbidden word"
            };
            (
                "POST",
                "/v1/middleware/inbound".into(),
                json(serde_json::json!({ "text": text })),
                None,
            )
        }
        Op::Event => (
            "POST",
            "/v1/events/tool.soak".into(),
            json(serde_json::json!({ "key": key })),
            None,
        ),
        Op::KvWrite => (
            "POST",
            "/v1/tools/kv/call".into(),
            json(serde_json::json!({ "op": "set", "key": key, "value": value })),
            None,
        ),
    };
    let answer = daemon.api(method, &uri, body).await;
    match (op, answer) {
        // The filter's refusal is the right answer to a blocked word.
        (Op::Block, Err(ApiError::Refused { kind, .. })) if kind == "blocked" => Ok(()),
        (Op::Block, Ok(v)) => Err((
            "wrong_answer".into(),
            format!("a forbidden word passed: {v}"),
        )),
        // Harmless text blocked: the filter failed and the chain, fail-closed,
        // refused rather than let it through unchecked.
        (Op::Pass, Err(ApiError::Refused { kind, message })) if kind == "blocked" => {
            Err(("blocked_fail_closed".into(), message))
        }
        // The kv tool reports the store's answer inside its output.
        (Op::KvWrite, Ok(v)) => {
            let out: serde_json::Value =
                serde_json::from_str(v["output"].as_str().unwrap_or("")).unwrap_or_default();
            match out.get("err") {
                None if out.get("ok").is_some() => Ok(()),
                _ => Err(("kv_refused".into(), out.to_string())),
            }
        }
        (_, Ok(v)) => match expect {
            Some(want) if v["output"].as_str() != Some(want) => {
                Err(("wrong_answer".into(), format!("wanted {want:?}, got {v}")))
            }
            _ => Ok(()),
        },
        (_, Err(ApiError::Down(why))) => Err(("supervisor_down".into(), why)),
        (_, Err(ApiError::Refused { kind, message })) => Err((kind, message)),
    }
}
