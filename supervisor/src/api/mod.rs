//! The local API: JSON over HTTP/1.1 on a Unix socket in the state
//! directory (mode 0600, so only the operator's user can use it).
//!
//! Everything the `prx` CLI does goes through here. Request bodies are
//! capped; errors come back as `{"error": ..., "kind": ...}` with a status
//! that says whose fault it was.

pub mod client;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::{CallError, Supervisor};

/// Largest request body: tool arguments are JSON meant for an LLM tool,
/// a few KiB in practice; 1 MiB leaves room and bounds memory.
pub const MAX_REQUEST_BODY: usize = 1 << 20;

#[derive(Debug, Serialize, Deserialize)]
pub struct CallResponse {
    pub output: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub kind: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Health {
    pub running: usize,
    pub plugins: usize,
}

pub fn router(supervisor: Supervisor) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/plugins", get(plugins))
        .route("/v1/tools", get(tools))
        .route("/v1/tools/{name}/call", post(call_tool))
        .route("/v1/plugins/{name}/release", post(release))
        .route("/v1/kv/{plugin}/keys", get(kv_keys))
        .route("/v1/kv/{plugin}/value", get(kv_value))
        .route("/v1/events", get(event_stats))
        .route("/v1/events/{topic}", post(publish))
        .route("/v1/memory", get(recall_memory).post(store_memory))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY))
        .with_state(supervisor)
}

/// Binds the socket (replacing a stale one) with mode 0600 and serves until
/// `shutdown` resolves.
pub async fn serve_unix(
    supervisor: Supervisor,
    path: PathBuf,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if path.exists() {
        if tokio::net::UnixStream::connect(&path).await.is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("another prx is serving on {}", path.display()),
            ));
        }
        std::fs::remove_file(&path)?;
    }
    let listener = tokio::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    axum::serve(listener, router(supervisor))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn health(State(sup): State<Supervisor>) -> Json<Health> {
    Json(Health {
        running: sup.running(),
        plugins: sup.plugins().len(),
    })
}

async fn plugins(State(sup): State<Supervisor>) -> Json<Vec<crate::PluginStatus>> {
    Json(sup.plugins())
}

async fn tools(State(sup): State<Supervisor>) -> Json<Vec<crate::ToolInfo>> {
    Json(sup.tools())
}

#[derive(Debug, Deserialize)]
struct KeyQuery {
    #[serde(default)]
    key: String,
    #[serde(default)]
    prefix: String,
}

/// An error answer: `{"error": ..., "kind": ...}` with `status`.
fn error_response(status: StatusCode, error: String, kind: &str) -> Response {
    let body = ErrorBody {
        error,
        kind: kind.into(),
    };
    (status, Json(body)).into_response()
}

/// A kv value: as text when it is UTF-8, always as hex.
#[derive(Debug, Serialize, Deserialize)]
pub struct KvValue {
    pub found: bool,
    pub text: Option<String>,
    pub hex: String,
}

async fn kv_keys(
    State(sup): State<Supervisor>,
    UrlPath(plugin): UrlPath<String>,
    Query(q): Query<KeyQuery>,
) -> Response {
    match sup.kv_list(&plugin, &q.prefix) {
        Ok(keys) => Json(keys).into_response(),
        Err(error) => error_response(StatusCode::INTERNAL_SERVER_ERROR, error, "kv"),
    }
}

async fn kv_value(
    State(sup): State<Supervisor>,
    UrlPath(plugin): UrlPath<String>,
    Query(q): Query<KeyQuery>,
) -> Response {
    match sup.kv_get(&plugin, &q.key) {
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
    pub subscribers: Vec<crate::broker::events::SubscriberStats>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Published {
    pub seq: u64,
}

async fn event_stats(State(sup): State<Supervisor>) -> Json<EventStats> {
    Json(EventStats {
        published: sup.events_published(),
        subscribers: sup.event_stats(),
    })
}

async fn publish(
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
struct RecallQuery {
    query: String,
    #[serde(default = "default_recall_limit")]
    limit: u32,
}

fn default_recall_limit() -> u32 {
    5
}

async fn store_memory(State(sup): State<Supervisor>, body: String) -> Response {
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

async fn recall_memory(State(sup): State<Supervisor>, Query(q): Query<RecallQuery>) -> Response {
    match sup.recall_memory(&q.query, q.limit) {
        Ok(found) => Json(found).into_response(),
        Err(error) => error_response(StatusCode::INTERNAL_SERVER_ERROR, error, "memory"),
    }
}

async fn release(State(sup): State<Supervisor>, UrlPath(name): UrlPath<String>) -> Response {
    match sup.release(&name).await {
        Ok(()) => Json(serde_json::json!({ "released": name })).into_response(),
        Err(error) => error_response(StatusCode::CONFLICT, error, "not_released"),
    }
}

async fn call_tool(
    State(sup): State<Supervisor>,
    UrlPath(name): UrlPath<String>,
    body: String,
) -> Response {
    if serde_json::from_str::<serde_json::Value>(&body).is_err() {
        let error = format!("the arguments for `{name}` are not valid JSON");
        return error_response(StatusCode::BAD_REQUEST, error, "bad_request");
    }
    match sup.call_tool(&name, &body).await {
        Ok(output) => Json(CallResponse { output }).into_response(),
        Err(e) => {
            let status = match &e {
                CallError::UnknownTool { .. } => StatusCode::NOT_FOUND,
                CallError::ToolFailed { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                CallError::NotRunning { .. } | CallError::ShuttingDown => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                _ => StatusCode::BAD_GATEWAY,
            };
            error_response(status, e.to_string(), e.kind())
        }
    }
}
