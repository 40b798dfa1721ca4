//! The local API: JSON over HTTP/1.1 on a Unix socket in the state
//! directory (mode 0600 by default, so only the operator's user can use
//! it), and optionally on a loopback TCP port for the web console, where
//! a bearer token guards everything that changes state or reads plugin
//! data (see [`http`]).
//!
//! Everything the `prx` CLI does goes through here. Request bodies are
//! capped; errors come back as `{"error": ..., "kind": ...}` with a status
//! that says whose fault it was. `/v1/openapi.json` describes every route.

mod calls;
pub mod client;
pub mod console;
mod data;
pub mod exposition;
pub mod http;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::Supervisor;
pub use calls::{ChatMessageBody, ChatReply, ChatRequest, ToolCallBody};
use calls::{
    call_tool, chat, middleware_chain, output_response, providers, rpc, rpc_names, run_middleware,
};
pub use data::{EventStats, KvValue, Published, StoreMemory, Stored};
use data::{
    count_memories, event_stats, event_stream, forget_memory, kv_keys, kv_value, publish,
    recall_memory, store_memory,
};

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

/// The cluster as this node sees it: nodes, their plugins and health,
/// and what crossed between them.
async fn cluster(State(sup): State<Supervisor>) -> Response {
    match sup.cluster_view() {
        Some(view) => Json(view).into_response(),
        None => error_response(
            StatusCode::NOT_FOUND,
            "this supervisor runs alone: start it with `prx up --cluster nats://HOST:PORT` or a [cluster] table to join a cluster".into(),
            "not_in_cluster",
        ),
    }
}

/// The OpenAPI document of this API, served at `/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

pub fn router(supervisor: Supervisor) -> Router {
    let limit = supervisor.config().api.max_request_bytes;
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .route("/v1/plugins", get(plugins))
        .route("/v1/plugins/{name}", get(plugin_detail))
        .route("/v1/tools", get(tools))
        .route("/v1/tools/{name}/call", post(call_tool))
        .route("/v1/plugins/{name}/release", post(release))
        .route("/v1/reload", post(reload_all))
        .route("/v1/prepare", post(prepare))
        .route("/v1/plugins/{name}/reload", post(reload_one))
        .route("/v1/kv/{plugin}/keys", get(kv_keys))
        .route("/v1/kv/{plugin}/value", get(kv_value))
        .route("/v1/events", get(event_stats))
        .route("/v1/events/{topic}", post(publish))
        .route("/v1/events/stream", get(event_stream))
        .route("/v1/memory", get(recall_memory).post(store_memory))
        .route("/v1/memory/count", get(count_memories))
        .route("/v1/memory/{id}", delete(forget_memory))
        .route("/v1/middleware", get(middleware_chain))
        .route("/v1/middleware/{stage}", post(run_middleware))
        .route("/v1/providers", get(providers))
        .route("/v1/providers/{name}/chat", post(chat))
        .route("/v1/rpc", get(rpc_names))
        .route("/v1/rpc/{name}", post(rpc))
        .route("/v1/modules", get(modules))
        .route("/v1/cron", get(cron_jobs))
        .route("/v1/cluster", get(cluster))
        .route("/v1/cron/{plugin}/run", post(run_cron))
        .merge(console::routes())
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            limit,
            refuse_oversized,
        ))
        .with_state(supervisor)
}

/// Declared bodies up to this size are read and dropped before the 413
/// goes out; larger ones are refused unread and the connection closed.
const DRAIN_LIMIT: u64 = 64 << 20;

