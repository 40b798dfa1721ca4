//! A small client for the local API, used by the `prx` CLI.

use std::path::Path;

use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the supervisor at {path}: {source} (is `prx up` running with this --state?)"
    )]
    Connect {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the local API failed: {0}")]
    Http(String),
}

/// A response: status code and body text.
#[derive(Debug)]
pub struct ApiResponse {
    pub status: u16,
    pub body: String,
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

fn http(e: &dyn std::fmt::Display) -> ClientError {
    ClientError::Http(e.to_string())
}

/// An HTTP/1 connection over the Unix socket.
async fn connect(socket: &Path) -> Result<Sender, ClientError> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|source| ClientError::Connect {
            path: socket.display().to_string(),
            source,
        })?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| http(&e))?;
    tokio::spawn(conn);
    Ok(sender)
}

/// Sends one request over the Unix socket.
pub async fn request(
    socket: &Path,
    method: &str,
    uri: &str,
    body: Option<String>,
) -> Result<ApiResponse, ClientError> {
    let mut sender = connect(socket).await?;
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "prx")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| http(&e))?;
    let response = sender.send_request(request).await.map_err(|e| http(&e))?;
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| http(&e))?
        .to_bytes();
    Ok(ApiResponse {
        status,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

/// Sends a GET whose answer streams: calls `line` with each line of the
/// body as it arrives, until the server ends it or `line` returns false.
/// Returns the status and, when it is not 200, the body.
pub async fn stream_lines(
    socket: &Path,
    uri: &str,
    mut line: impl FnMut(&str) -> bool,
) -> Result<ApiResponse, ClientError> {
    let mut sender = connect(socket).await?;
    let request = Request::builder()
        .method("GET")
        .uri(uri)
        .header("host", "prx")
        .body(Full::new(Bytes::new()))
        .map_err(|e| http(&e))?;
    let response = sender.send_request(request).await.map_err(|e| http(&e))?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut pending: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| http(&e))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        if status != 200 {
            continue;
        }
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let text = String::from_utf8_lossy(&pending[..end]).into_owned();
            pending.drain(..=end);
            if !line(&text) {
                return Ok(ApiResponse {
                    status,
                    body: String::new(),
                });
            }
        }
    }
    Ok(ApiResponse {
        status,
        body: String::from_utf8_lossy(&pending).into_owned(),
    })
}
