//! Endpoints that call into plugins: tools, middleware chains, providers'
//! chat, bus-module RPCs, and how a call's outcome becomes an HTTP answer.

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::{CallError, Supervisor};

use super::{CallResponse, error_response};

/// The status that says whose fault a call error is.
fn call_error_response(e: &CallError) -> Response {
    let status = match e {
        CallError::UnknownTool { .. } | CallError::NotFound { .. } => StatusCode::NOT_FOUND,
        CallError::BadRequest(_) => StatusCode::BAD_REQUEST,
        CallError::ToolFailed { .. } | CallError::Blocked { .. } | CallError::Refused { .. } => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        CallError::Busy { .. } => StatusCode::CONFLICT,
        CallError::NotRunning { .. } | CallError::ShuttingDown | CallError::Unavailable(_) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        CallError::NotInCluster { .. } => StatusCode::NOT_FOUND,
        CallError::Remote { kind, .. } => match *kind {
            "unknown_tool" | "not_found" | "not_in_cluster" => StatusCode::NOT_FOUND,
            "bad_request" => StatusCode::BAD_REQUEST,
            "tool_failed" | "blocked" | "refused" => StatusCode::UNPROCESSABLE_ENTITY,
            "busy" => StatusCode::CONFLICT,
            "not_running" | "shutting_down" | "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_GATEWAY,
        },
        _ => StatusCode::BAD_GATEWAY,
    };
    error_response(status, e.to_string(), e.kind())
}

pub(super) fn output_response(result: Result<String, CallError>) -> Response {
    match result {
        Ok(output) => Json(CallResponse { output }).into_response(),
        Err(e) => call_error_response(&e),
    }
}

pub(super) async fn middleware_chain(State(sup): State<Supervisor>) -> Response {
    let chain: Vec<_> = sup
        .middleware_chain()
        .into_iter()
        .map(|(priority, plugin)| serde_json::json!({ "priority": priority, "plugin": plugin }))
        .collect();
    Json(chain).into_response()
}

pub(super) async fn run_middleware(
    State(sup): State<Supervisor>,
    UrlPath(stage): UrlPath<String>,
    body: String,
) -> Response {
    output_response(sup.run_middleware(&stage, &body).await)
}

pub(super) async fn providers(State(sup): State<Supervisor>) -> Response {
    let list: Vec<_> = sup
        .providers()
        .into_iter()
        .map(|(name, plugin)| serde_json::json!({ "name": name, "plugin": plugin }))
        .collect();
    Json(list).into_response()
}

/// `POST /v1/providers/{name}/chat`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessageBody>,
    #[serde(default)]
    pub model: String,
    #[serde(default = "default_temperature")]
    pub temperature: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatMessageBody {
    pub role: String,
    pub content: String,
}

fn default_temperature() -> f64 {
    0.7
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ChatReply {
    pub text: Option<String>,
    pub tool_calls: Vec<ToolCallBody>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ToolCallBody {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

pub(super) async fn chat(
    State(sup): State<Supervisor>,
    UrlPath(name): UrlPath<String>,
    body: String,
) -> Response {
    let request: ChatRequest = match serde_json::from_str(&body) {
        Ok(r) => r,
        Err(e) => {
            let error = format!(
                "expected {{\"messages\": [{{\"role\": ..., \"content\": ...}}], \"model\": ..., \"temperature\": ...}}: {e}"
            );
            return error_response(StatusCode::BAD_REQUEST, error, "bad_request");
        }
    };
    let messages = request
        .messages
        .into_iter()
        .map(|m| prx_ipc::ChatMessage {
            role: m.role,
            content: m.content,
        })
        .collect();
    match sup
        .chat(&name, messages, &request.model, request.temperature)
        .await
    {
        Ok(reply) => Json(ChatReply {
            text: reply.text,
            tool_calls: reply
                .tool_calls
                .into_iter()
                .map(|t| ToolCallBody {
                    id: t.id,
                    name: t.name,
                    arguments: t.arguments,
                })
                .collect(),
        })
        .into_response(),
        Err(e) => call_error_response(&e),
    }
}

pub(super) async fn rpc_names(State(sup): State<Supervisor>) -> Response {
    let list: Vec<_> = sup
        .rpc_names()
        .into_iter()
        .map(|(name, plugin)| serde_json::json!({ "name": name, "plugin": plugin }))
        .collect();
    Json(list).into_response()
}

pub(super) async fn rpc(
    State(sup): State<Supervisor>,
    UrlPath(name): UrlPath<String>,
    body: String,
) -> Response {
    output_response(sup.rpc(&name, &body).await)
}

pub(super) async fn call_tool(
    State(sup): State<Supervisor>,
    UrlPath(name): UrlPath<String>,
    body: String,
) -> Response {
    if serde_json::from_str::<serde_json::Value>(&body).is_err() {
        let error = format!("the arguments for `{name}` are not valid JSON");
        return error_response(StatusCode::BAD_REQUEST, error, "bad_request");
    }
    output_response(sup.call_tool(&name, &body).await)
}