/// Refuses a body whose declared length is over the limit with a 413 that
/// names the setting. The body is read first (up to [`DRAIN_LIMIT`], for
/// at most 10 s) and dropped: answering while the client is still writing
/// and then closing would cut it off mid-write, and it would report a
/// broken connection instead of this answer. Bodies without a declared
/// length are held to the limit by [`DefaultBodyLimit`] as they are read.
async fn refuse_oversized(
    State(limit): State<usize>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use http_body_util::BodyExt;
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let Some(declared) = declared.filter(|&n| n > limit as u64) else {
        return next.run(request).await;
    };
    let mut response = error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the request body is {declared} bytes, over the API's limit of {limit} bytes ([api] max_request_kb in the supervisor's prx.toml)"
        ),
        "too_large",
    );
    if declared <= DRAIN_LIMIT {
        let mut body = request.into_body();
        let drain = async { while let Some(Ok(_)) = body.frame().await {} };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), drain).await;
    } else {
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// Binds the socket (replacing a stale one) with the configured mode
/// (0600 unless the operator widened it) and serves until `shutdown`
/// resolves.
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
    let mode = supervisor.config().api.socket_mode;
    let listener = tokio::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
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

async fn plugin_detail(State(sup): State<Supervisor>, UrlPath(name): UrlPath<String>) -> Response {
    match sup.plugin_detail(&name).await {
        Some(detail) => Json(detail).into_response(),
        None => error_response(
            StatusCode::NOT_FOUND,
            format!("no plugin `{name}` (see `prx plugins`)"),
            "unknown_plugin",
        ),
    }
}

async fn openapi() -> Response {
    ([("content-type", "application/json")], OPENAPI).into_response()
}

async fn metrics(State(sup): State<Supervisor>) -> Response {
    (
        [("content-type", exposition::CONTENT_TYPE)],
        exposition::render(&sup),
    )
        .into_response()
}

async fn tools(State(sup): State<Supervisor>) -> Json<Vec<crate::ToolInfo>> {
    Json(sup.tools())
}

/// An error answer: `{"error": ..., "kind": ...}` with `status`.
fn error_response(status: StatusCode, error: String, kind: &str) -> Response {
    let body = ErrorBody {
        error,
        kind: kind.into(),
    };
    (status, Json(body)).into_response()
}

async fn modules(State(sup): State<Supervisor>) -> Response {
    Json(sup.describe_modules().await).into_response()
}

async fn cron_jobs(State(sup): State<Supervisor>) -> Response {
    Json(sup.cron_jobs()).into_response()
}

async fn run_cron(State(sup): State<Supervisor>, UrlPath(plugin): UrlPath<String>) -> Response {
    output_response(sup.run_cron(&plugin).await)
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PrepareRequest {
    /// A hidden directory directly under the plugins directory.
    pub dir: PathBuf,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Prepared {
    pub plugin: String,
    pub version: String,
    pub compile_ms: u64,
}

/// Compiles a staged plugin and checks that it starts, without loading it.
async fn prepare(State(sup): State<Supervisor>, Json(request): Json<PrepareRequest>) -> Response {
    match sup.prepare_staged(&request.dir).await {
        Ok((plugin, version, compile_ms)) => Json(Prepared {
            plugin,
            version,
            compile_ms,
        })
        .into_response(),
        Err(error) => error_response(StatusCode::UNPROCESSABLE_ENTITY, error, "not_prepared"),
    }
}

/// Applies what changed in the plugins directory.
async fn reload_all(State(sup): State<Supervisor>) -> Response {
    match sup.reload(None).await {
        Ok(outcomes) => Json(outcomes).into_response(),
        Err(error) => error_response(StatusCode::CONFLICT, error, "not_reloaded"),
    }
}

/// Reloads one plugin from its files, changed or not.
async fn reload_one(State(sup): State<Supervisor>, UrlPath(name): UrlPath<String>) -> Response {
    match sup.reload(Some(&name)).await {
        Ok(outcomes) => Json(outcomes).into_response(),
        Err(error) => error_response(StatusCode::NOT_FOUND, error, "unknown_plugin"),
    }
}

async fn release(State(sup): State<Supervisor>, UrlPath(name): UrlPath<String>) -> Response {
    match sup.release(&name).await {
        Ok(()) => Json(serde_json::json!({ "released": name })).into_response(),
        Err(error) => error_response(StatusCode::CONFLICT, error, "not_released"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The routes this module declares, read from its own source: a route
    /// added without documenting it (or documented and gone) fails here.
    fn declared_routes() -> Vec<(String, String)> {
        let source = include_str!("mod.rs");
        let mut out = Vec::new();
        for line in source.lines().map(str::trim) {
            let Some(rest) = line.strip_prefix(".route(\"") else {
                continue;
            };
            let Some((path, handlers)) = rest.split_once('"') else {
                continue;
            };
            for method in ["get", "post", "delete"] {
                if handlers.contains(&format!(" {method}("))
                    || handlers.contains(&format!(".{method}("))
                {
                    out.push((method.to_owned(), path.to_owned()));
                }
            }
        }
        out
    }

    #[test]
    fn the_openapi_document_describes_every_route_and_no_other() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("valid JSON");
        let paths = doc["paths"].as_object().expect("paths");
        let mut documented: Vec<(String, String)> = paths
            .iter()
            .flat_map(|(path, ops)| {
                ops.as_object()
                    .expect("operations")
                    .keys()
                    .map(move |method| (method.clone(), path.clone()))
            })
            .collect();
        let mut declared = declared_routes();
        assert!(declared.len() > 20, "the route scan found {declared:?}");
        documented.sort();
        declared.sort();
        assert_eq!(documented, declared);
    }

    #[test]
    fn the_openapi_document_marks_exactly_the_guarded_operations() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("valid JSON");
        for (path, ops) in doc["paths"].as_object().expect("paths") {
            for (method, op) in ops.as_object().expect("operations") {
                let marked = !op["security"].as_array().expect("security").is_empty();
                let method: axum::http::Method = method.to_uppercase().parse().expect("method");
                // A concrete path for the templated ones.
                let concrete = path.replace("{plugin}", "p").replace("{name}", "n");
                assert_eq!(
                    marked,
                    http::needs_token(&method, &concrete),
                    "{method} {path}"
                );
            }
        }
    }
}
