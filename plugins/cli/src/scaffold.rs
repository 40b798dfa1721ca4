//! `prx-plugin new`: a project that builds, validates and passes its own
//! tests as generated, for every capability. `@NAME@` (the plugin name),
//! `@IDENT@` (the name as a Rust identifier) and `@PDK@` (the PDK's path)
//! are filled in.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use prx_supervisor::manifest::CapabilityType;

use crate::Lang;

/// The PDK this binary was built beside.
const BUILT_PDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../pdk/rust");

pub fn new(
    name: &str,
    lang: Lang,
    capability: &str,
    dir: Option<PathBuf>,
    pdk: Option<PathBuf>,
) -> Result<ExitCode> {
    prx_supervisor::manifest::check_name("the plugin name", name).map_err(anyhow::Error::msg)?;
    let kind = CAPABILITIES
        .iter()
        .find(|(k, _)| k.as_str() == capability)
        .map(|(k, _)| *k)
        .with_context(|| {
            format!(
                "unknown capability `{capability}`; choose one of {}",
                CAPABILITIES
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        bail!(
            "{} exists and is not empty; choose another name or --dir",
            dir.display()
        );
    }
    let files = match lang {
        Lang::Rust => {
            let pdk = pdk.unwrap_or_else(|| PathBuf::from(BUILT_PDK));
            let pdk = pdk.canonicalize().with_context(|| {
                format!(
                    "the Rust PDK is not at {}; pass --pdk PATH/TO/plugins/pdk/rust",
                    pdk.display()
                )
            })?;
            rust_project(name, kind, &pdk)
        }
        Lang::Python => {
            if pdk.is_some() {
                bail!("--pdk is the Rust PDK; a Python plugin gets the SDK built into prx-plugin");
            }
            crate::templates_python::project(name, kind)
        }
        Lang::Javascript | Lang::Typescript => {
            if pdk.is_some() {
                bail!(
                    "--pdk is the Rust PDK; a JavaScript plugin gets the SDK (@prx/pdk) built into prx-plugin"
                );
            }
            crate::templates_javascript::project(name, kind, lang == Lang::Typescript)
        }
        Lang::Go => {
            if pdk.is_some() {
                bail!(
                    "--pdk is the Rust PDK; a Go plugin gets the Go SDK (prx.local/pdk) built into prx-plugin"
                );
            }
            if kind != CapabilityType::Tool {
                bail!(
                    "a Go plugin here is a tool: the Go SDK writes the canonical ABI of the tool world only; use --capability tool, or another language for a {kind}"
                );
            }
            crate::templates_go::project(name)
        }
    };
    for (path, text) in files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!(
        "created the {kind} plugin `{name}` in {}\n  cd {}\n  prx-plugin build --release   # plugin.wasm, validated\n  prx-plugin test              # its tests, then a call in a real supervisor\n  prx-plugin pack              # {name}-0.1.0.prxplugin",
        dir.display(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Every capability with the permissions its template uses.
const CAPABILITIES: &[(CapabilityType, &str)] = &[
    (CapabilityType::Tool, "\"log\", \"kv\""),
    (CapabilityType::Hook, "\"log\", \"kv\", \"events\""),
    (CapabilityType::Middleware, "\"log\""),
    (CapabilityType::Cron, "\"log\", \"kv\", \"events\""),
    (CapabilityType::Provider, "\"log\", \"config\""),
    (CapabilityType::Storage, "\"log\", \"kv\""),
    (CapabilityType::Module, "\"log\", \"kv\""),
];

/// `@NAME@`, `@IDENT@` (the name in CamelCase) and `@PDK@` filled in.
pub fn fill(template: &str, name: &str, pdk: &Path) -> String {
    let ident: String = name
        .split(['-', '_', '.'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut chars = p.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    template
        .replace("@NAME@", name)
        .replace("@IDENT@", &ident)
        .replace("@PDK@", &pdk.display().to_string())
}

/// plugin.toml of a new plugin (`@NAME@` still to fill).
pub fn manifest(kind: CapabilityType) -> String {
    let permissions = CAPABILITIES
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, p)| *p)
        .unwrap_or("\"log\"");
    let capability = match kind {
        CapabilityType::Tool => "type = \"tool\"\nname = \"@NAME@\"\ndescription = \"Greets someone and counts the greetings\"\n".to_owned(),
        CapabilityType::Hook => "type = \"hook\"\nevents = [\"tool.*\", \"prx.lifecycle.*\"]\n".to_owned(),
        CapabilityType::Middleware => "type = \"middleware\"\npriority = 50\n".to_owned(),
        CapabilityType::Cron => "type = \"cron\"\nname = \"@NAME@\"\nschedule = \"0 * * * *\"\n".to_owned(),
        CapabilityType::Provider | CapabilityType::Storage => {
            format!("type = \"{kind}\"\nname = \"@NAME@\"\n")
        }
        CapabilityType::Module => "type = \"module\"\n".to_owned(),
    };
    format!(
        "[plugin]\nname = \"@NAME@\"\nversion = \"0.1.0\"\ndescription = \"A PRX {kind} plugin\"\nwasm = \"plugin.wasm\"\n\n[[capabilities]]\n{capability}\n[permissions]\nrequired = [{permissions}]\n\n[resources]\nmax_fuel = 100000000\nmax_memory_mb = 32\nmax_execution_time_ms = 5000\nmax_kv_storage_kb = 256\n"
    )
}

fn rust_project(name: &str, kind: CapabilityType, pdk: &Path) -> Vec<(&'static str, String)> {
    let source = match kind {
        CapabilityType::Tool => TOOL,
        CapabilityType::Hook => HOOK,
        CapabilityType::Middleware => MIDDLEWARE,
        CapabilityType::Cron => CRON,
        CapabilityType::Provider => PROVIDER,
        CapabilityType::Storage => STORAGE,
        CapabilityType::Module => MODULE,
    };
    vec![
        ("Cargo.toml", fill(CARGO_TOML, name, pdk)),
        ("plugin.toml", fill(&manifest(kind), name, pdk)),
        ("src/lib.rs", fill(source, name, pdk)),
        (
            "README.md",
            fill(&README.replace("@KIND@", kind.as_str()), name, pdk),
        ),
        (
            ".gitignore",
            "/target\n/plugin.wasm\n/*.prxplugin\n".to_owned(),
        ),
    ]
}

const CARGO_TOML: &str = r##"[package]
name = "@NAME@"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
prx-pdk = { path = "@PDK@" }
serde_json = "1"

# Small components: they are compiled by the host at load time.
[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = true
panic = "abort"

# A project of its own, not part of an enclosing workspace.
[workspace]
"##;

const README: &str = r##"# @NAME@

A PRX @KIND@ plugin.

    prx-plugin build --release   # builds plugin.wasm (wasm32-wasip2) and validates it
    prx-plugin test              # cargo test, then one call in a real supervisor
    prx-plugin pack              # @NAME@-0.1.0.prxplugin, with checksums
    prx-plugin install @NAME@-0.1.0.prxplugin --plugins /path/to/plugins

`plugin.toml` declares what it is and what it may use; the host refuses
anything it does not declare.
"##;

const TOOL: &str = r##"//! A tool: `{"name": "ada"}` -> `Hello, ada! (greeting 3)`, counting the
//! greetings in the plugin's kv store.

use prx_pdk::prelude::*;

pub struct @IDENT@;

impl Tool for @IDENT@ {
    fn spec() -> ToolSpec {
        ToolSpec::new(
            "@NAME@",
            "Greets someone by name and counts the greetings",
            r#"{"type":"object","properties":{"name":{"type":"string"}},"required":["name"]}"#,
        )
    }

    fn execute(args: &str) -> PluginResult {
        let args: serde_json::Value = serde_json::from_str(args).unwrap_or_default();
        let name = args["name"].as_str().unwrap_or("world");
        match kv::increment("greetings", 1) {
            Ok(n) => PluginResult::ok(format!("Hello, {name}! (greeting {n})")),
            Err(e) => PluginResult::err(format!("cannot count: {e}")),
        }
    }
}

export_tool!(@IDENT@);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greets_and_counts() {
        assert_eq!(@IDENT@::execute(r#"{"name":"ada"}"#).output, "Hello, ada! (greeting 1)");
        assert_eq!(@IDENT@::execute("{}").output, "Hello, world! (greeting 2)");
    }
}
"##;

const HOOK: &str = r##"//! A hook: counts the events it sees per topic in kv (`seen:<topic>`).

use prx_pdk::prelude::*;

pub struct @IDENT@;

impl Hook for @IDENT@ {
    fn on_event(event: &str, payload_json: &str) -> Result<(), String> {
        let n = kv::increment(&format!("seen:{event}"), 1)?;
        log::debug(&format!("{event} #{n}: {payload_json}"));
        Ok(())
    }
}

export_hook!(@IDENT@);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_topic() {
        @IDENT@::on_event("tool.call", "{}").unwrap();
        @IDENT@::on_event("tool.call", "{}").unwrap();
        assert_eq!(kv::get_str("seen:tool.call").as_deref(), Some("2"));
    }
}
"##;

const MIDDLEWARE: &str = r##"//! A middleware: marks every message it passes with `"checked_by"`.

use prx_pdk::prelude::*;

pub struct @IDENT@;

impl Middleware for @IDENT@ {
    fn process(stage: &str, data_json: &str) -> Result<String, String> {
        let mut data: serde_json::Value =
            serde_json::from_str(data_json).map_err(|e| format!("not JSON: {e}"))?;
        let Some(object) = data.as_object_mut() else {
            return Err("expected a JSON object".into());
        };
        object.insert("checked_by".into(), format!("@NAME@@{stage}").into());
        Ok(data.to_string())
    }
}

export_middleware!(@IDENT@);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_objects_and_refuses_the_rest() {
        let out = @IDENT@::process("inbound", r#"{"content":"hi"}"#).unwrap();
        assert_eq!(out, r#"{"checked_by":"@NAME@@inbound","content":"hi"}"#);
        assert!(@IDENT@::process("inbound", "[1]").is_err());
    }
}
"##;

const CRON: &str = r##"//! A cron job: counts its runs in kv and publishes `@NAME@.ran`.

use prx_pdk::prelude::*;

pub struct @IDENT@;

impl Cron for @IDENT@ {
    fn run() -> Result<String, String> {
        let runs = kv::increment("runs", 1)?;
        events::publish_json("@NAME@.ran", &serde_json::json!({ "runs": runs }))?;
        Ok(format!("run {runs}"))
    }
}

export_cron!(@IDENT@);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_runs_and_announces_them() {
        assert_eq!(@IDENT@::run().unwrap(), "run 1");
        assert_eq!(@IDENT@::run().unwrap(), "run 2");
        assert_eq!(prx_pdk::testing::published().len(), 2);
    }
}
"##;

const PROVIDER: &str = r##"//! A provider: answers with the last user message, prefixed by
//! `[config] prefix` (replace it with a call to a real model over
//! http-outbound).

use prx_pdk::prelude::*;

pub struct @IDENT@;

impl Provider for @IDENT@ {
    fn name() -> String {
        "@NAME@".into()
    }

    fn chat(messages: &[ChatMessage], _model: &str, _temperature: f64) -> Result<ChatResponse, String> {
        let last = messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .ok_or("no user message to answer")?;
        let prefix = config::get_or("prefix", "echo");
        Ok(ChatResponse {
            text: Some(format!("{prefix}: {}", last.content)),
            tool_calls: Vec::new(),
        })
    }
}

export_provider!(@IDENT@);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_the_last_user_message() {
        let messages = [ChatMessage { role: "user".into(), content: "hi".into() }];
        let answer = @IDENT@::chat(&messages, "", 0.5).unwrap();
        assert_eq!(answer.text.as_deref(), Some("echo: hi"));
        assert!(@IDENT@::chat(&[], "", 0.5).is_err());
    }
}
"##;

const STORAGE: &str = r##"//! A memory backend in the plugin's kv store: one entry per memory,
//! recalled when its text contains the query.

use prx_pdk::prelude::*;
use serde_json::{Value, json};

pub struct @IDENT@;

const PREFIX: &str = "mem:";

impl Storage for @IDENT@ {
    fn name() -> String {
        "@NAME@".into()
    }

    fn store_memory(key: &str, content: &str, category: &str, _session: Option<&str>) -> Result<(), String> {
        kv::set_json(&format!("{PREFIX}{key}"), &json!({ "content": content, "category": category }))
    }

    fn recall_memory(query: &str, limit: u32, _session: Option<&str>) -> Result<Vec<StoredMemory>, String> {
        let query = query.to_lowercase();
        let mut found = Vec::new();
        for full in kv::list_keys(PREFIX) {
            let Some(entry) = kv::get_json::<Value>(&full) else { continue };
            let content = entry["content"].as_str().unwrap_or_default();
            if content.to_lowercase().contains(&query) && found.len() < limit as usize {
                let key = full.trim_start_matches(PREFIX).to_owned();
                found.push(StoredMemory {
                    id: key.clone(),
                    key,
                    content: content.to_owned(),
                    category: entry["category"].as_str().unwrap_or_default().to_owned(),
                    timestamp: String::new(),
                    score: Some(1.0),
                });
            }
        }
        Ok(found)
    }

    fn forget_memory(key: &str) -> Result<bool, String> {
        kv::delete(&format!("{PREFIX}{key}"))
    }

    fn count_memories() -> Result<u32, String> {
        Ok(kv::list_keys(PREFIX).len() as u32)
    }

    fn health_check() -> bool {
        true
    }
}

export_storage!(@IDENT@);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_recalls_and_forgets() {
        @IDENT@::store_memory("a", "The sky is blue", "fact", None).unwrap();
        @IDENT@::store_memory("b", "Grass is green", "fact", None).unwrap();
        let found = @IDENT@::recall_memory("sky", 10, None).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].key, "a");
        assert_eq!(@IDENT@::count_memories().unwrap(), 2);
        assert!(@IDENT@::forget_memory("a").unwrap());
        assert!(!@IDENT@::forget_memory("a").unwrap());
    }
}
"##;

const MODULE: &str = r##"//! A bus module: the RPC `@NAME@.square` squares `{"x": n}`, caching
//! answers in the host cache; `describe` reports calls and cache hits.

use std::sync::atomic::{AtomicU64, Ordering};

use prx_pdk::prelude::*;

pub struct @IDENT@;

static CALLS: AtomicU64 = AtomicU64::new(0);
static HITS: AtomicU64 = AtomicU64::new(0);

impl Module for @IDENT@ {
    fn on_load(host: &mut ModuleHost) -> Result<(), String> {
        host.register_rpc("@NAME@.square", square)
    }

    fn describe() -> ModuleInfo {
        ModuleInfo::new("LOADED")
            .stat("calls", CALLS.load(Ordering::Relaxed))
            .stat("cache_hits", HITS.load(Ordering::Relaxed))
    }
}

fn square(payload: &str) -> Result<String, String> {
    CALLS.fetch_add(1, Ordering::Relaxed);
    let input: serde_json::Value = serde_json::from_str(payload).map_err(|e| format!("payload: {e}"))?;
    let x = input["x"].as_f64().ok_or("payload needs \"x\": a number")?;
    let key = x.to_string();
    if let Some(hit) = cache::get("squares", &key)? {
        HITS.fetch_add(1, Ordering::Relaxed);
        return String::from_utf8(hit).map_err(|e| e.to_string());
    }
    let answer = serde_json::json!({ "square": x * x }).to_string();
    cache::put("squares", &key, answer.as_bytes())?;
    Ok(answer)
}

export_module!(@IDENT@);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squares_and_caches() {
        __prx_module_load().unwrap();
        assert_eq!(__prx_module_rpc("@NAME@.square", r#"{"x":3}"#).unwrap(), r#"{"square":9.0}"#);
        __prx_module_rpc("@NAME@.square", r#"{"x":3}"#).unwrap();
        assert_eq!(HITS.load(Ordering::Relaxed), 1);
        assert!(__prx_module_rpc("@NAME@.square", "{}").is_err());
    }
}
"##;
