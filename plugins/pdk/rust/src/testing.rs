//! Host functions for `cargo test` on the development machine.
//!
//! When a plugin crate is compiled for anything but wasm, the PDK's host
//! functions use this in-memory stand-in instead of the real host, so the
//! plugin's logic can be unit-tested without a runtime: log lines go to
//! stderr, config and kv live in thread-local maps, published events are
//! recorded, http answers from a handler the test sets. Each test thread
//! starts empty.

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::http::Response;
use crate::memory::MemoryEntry;

type HttpHandler =
    Box<dyn Fn(&str, &str, &[(String, String)], Option<&[u8]>) -> Result<Response, String>>;

#[derive(Default)]
struct State {
    config: BTreeMap<String, String>,
    kv: BTreeMap<String, Vec<u8>>,
    events: Vec<(String, String)>,
    subscriptions: Vec<(u64, String)>,
    next_id: u64,
    http: Option<HttpHandler>,
    memories: Vec<MemoryEntry>,
    cache: BTreeMap<(String, String), Vec<u8>>,
    rpcs: Vec<String>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    STATE.with(|s| f(&mut s.borrow_mut()))
}

/// Sets a `[config]` value for this test thread.
pub fn set_config(key: &str, value: &str) {
    with(|s| s.config.insert(key.into(), value.into()));
}

/// Events published on this test thread, in order: (topic, payload).
pub fn published() -> Vec<(String, String)> {
    with(|s| s.events.clone())
}

/// Answers this thread's http requests with `handler(method, url, headers, body)`.
pub fn mock_http(
    handler: impl Fn(&str, &str, &[(String, String)], Option<&[u8]>) -> Result<Response, String>
    + 'static,
) {
    with(|s| s.http = Some(Box::new(handler)));
}

pub(crate) fn log(level: &str, message: &str) {
    eprintln!("[{level}] {message}");
}

pub(crate) fn config_get(key: &str) -> Option<String> {
    with(|s| s.config.get(key).cloned())
}

pub(crate) fn config_all() -> Vec<(String, String)> {
    with(|s| s.config.clone().into_iter().collect())
}

pub(crate) fn kv_get(key: &str) -> Option<Vec<u8>> {
    with(|s| s.kv.get(key).cloned())
}

pub(crate) fn kv_set(key: &str, value: &[u8]) -> Result<(), String> {
    with(|s| s.kv.insert(key.into(), value.to_vec()));
    Ok(())
}

pub(crate) fn kv_increment(key: &str, delta: i64) -> Result<i64, String> {
    with(|s| {
        let current = match s.kv.get(key) {
            None => 0,
            Some(bytes) => std::str::from_utf8(bytes)
                .ok()
                .and_then(|t| t.parse::<i64>().ok())
                .ok_or_else(|| format!("kv key {key:?} does not hold a number"))?,
        };
        let next = current
            .checked_add(delta)
            .ok_or_else(|| format!("kv counter {key:?} would overflow"))?;
        s.kv.insert(key.into(), next.to_string().into_bytes());
        Ok(next)
    })
}

pub(crate) fn kv_delete(key: &str) -> Result<bool, String> {
    Ok(with(|s| s.kv.remove(key).is_some()))
}

pub(crate) fn kv_list(prefix: &str) -> Vec<String> {
    with(|s| {
        s.kv.keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    })
}

pub(crate) fn publish(topic: &str, payload: &str) -> Result<(), String> {
    serde_json::from_str::<serde_json::Value>(payload)
        .map_err(|e| format!("payload is not JSON: {e}"))?;
    with(|s| s.events.push((topic.into(), payload.into())));
    Ok(())
}

pub(crate) fn subscribe(pattern: &str) -> Result<u64, String> {
    Ok(with(|s| {
        s.next_id += 1;
        s.subscriptions.push((s.next_id, pattern.into()));
        s.next_id
    }))
}

pub(crate) fn unsubscribe(id: u64) -> Result<(), String> {
    with(|s| {
        let before = s.subscriptions.len();
        s.subscriptions.retain(|(i, _)| *i != id);
        if s.subscriptions.len() == before {
            Err(format!("no subscription {id}"))
        } else {
            Ok(())
        }
    })
}

pub(crate) fn http(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: Option<&[u8]>,
) -> Result<Response, String> {
    with(|s| match &s.http {
        Some(handler) => handler(method, url, headers, body),
        None => Err("no http handler in this test: call prx_pdk::testing::mock_http".into()),
    })
}

pub(crate) fn memory_store(text: &str, category: &str) -> Result<String, String> {
    Ok(with(|s| {
        let id = format!("mem-{}", s.memories.len() + 1);
        s.memories.push(MemoryEntry {
            id: id.clone(),
            text: text.into(),
            category: category.into(),
            importance: 0.5,
        });
        id
    }))
}

/// Entries sharing the most words with the query, best first.
pub(crate) fn memory_recall(query: &str, limit: u32) -> Result<Vec<MemoryEntry>, String> {
    let words: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
    let mut scored: Vec<(usize, MemoryEntry)> = with(|s| {
        s.memories
            .iter()
            .map(|m| {
                let text = m.text.to_lowercase();
                (
                    words.iter().filter(|w| text.contains(w.as_str())).count(),
                    m.clone(),
                )
            })
            .filter(|(score, _)| *score > 0)
            .collect()
    });
    scored.sort_by_key(|s| std::cmp::Reverse(s.0));
    Ok(scored
        .into_iter()
        .take(limit as usize)
        .map(|(_, m)| m)
        .collect())
}

pub(crate) fn cache_get(namespace: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
    Ok(with(|s| {
        s.cache.get(&(namespace.into(), key.into())).cloned()
    }))
}

pub(crate) fn cache_put(namespace: &str, key: &str, value: &[u8]) -> Result<(), String> {
    with(|s| {
        s.cache
            .insert((namespace.into(), key.into()), value.to_vec())
    });
    Ok(())
}

pub(crate) fn cache_clear(namespace: &str) -> Result<u32, String> {
    Ok(with(|s| {
        let before = s.cache.len();
        s.cache.retain(|(ns, _), _| ns != namespace);
        (before - s.cache.len()) as u32
    }))
}

pub(crate) fn rpc_register(name: &str) -> Result<(), String> {
    with(|s| {
        if s.rpcs.iter().any(|r| r == name) {
            return Err(format!("rpc `{name}` is already registered"));
        }
        s.rpcs.push(name.into());
        Ok(())
    })
}

/// RPC names registered on this test thread, in order.
pub fn registered_rpcs() -> Vec<String> {
    with(|s| s.rpcs.clone())
}
