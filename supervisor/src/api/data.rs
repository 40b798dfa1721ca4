//! Endpoints over the supervisor's data: a plugin's kv, the event bus
//! (counters, publishing, the live stream) and memory.

use axum::Json;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::Supervisor;

use super::error_response;

#[derive(Debug, Deserialize)]
pub(super) struct KeyQuery {
    #[serde(default)]
    key: String,
    #[serde(default)]
    prefix: String,
}

/// A kv value: as text when it is UTF-8, always as hex.
#[derive(Debug, Serialize, Deserialize)]
pub struct KvValue {
    pub found: bool,
    pub text: Option<String>,
    pub hex: String,
}

pub(super) async fn kv_keys(
    State(sup): State<Supervisor>,
    UrlPath(plugin): UrlPath<String>,
    Query(q): Query<KeyQuery>,
) -> Response {
    match sup.kv_keys(&plugin, &q.prefix).await {
        Ok(keys) => Json(keys).into_response(),
        Err(error) => error_response(StatusCode::INTERNAL_SERVER_ERROR, error, "kv"),
    }
}

pub(super) async fn kv_value(
    State(sup): State<Supervisor>,
    UrlPath(plugin): UrlPath<String>,
    Query(q): Query<KeyQuery>,
) -> Response {
    match sup.kv_read(&plugin, &q.key).await {
        Ok(value) => {
            let bytes = value.as_deref().unwrap_or_default();
            Json(KvValue {
                found: value.is_some(),
                text: std::str::from_utf8(bytes).ok().map(str::to_owned),
                hex: bytes.iter().map(|b| format!("{b:02x}")).collect(),
            })
            .into_response()
        }
        Err(error) => error_response(StatusCode::INTERNAL_SERVER_ERROR, error, "kv"),
    }
}

/// The bus: events published and every subscriber's counters.
#[derive(Debug, Serialize, Deserialize)]
pub struct EventStats {
    pub published: u64,
    /// Events that reached no plugin: their causal chain was too long.
    #[serde(default)]
    pub too_deep: u64,
    pub subscribers: Vec<crate::services::events::SubscriberStats>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Published {
    pub seq: u64,
}

pub(super) async fn event_stats(State(sup): State<Supervisor>) -> Json<EventStats> {
    Json(EventStats {
        published: sup.events_published(),
        too_deep: sup.events_too_deep(),
        subscribers: sup.event_stats(),
    })
}

pub(super) async fn publish(
    State(sup): State<Supervisor>,
    UrlPath(topic): UrlPath<String>,
    payload: String,
) -> Response {
    match sup.publish(&topic, &payload) {
        Ok(seq) => Json(Published { seq }).into_response(),
        Err(e) => error_response(StatusCode::BAD_REQUEST, e.to_string(), "bad_event"),
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct StoreMemory {
    pub text: String,
    #[serde(default)]
    pub category: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Stored {
    pub id: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct RecallQuery {
    query: String,
    #[serde(default = "default_recall_limit")]
    limit: u32,
}

fn default_recall_limit() -> u32 {
    5
}

pub(super) async fn store_memory(State(sup): State<Supervisor>, body: String) -> Response {
    let request: StoreMemory = match serde_json::from_str(&body) {
        Ok(request) => request,
        Err(e) => {
            let error = format!("expected {{\"text\": ..., \"category\": ...}}: {e}");
            return error_response(StatusCode::BAD_REQUEST, error, "bad_request");
        }
    };
    match sup.store_memory(&request.text, &request.category).await {
        Ok(id) => Json(Stored { id }).into_response(),
        Err(error) => error_response(StatusCode::BAD_REQUEST, error, "memory"),
    }
}

pub(super) async fn recall_memory(
    State(sup): State<Supervisor>,
    Query(q): Query<RecallQuery>,
) -> Response {
    match sup.recall_memory(&q.query, q.limit).await {
        Ok(found) => Json(found).into_response(),
        Err(error) => error_response(StatusCode::SERVICE_UNAVAILABLE, error, "memory"),
    }
}

pub(super) async fn forget_memory(
    State(sup): State<Supervisor>,
    UrlPath(id): UrlPath<String>,
) -> Response {
    match sup.forget_memory(&id).await {
        Ok(found) => Json(serde_json::json!({ "forgotten": found })).into_response(),
        Err(error) => error_response(StatusCode::SERVICE_UNAVAILABLE, error, "memory"),
    }
}

pub(super) async fn count_memories(State(sup): State<Supervisor>) -> Response {
    match sup.count_memories().await {
        Ok(count) => Json(serde_json::json!({ "count": count, "backend": sup.memory_backend() }))
            .into_response(),
        Err(error) => error_response(StatusCode::SERVICE_UNAVAILABLE, error, "memory"),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct StreamQuery {
    #[serde(default = "all_events")]
    pattern: String,
}

fn all_events() -> String {
    "*".into()
}

/// One event as `prx events tail` prints it: a JSON line each.
#[derive(Debug, Serialize, Deserialize)]
pub struct StreamedEvent {
    pub seq: u64,
    pub topic: String,
    pub payload: serde_json::Value,
    pub source: Option<String>,
    pub published_at_ms: u64,
    pub chain: Vec<String>,
}

/// Events matching `pattern` as they are published, one JSON object per
/// line, until the client goes away.
pub(super) async fn event_stream(
    State(sup): State<Supervisor>,
    Query(q): Query<StreamQuery>,
) -> Response {
    let subscription = match sup.subscribe(&q.pattern) {
        Ok(s) => s,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, e.to_string(), "bad_request"),
    };
    let lines = futures_util::stream::unfold(subscription, |mut sub| async move {
        let event = sub.recv().await?;
        let line = StreamedEvent {
            seq: event.seq,
            topic: event.topic.to_string(),
            payload: serde_json::from_str(&event.payload).unwrap_or(serde_json::Value::Null),
            source: event.source.map(|s| s.to_string()),
            published_at_ms: event.published_at_ms,
            chain: event.chain.iter().map(|p| p.to_string()).collect(),
        };
        let mut text = serde_json::to_string(&line).unwrap_or_default();
        text.push('\n');
        Some((Ok::<_, std::convert::Infallible>(text), sub))
    });
    Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(axum::body::Body::from_stream(lines))
        .unwrap_or_else(|e| {
            error_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), "internal")
        })
}
