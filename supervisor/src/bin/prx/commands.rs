//! The commands that talk to a running daemon over its local API:
//! status, calls, kv, events, memory, logs, chat, modules, cron, reload and
//! release, each printing what an operator reads.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

use prx_supervisor::PluginStatus;
use prx_supervisor::api::{self, CallResponse, ErrorBody, client};
use prx_supervisor::plugin::{CodeOrigin, LayerState};

use super::cli::{KvCommand, MemoryCommand};

/// Prints an error answer of the local API; exit code 1.
pub(super) fn api_error(body: String) -> ExitCode {
    let message = serde_json::from_str::<ErrorBody>(&body)
        .map(|e| e.error)
        .unwrap_or(body);
    eprintln!("prx: {message}");
    ExitCode::FAILURE
}

/// The plugin list, or `None` once it was printed as JSON.
async fn fetch_plugins(state: &std::path::Path, json: bool) -> Result<Option<Vec<PluginStatus>>> {
    let response = client::request(&socket(state), "GET", "/v1/plugins", None).await?;
    if json {
        println!("{}", response.body);
        return Ok(None);
    }
    let plugins = serde_json::from_str(&response.body)
        .with_context(|| format!("unexpected answer: {}", response.body))?;
    Ok(Some(plugins))
}

pub(super) fn socket(state: &std::path::Path) -> PathBuf {
    state.join("prx.sock")
}

pub(super) async fn call(tool: &str, args: String, state: PathBuf) -> Result<ExitCode> {
    post_output(&state, &format!("/v1/tools/{tool}/call"), args).await
}

/// POSTs `body` and prints the `output` of the answer.
pub(super) async fn post_output(
    state: &std::path::Path,
    uri: &str,
    body: String,
) -> Result<ExitCode> {
    let response = client::request(&socket(state), "POST", uri, Some(body)).await?;
    if response.status == 200 {
        let ok: CallResponse = serde_json::from_str(&response.body)
            .with_context(|| format!("unexpected answer: {}", response.body))?;
        println!("{}", ok.output);
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(api_error(response.body))
    }
}

pub(super) async fn status(state: PathBuf, json: bool) -> Result<ExitCode> {
    let Some(plugins) = fetch_plugins(&state, json).await? else {
        return Ok(ExitCode::SUCCESS);
    };
    println!(
        "{:<20} {:<24} {:>8} {:>8} {:>10} {:<10} LAST EXIT",
        "NAME", "STATE", "PID", "RESTARTS", "UPTIME", "SANDBOX"
    );
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    for p in &plugins {
        let pid = p.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        let uptime = p
            .uptime_ms
            .map(human_duration)
            .unwrap_or_else(|| "-".into());
        let state = match p.restart_at_ms {
            Some(at) => format!(
                "{} ({} left)",
                p.state,
                human_duration(at.saturating_sub(now_ms))
            ),
            None => p.state.to_string(),
        };
        // Sandbox layers: the count applied (the worker's start-up steps
        // aside), details below for any that are not.
        let layers: Vec<&(String, LayerState)> = p
            .sandbox
            .iter()
            .filter(|(layer, _)| is_layer(layer))
            .collect();
        let applied = layers
            .iter()
            .filter(|(_, s)| *s == LayerState::Applied)
            .count();
        let sandbox = if layers.is_empty() {
            "-".to_owned()
        } else {
            format!("{applied}/{}", layers.len())
        };
        println!(
            "{:<20} {:<24} {:>8} {:>8} {:>10} {:<10} {}",
            p.name,
            state,
            pid,
            p.restarts,
            uptime,
            sandbox,
            p.last_exit.as_deref().unwrap_or("-")
        );
    }
    for p in &plugins {
        for (layer, status) in p
            .sandbox
            .iter()
            .filter(|(l, s)| is_layer(l) && *s != LayerState::Applied)
        {
            println!("\n{}: sandbox layer {layer} {status}", p.name);
        }
    }
    for p in plugins
        .iter()
        .filter(|p| p.code == Some(CodeOrigin::Copied))
    {
        println!(
            "\n{}: its cached code could not be mapped executable and was copied (is the state directory on a noexec mount?); every start pays for the copy",
            p.name
        );
    }
    for p in plugins.iter().filter(|p| p.error.is_some()) {
        println!("\n{}: {}", p.name, p.error.as_deref().unwrap_or_default());
    }
    print_reload_errors(&plugins);
    Ok(ExitCode::SUCCESS)
}

