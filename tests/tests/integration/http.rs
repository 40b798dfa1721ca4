//! http-outbound through real workers against an HTTP server on loopback
//! that this test runs: what the allowlist lets through works, and every
//! way around it is refused with the plugin's name and the rule.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use common::{Env, tool_manifest};
use prx_supervisor::Supervisor;
use serde_json::{Value, json};

/// A small HTTP/1.1 server: one thread per connection, answers by path.
fn serve() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let port = listener.local_addr().expect("its address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || answer(stream, port));
        }
    });
    port
}

fn answer(mut stream: TcpStream, port: u16) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut first = String::new();
    let _ = reader.read_line(&mut first);
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(n) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = n.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    let _ = std::io::Read::read_exact(&mut reader, &mut body);
    let path = first.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let redirect = |to: &str| {
        format!(
            "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
    };
    let reply = match path.as_str() {
        "/ok" | "/v2/ok" => {
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello".to_owned()
        }
        "/redirect-ok" => redirect("/ok"),
        "/status.json" => {
            let json = r#"{"healthy":true}"#;
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
                json.len()
            )
        }
        // Echoes what was posted.
        "/notes" => format!(
            "HTTP/1.1 201 Created\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
            body.len(),
            String::from_utf8_lossy(&body)
        ),
        "/redirect-away" => redirect(&format!("http://127.0.0.1:{}/ok", port + 1)),
        "/redirect-metadata" => redirect("http://169.254.169.254/latest/meta-data/"),
        "/big" => {
            // 100 MiB, no length announced: only streaming can cut it.
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
            let chunk = vec![b'x'; 1 << 20];
            for _ in 0..100 {
                if stream.write_all(&chunk).is_err() {
                    return;
                }
            }
            return;
        }
        "/silent" => {
            std::thread::sleep(Duration::from_secs(30));
            return;
        }
        _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned(),
    };
    let _ = stream.write_all(reply.as_bytes());
}

