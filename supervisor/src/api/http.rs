//! The API on a loopback TCP port, for the web console and local tools.
//!
//! Any local user can open a TCP connection, and any web page a local
//! browser shows can send requests to it, so this listener trusts nobody
//! by default:
//!
//! - the `Host` header must name a loopback address or `localhost`, so a
//!   page on another origin cannot read it through DNS rebinding;
//! - anything that changes state (every method but GET and HEAD) and every
//!   read of plugin data (KV values and keys, memory, the event stream)
//!   needs `Authorization: Bearer <token>`. The token is the config's
//!   `[api] token`, or the contents of the token file (made with 256
//!   random bits, mode 0600, when missing). A cross-site page cannot
//!   know it, and browsers do not attach it on their own.
//!
//! What is left open is what the console shows: status, metrics, logs and
//! the last RPC answers of plugins.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::error_response;
use crate::Supervisor;

/// The token as a digest: comparing digests takes the same time whatever
/// a wrong guess shares with the token.
#[derive(Clone)]
pub struct Token(Arc<[u8; 32]>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    pub fn new(token: &str) -> Self {
        Self(Arc::new(Sha256::digest(token.as_bytes()).into()))
    }

    fn matches(&self, presented: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        presented
            .iter()
            .zip(self.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// The token the HTTP listener asks for: from the config, or from the
/// token file, which is made when missing.
pub fn load_token(config: &crate::SupervisorConfig) -> Result<String, String> {
    if let Some(token) = &config.api.token {
        return Ok(token.clone());
    }
    let path = config.token_path();
    match std::fs::metadata(&path) {
        Ok(meta) => {
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(format!(
                    "{}: the API token file is readable by other users (mode {:o}); run `chmod 600 {}`",
                    path.display(),
                    meta.permissions().mode() & 0o777,
                    path.display()
                ));
            }
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("{}: cannot read the API token: {e}", path.display()))?;
            let token = text.trim().to_owned();
            crate::config_file::check_token(&token)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(token)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => make_token(&path),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Writes a new random token, readable by the owner only.
fn make_token(path: &Path) -> Result<String, String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .map_err(|e| format!("cannot read /dev/urandom for an API token: {e}"))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: cannot create the API token: {e}", path.display()))?;
    writeln!(file, "{token}").map_err(|e| format!("{}: {e}", path.display()))?;
    tracing::info!(path = %path.display(), "made a new API token");
    Ok(token)
}

/// True when the request needs the token.
pub fn needs_token(method: &Method, path: &str) -> bool {
    if method != Method::GET && method != Method::HEAD {
        return true;
    }
    let data = path.starts_with("/v1/kv/")
        || path == "/v1/memory"
        || path.starts_with("/v1/memory/")
        || path == "/v1/events/stream";
    data && path != "/v1/memory/count"
}

/// True when `host` (a Host header) names a loopback address.
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The listener's guard; see the module comment.
async fn guard(State(token): State<Token>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if !loopback_host(host) {
        return error_response(
            StatusCode::FORBIDDEN,
            format!(
                "Host {host:?} is not a loopback name; the API answers requests for 127.0.0.1, [::1] or localhost only"
            ),
            "bad_host",
        );
    }
    if needs_token(request.method(), request.uri().path()) {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "));
        if !presented.is_some_and(|p| token.matches(p)) {
            let mut response = error_response(
                StatusCode::UNAUTHORIZED,
                format!(
                    "{} {} changes state or reads plugin data: send `Authorization: Bearer <token>` (the token is in the API token file, <state>/api-token unless [api] says otherwise)",
                    request.method(),
                    request.uri().path()
                ),
                "unauthorized",
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("static"));
            return response;
        }
    }
    next.run(request).await.into_response()
}

/// Serves the API and the console on `listener` until `shutdown`.
pub async fn serve(
    supervisor: Supervisor,
    listener: tokio::net::TcpListener,
    token: Token,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = super::router(supervisor).layer(axum::middleware::from_fn_with_state(token, guard));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_changes_and_plugin_data_need_the_token() {
        for (method, path) in [
            (Method::POST, "/v1/tools/echo/call"),
            (Method::POST, "/v1/plugins/echo/release"),
            (Method::POST, "/v1/reload"),
            (Method::DELETE, "/v1/memory/abc"),
            (Method::GET, "/v1/kv/echo/value"),
            (Method::GET, "/v1/kv/echo/keys"),
            (Method::GET, "/v1/memory"),
            (Method::GET, "/v1/events/stream"),
        ] {
            assert!(needs_token(&method, path), "{method} {path}");
        }
        for path in [
            "/",
            "/metrics",
            "/v1/plugins",
            "/v1/plugins/echo",
            "/v1/memory/count",
        ] {
            assert!(!needs_token(&Method::GET, path), "{path}");
        }
    }

    #[test]
    fn only_loopback_hosts_are_served() {
        for host in [
            "127.0.0.1:8780",
            "localhost:1",
            "LOCALHOST",
            "[::1]:8780",
            "127.1.2.3",
        ] {
            assert!(loopback_host(host), "{host}");
        }
        for host in [
            "",
            "evil.example:8780",
            "10.0.0.1:8780",
            "[::2]:1",
            "localhost.evil.example",
        ] {
            assert!(!loopback_host(host), "{host}");
        }
    }

    #[test]
    fn tokens_match_only_themselves() {
        let token = Token::new("a".repeat(40).as_str());
        assert!(token.matches(&"a".repeat(40)));
        assert!(!token.matches(&"a".repeat(39)));
        assert!(!token.matches(""));
    }

    #[test]
    fn a_missing_token_file_is_made_private_and_a_shared_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::SupervisorConfig::new(dir.path().join("p"), dir.path());
        let made = load_token(&config).unwrap();
        assert_eq!(made.len(), 64);
        let path = config.token_path();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_token(&config).unwrap(), made, "read back, not remade");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_token(&config).unwrap_err();
        assert!(err.contains("chmod 600"), "{err}");
        config.api.token = Some("b".repeat(32));
        assert_eq!(load_token(&config).unwrap(), "b".repeat(32));
    }
}