/// A newer version that was refused, under the table.
fn print_reload_errors(plugins: &[prx_supervisor::PluginStatus]) {
    for p in plugins {
        if let Some(why) = &p.reload_error {
            println!(
                "\n{}: version {} ({}) serves; the newer files were refused: {why}",
                p.name, p.version, p.digest
            );
        }
    }
}

/// A layer `prx status` counts (the worker also reports its start-up
/// steps, which always apply).
fn is_layer(name: &str) -> bool {
    prx_supervisor::worker_handle::verify::Layer::ALL
        .iter()
        .any(|l| l.as_str() == name)
}

fn human_duration(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{}s", ms / 60_000, ms % 60_000 / 1000),
        _ => format!("{}h{}m", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

pub(super) async fn kv(command: KvCommand, state: PathBuf) -> Result<ExitCode> {
    let query = |name: &str, value: &str| {
        form_urlencoded::Serializer::new(String::new())
            .append_pair(name, value)
            .finish()
    };
    let (plugin, uri) = match &command {
        KvCommand::Get { plugin, key } => (
            plugin.clone(),
            format!("/v1/kv/{plugin}/value?{}", query("key", key)),
        ),
        KvCommand::List { plugin, prefix } => (
            plugin.clone(),
            format!("/v1/kv/{plugin}/keys?{}", query("prefix", prefix)),
        ),
    };
    let response = client::request(&socket(&state), "GET", &uri, None).await?;
    if response.status != 200 {
        return Ok(api_error(response.body));
    }
    match command {
        KvCommand::Get { key, .. } => {
            let value: api::KvValue = serde_json::from_str(&response.body)?;
            if !value.found {
                eprintln!("prx: plugin `{plugin}` has no key {key:?}");
                return Ok(ExitCode::FAILURE);
            }
            println!("{}", value.text.unwrap_or(value.hex));
        }
        KvCommand::List { .. } => {
            let keys: Vec<String> = serde_json::from_str(&response.body)?;
            for key in keys {
                println!("{key}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn publish(topic: &str, payload: String, state: PathBuf) -> Result<ExitCode> {
    if let Err(e) = prx_supervisor::topics::check_topic(topic) {
        eprintln!("prx: {e}");
        return Ok(ExitCode::FAILURE);
    }
    let uri = format!("/v1/events/{topic}");
    let response = client::request(&socket(&state), "POST", &uri, Some(payload)).await?;
    if response.status != 200 {
        return Ok(api_error(response.body));
    }
    let published: api::Published = serde_json::from_str(&response.body)?;
    println!("published {topic} (event {})", published.seq);
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn events(state: PathBuf, json: bool) -> Result<ExitCode> {
    let response = client::request(&socket(&state), "GET", "/v1/events", None).await?;
    if response.status != 200 {
        return Ok(api_error(response.body));
    }
    if json {
        println!("{}", response.body);
        return Ok(ExitCode::SUCCESS);
    }
    let stats: api::EventStats = serde_json::from_str(&response.body)?;
    println!("{} events published", stats.published);
    if stats.too_deep > 0 {
        println!(
            "{} events reached no plugin: their causal chain hit [events] max_depth",
            stats.too_deep
        );
    }
    println!(
        "{:<20} {:>8} {:>10} {:>8} {:>10}  PATTERNS (id)",
        "SUBSCRIBER", "QUEUED", "DELIVERED", "DROPPED", "SUPPRESSED"
    );
    for s in &stats.subscribers {
        let patterns: Vec<String> = s
            .patterns
            .iter()
            .map(|(id, p)| format!("{p} ({id})"))
            .collect();
        println!(
            "{:<20} {:>8} {:>10} {:>8} {:>10}  {}",
            s.owner.to_string(),
            s.queued,
            s.delivered,
            s.dropped,
            s.suppressed,
            patterns.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn memory(command: MemoryCommand, state: PathBuf) -> Result<ExitCode> {
    let response = match &command {
        MemoryCommand::Store { text, category } => {
            let body = serde_json::to_string(&api::StoreMemory {
                text: text.clone(),
                category: category.clone(),
            })?;
            client::request(&socket(&state), "POST", "/v1/memory", Some(body)).await?
        }
        MemoryCommand::Recall { query, limit } => {
            let q = form_urlencoded::Serializer::new(String::new())
                .append_pair("query", query)
                .append_pair("limit", &limit.to_string())
                .finish();
            let uri = format!("/v1/memory?{q}");
            client::request(&socket(&state), "GET", &uri, None).await?
        }
        MemoryCommand::Forget { id } => {
            let id: String = form_urlencoded::byte_serialize(id.as_bytes()).collect();
            let uri = format!("/v1/memory/{id}");
            client::request(&socket(&state), "DELETE", &uri, None).await?
        }
        MemoryCommand::Count => {
            client::request(&socket(&state), "GET", "/v1/memory/count", None).await?
        }
    };
    if response.status != 200 {
        return Ok(api_error(response.body));
    }
    match command {
        MemoryCommand::Store { .. } => {
            let stored: api::Stored = serde_json::from_str(&response.body)?;
            println!("stored memory {}", stored.id);
        }
        MemoryCommand::Recall { .. } => {
            let found: Vec<prx_supervisor::MemoryFound> = serde_json::from_str(&response.body)?;
            for m in found {
                let by = match m.plugin.as_deref() {
                    Some(p) if p.starts_with('(') => " (stored by the host)".to_owned(),
                    Some(p) => format!(" (stored by plugin `{p}`)"),
                    None => String::new(),
                };
                println!(
                    "{:>6} {:.2} [{}] {}{by}",
                    m.id, m.importance, m.category, m.text
                );
            }
        }
        MemoryCommand::Forget { id } => {
            let answer: serde_json::Value = serde_json::from_str(&response.body)?;
            if answer["forgotten"] == true {
                println!("forgot memory {id}");
            } else {
                println!("no memory {id}");
            }
        }
        MemoryCommand::Count => {
            let answer: serde_json::Value = serde_json::from_str(&response.body)?;
            println!(
                "{} memories (backend: {})",
                answer["count"], answer["backend"]["backend"]
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn tail(pattern: &str, count: Option<u64>, state: PathBuf) -> Result<ExitCode> {
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("pattern", pattern)
        .finish();
    let uri = format!("/v1/events/stream?{q}");
    let mut seen = 0u64;
    let response = client::stream_lines(&socket(&state), &uri, |line| {
        println!("{line}");
        let _ = std::io::stdout().flush();
        seen += 1;
        count.is_none_or(|n| seen < n)
    })
    .await?;
    if response.status != 200 {
        return Ok(api_error(response.body));
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn chat(
    provider: &str,
    messages: &str,
    model: String,
    temperature: f64,
    state: PathBuf,
) -> Result<ExitCode> {
    let messages: Vec<api::ChatMessageBody> = match serde_json::from_str(messages) {
        Ok(m) => m,
        Err(e) => {
            eprintln!(
                "prx: MESSAGES must be a JSON list of {{\"role\": ..., \"content\": ...}}: {e}"
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    let body = serde_json::to_string(&api::ChatRequest {
        messages,
        model,
        temperature,
    })?;
    let uri = format!("/v1/providers/{provider}/chat");
    let response = client::request(&socket(&state), "POST", &uri, Some(body)).await?;
    if response.status != 200 {
        return Ok(api_error(response.body));
    }
    let reply: api::ChatReply = serde_json::from_str(&response.body)
        .with_context(|| format!("unexpected answer: {}", response.body))?;
    if let Some(text) = &reply.text {
        println!("{text}");
    }
    for call in &reply.tool_calls {
        println!("tool call {}: {} {}", call.id, call.name, call.arguments);
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn modules(state: PathBuf, json: bool) -> Result<ExitCode> {
    let response = client::request(&socket(&state), "GET", "/v1/modules", None).await?;
    if response.status != 200 {
        return Ok(api_error(response.body));
    }
    if json {
        println!("{}", response.body);
        return Ok(ExitCode::SUCCESS);
    }
    let modules: Vec<prx_supervisor::ModuleDescription> = serde_json::from_str(&response.body)?;
    for m in modules {
        let status = m.status.as_deref().unwrap_or("-");
        println!("{} ({}): {status}", m.plugin, m.state);
        println!("  rpcs: {}", m.rpcs.join(", "));
        for (name, value) in &m.stats {
            println!("  {name}: {value}");
        }
        if let Some(error) = &m.error {
            println!("  error: {error}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn cron(state: PathBuf, json: bool) -> Result<ExitCode> {
    let response = client::request(&socket(&state), "GET", "/v1/cron", None).await?;
    if response.status != 200 {
        return Ok(api_error(response.body));
    }
    if json {
        println!("{}", response.body);
        return Ok(ExitCode::SUCCESS);
    }
    let jobs: Vec<prx_supervisor::CronJob> = serde_json::from_str(&response.body)?;
    println!(
        "{:<20} {:<16} {:<26} {:>5} {:>5} {:>7}  LAST",
        "PLUGIN", "SCHEDULE", "NEXT (UTC)", "RUNS", "FAIL", "SKIPPED"
    );
    for j in jobs {
        let last = j
            .stats
            .last
            .map(|l| {
                let ok = if l.success { "ok" } else { "failed" };
                format!("{ok} in {} ms: {}", l.duration_ms, l.output)
            })
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<20} {:<16} {:<26} {:>5} {:>5} {:>7}  {last}",
            j.plugin,
            j.schedule,
            j.stats.next.as_deref().unwrap_or("-"),
            j.stats.runs,
            j.stats.failures,
            j.stats.skipped,
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn reload(plugin: Option<&str>, state: PathBuf) -> Result<ExitCode> {
    let uri = match plugin {
        Some(name) => format!("/v1/plugins/{name}/reload"),
        None => "/v1/reload".to_owned(),
    };
    let response = client::request(&socket(&state), "POST", &uri, None).await?;
    if response.status != 200 {
        return Ok(api_error(response.body));
    }
    let outcomes: Vec<prx_supervisor::ReloadOutcome> = serde_json::from_str(&response.body)?;
    if outcomes.is_empty() {
        println!("nothing changed");
    }
    let mut failed = false;
    for outcome in &outcomes {
        println!("{outcome}");
        failed |= matches!(
            outcome,
            prx_supervisor::ReloadOutcome::Refused { .. }
                | prx_supervisor::ReloadOutcome::Failed { .. }
        );
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub(super) async fn release(plugin: &str, state: PathBuf) -> Result<ExitCode> {
    let uri = format!("/v1/plugins/{plugin}/release");
    let response = client::request(&socket(&state), "POST", &uri, None).await?;
    if response.status == 200 {
        println!("released {plugin}");
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(api_error(response.body))
    }
}

pub(super) async fn list(state: PathBuf, json: bool) -> Result<ExitCode> {
    let Some(plugins) = fetch_plugins(&state, json).await? else {
        return Ok(ExitCode::SUCCESS);
    };
    println!(
        "{:<20} {:<10} {:<28} {:<10} {:>8}",
        "NAME", "VERSION", "CAPABILITIES", "STATE", "PID"
    );
    for p in &plugins {
        let pid = p.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        println!(
            "{:<20} {:<10} {:<28} {:<10} {:>8}",
            p.name,
            p.version,
            p.capabilities.join(","),
            p.state,
            pid
        );
    }
    for p in plugins.iter().filter(|p| p.error.is_some()) {
        println!("\n{}: {}", p.name, p.error.as_deref().unwrap_or_default());
    }
    print_reload_errors(&plugins);
    Ok(ExitCode::SUCCESS)
}