async fn start(
    env: &Env,
    allowlist: &[String],
    extra: &str,
    configure: impl FnOnce(&mut prx_supervisor::SupervisorConfig),
) -> Supervisor {
    let list = allowlist
        .iter()
        .map(|e| format!("{e:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    env.add(
        "http-tool",
        "http-tool",
        &tool_manifest(
            "http-tool",
            "http",
            &format!(
                "[permissions]\nrequired = [\"http-outbound\"]\nhttp_allowlist = [{list}]\n\n[resources]\n{extra}"
            ),
        ),
    );
    let mut config = env.config();
    config.ephemeral_kv = true;
    configure(&mut config);
    let sup = Supervisor::start(config).await.expect("start");
    assert_eq!(sup.running(), 1, "{:?}", sup.failures());
    sup
}

async fn call(sup: &Supervisor, args: Value) -> Value {
    let out = sup
        .call_tool("http", &args.to_string())
        .await
        .expect("call");
    serde_json::from_str(&out).expect("json")
}

/// Loopback is refused unless the operator allows it: here, the test
/// server is on it.
fn allow_loopback(config: &mut prx_supervisor::SupervisorConfig) {
    config.http.allowed_ranges = vec!["127.0.0.0/8".parse().expect("a range")];
}

fn refused(outcome: &Value, words: &str) {
    let err = outcome["err"].as_str().unwrap_or_default();
    assert!(
        err.contains("plugin `http-tool`") && err.contains(words),
        "expected a refusal with {words:?}, got {outcome}"
    );
}

#[tokio::test]
async fn allowed_urls_work_and_every_bypass_is_refused() {
    let port = serve();
    let origin = format!("http://127.0.0.1:{port}");
    let env = Env::new();
    let sup = start(
        &env,
        &[format!("{origin}/v2/"), format!("{origin}/ok")],
        "",
        allow_loopback,
    )
    .await;

    let ok = call(&sup, json!({"url": format!("{origin}/v2/ok")})).await;
    assert_eq!(ok["ok"]["status"], 200, "{ok}");
    assert_eq!(ok["ok"]["body"], "hello");
    // Same host in another notation, same origin: allowed.
    let hex = call(&sup, json!({"url": format!("http://0x7f.0.0.1:{port}/ok")})).await;
    assert_eq!(hex["ok"]["status"], 200, "{hex}");
    // Dot segments are resolved before the check: this is /redirect-ok,
    // which is not listed.
    let hop = call(&sup, json!({"url": format!("{origin}/v2/../redirect-ok")})).await;
    refused(&hop, "is not in http_allowlist");
    let post = call(
        &sup,
        json!({"url": format!("{origin}/ok"), "method": "POST", "body": "x"}),
    )
    .await;
    assert_eq!(post["ok"]["status"], 200, "{post}");

    for (url, words) in [
        (
            format!("http://allowed@127.0.0.1:{port}/ok"),
            "user name or password",
        ),
        (
            format!("http://127.0.0.1:{port}@evil.test/ok"),
            "user name or password",
        ),
        (
            format!("http://127.0.0.1.evil.test:{port}/ok"),
            "is not in http_allowlist",
        ),
        // A last label that looks numeric makes the host an IPv4 literal,
        // and this one is not a valid address.
        (format!("http://x127.0.0.1:{port}/ok"), "is not a valid URL"),
        (
            format!("http://xlocalhost:{port}/ok"),
            "is not in http_allowlist",
        ),
        (format!("{origin}/v2x/ok"), "is not in http_allowlist"),
        (format!("{origin}/v2/../admin"), "is not in http_allowlist"),
        (
            format!("{origin}/v2/%2e%2e/admin"),
            "is not in http_allowlist",
        ),
        (
            format!("{origin}/v2/%2E%2E/admin"),
            "is not in http_allowlist",
        ),
        (
            format!("http://127.0.0.1:{}/ok", port + 1),
            "is not in http_allowlist",
        ),
        (
            format!("https://127.0.0.1:{port}/ok"),
            "is not in http_allowlist",
        ),
        ("file:///etc/passwd".to_owned(), "only http and https"),
        ("gopher://127.0.0.1/".to_owned(), "only http and https"),
        ("ftp://127.0.0.1/".to_owned(), "only http and https"),
    ] {
        refused(&call(&sup, json!({ "url": url })).await, words);
    }
    let bad_method = call(
        &sup,
        json!({"url": format!("{origin}/ok"), "method": "CONNECT"}),
    )
    .await;
    refused(
        &bad_method,
        "is not one of GET, HEAD, POST, PUT, PATCH, DELETE",
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn redirects_are_followed_only_to_allowed_hops() {
    let port = serve();
    let origin = format!("http://127.0.0.1:{port}");
    let env = Env::new();
    let sup = start(&env, std::slice::from_ref(&origin), "", allow_loopback).await;
    let followed = call(&sup, json!({"url": format!("{origin}/redirect-ok")})).await;
    assert_eq!(followed["ok"]["body"], "hello", "{followed}");
    let away = call(&sup, json!({"url": format!("{origin}/redirect-away")})).await;
    refused(
        &away,
        &format!("redirect to http://127.0.0.1:{}/ok refused", port + 1),
    );
    let metadata = call(&sup, json!({"url": format!("{origin}/redirect-metadata")})).await;
    refused(
        &metadata,
        "redirect to http://169.254.169.254/latest/meta-data/ refused",
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn loopback_is_refused_unless_the_operator_allows_it() {
    let port = serve();
    let env = Env::new();
    let sup = start(
        &env,
        &[
            format!("http://127.0.0.1:{port}"),
            format!("http://localhost:{port}"),
        ],
        "",
        |_| {},
    )
    .await;
    // Listed, but loopback: refused as an address, by literal and by name.
    let literal = call(&sup, json!({"url": format!("http://127.0.0.1:{port}/ok")})).await;
    refused(
        &literal,
        "127.0.0.1 is loopback, which plugins may not reach",
    );
    let named = call(&sup, json!({"url": format!("http://localhost:{port}/ok")})).await;
    refused(&named, "which plugins may not reach");
    sup.shutdown().await;
}

#[tokio::test]
async fn requests_are_counted_bodies_capped_and_silence_cut_at_the_deadline() {
    let port = serve();
    let origin = format!("http://127.0.0.1:{port}");
    let env = Env::new();
    let sup = start(
        &env,
        std::slice::from_ref(&origin),
        "max_http_requests = 10\n",
        |config| {
            allow_loopback(config);
            config.http.timeout = Duration::from_secs(1);
        },
    )
    .await;
    let outcomes = call(&sup, json!({"url": format!("{origin}/ok"), "times": 11})).await;
    let outcomes: Vec<String> = serde_json::from_value(outcomes).unwrap();
    assert!(outcomes[..10].iter().all(|o| o == "ok"), "{outcomes:?}");
    assert!(
        outcomes[10].contains("request 11 of this invocation refused: max_http_requests = 10"),
        "{}",
        outcomes[10]
    );
    // The count is per invocation: the next call may make requests again.
    let again = call(&sup, json!({"url": format!("{origin}/ok")})).await;
    assert_eq!(again["ok"]["status"], 200, "{again}");

    // The supervisor is this process: its resident memory must not take
    // in the 100 MiB (it stops reading at the cap).
    let rss_kib = || {
        std::fs::read_to_string("/proc/self/status")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = rss_kib();
    let big = call(&sup, json!({"url": format!("{origin}/big")})).await;
    refused(&big, "response body larger than 4194304 bytes (the limit)");
    let grew = rss_kib().saturating_sub(before);
    assert!(grew < 48 * 1024, "resident memory grew by {grew} KiB");

    let silent = call(&sup, json!({"url": format!("{origin}/silent")})).await;
    refused(&silent, "no answer within 1000 ms");
    sup.shutdown().await;
}

#[tokio::test]
async fn the_example_fetches_and_posts_through_the_supervisor() {
    let port = serve();
    let env = Env::new();
    // The example's manifest, pointed at this test's server.
    let manifest = std::fs::read_to_string(
        std::path::Path::new(env!("PRX_ROOT")).join("plugins/examples/http-fetch/plugin.toml"),
    )
    .expect("the example's manifest")
    .replace("127.0.0.1:18080", &format!("127.0.0.1:{port}"));
    env.add("http-fetch", "http-fetch", &manifest);
    let mut config = env.config();
    config.ephemeral_kv = true;
    allow_loopback(&mut config);
    let sup = Supervisor::start(config).await.expect("start");
    assert_eq!(sup.running(), 1, "{:?}", sup.failures());
    assert_eq!(
        sup.call_tool("fetch", r#"{"path":"/status.json"}"#)
            .await
            .expect("get"),
        r#"{"healthy":true}"#
    );
    assert_eq!(
        sup.call_tool("fetch", r#"{"path":"/notes","post":{"text":"hi"}}"#)
            .await
            .expect("post"),
        r#"{"text":"hi"}"#
    );
    let missing = sup
        .call_tool("fetch", r#"{"path":"/nothing-here"}"#)
        .await
        .expect_err("a 404");
    assert!(missing.to_string().contains("answered 404"), "{missing}");
    sup.shutdown().await;
}
