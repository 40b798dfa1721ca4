//! `prx-plugin test`: the plugin's own tests, then the real thing: the
//! plugin is loaded by a real supervisor (a sandboxed worker, ephemeral
//! kv) and each of its capabilities is called once.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use prx_supervisor::manifest::{CapabilityType, Manifest};
use prx_supervisor::plugin::{LayerState, StateKind};
use prx_supervisor::{CallError, ChatMessage, Supervisor, SupervisorConfig};

use crate::Lang;

pub fn test(dir: &Path, args: &str, unit: bool, smoke_test: bool) -> Result<ExitCode> {
    let lang = crate::builder::detect(dir)?;
    if unit {
        match lang {
            Lang::Rust => {
                println!("== the plugin's own tests (cargo test)");
                let status = crate::builder::cargo(dir)
                    .arg("test")
                    .status()
                    .context("cannot run cargo test")?;
                if !status.success() {
                    bail!("the plugin's own tests failed");
                }
            }
            Lang::Python => {
                println!("== the plugin's own tests (pytest, with the SDK's fake host)");
                crate::python::unit_tests(dir)?;
            }
            Lang::Javascript | Lang::Typescript => {
                println!("== the plugin's own tests (node --test, with the SDK's fake host)");
                crate::javascript::unit_tests(dir)?;
            }
            Lang::Go => {
                println!("== the plugin's own tests (go test, with the SDK's fake host)");
                crate::golang::unit_tests(dir)?;
            }
        }
    }
    if !smoke_test {
        return Ok(ExitCode::SUCCESS);
    }
    let manifest_path = dir.join("plugin.toml");
    let manifest = Manifest::load(&manifest_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let wasm_path = manifest.wasm_path(dir);
    if !wasm_path.is_file() {
        println!("== no {}: building it", wasm_path.display());
        crate::builder::build_quietly(dir, false)?;
    }
    println!("== validate");
    let report = crate::validate::validate(&std::fs::read(&wasm_path)?, &manifest_path);
    print!("{}", report.render());
    if report.errors() > 0 {
        return Ok(ExitCode::FAILURE);
    }
    println!("== in a real supervisor");
    let runtime = tokio::runtime::Runtime::new()?;
    // Compiled components are kept with the project's build output, so
    // the next run starts at once.
    let cache = match lang {
        Lang::Rust => dir.join("target/prx-compile-cache"),
        Lang::Python | Lang::Javascript | Lang::Typescript | Lang::Go => {
            dir.join("build/prx/compile-cache")
        }
    };
    let passed = runtime.block_on(smoke(dir, &manifest, args, cache))?;
    Ok(if passed {
        println!("smoke test passed");
        ExitCode::SUCCESS
    } else {
        println!("smoke test failed");
        ExitCode::FAILURE
    })
}

/// Loads the plugin alone into a supervisor and calls it once per
/// capability. False when anything failed.
async fn smoke(dir: &Path, manifest: &Manifest, args: &str, cache: PathBuf) -> Result<bool> {
    let scratch = tempfile::tempdir()?;
    let plugins = scratch.path().join("plugins");
    let plugin_dir = plugins.join(&manifest.plugin.name);
    std::fs::create_dir_all(&plugin_dir)?;
    std::fs::copy(dir.join("plugin.toml"), plugin_dir.join("plugin.toml"))?;
    let wasm_target = manifest.wasm_path(&plugin_dir);
    if let Some(parent) = wasm_target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::copy(manifest.wasm_path(dir), &wasm_target)?;
    let mut config = SupervisorConfig::new(&plugins, scratch.path().join("state"));
    config.ephemeral_kv = true;
    config.watch = false;
    config.retry_poll = Duration::ZERO;
    config.cache_dir = Some(cache);
    if config.resolve_worker_binary().is_none() {
        bail!(
            "prx-worker was not found next to prx-plugin; set PRX_WORKER_BIN to it (it is built with the prx workspace: cargo build --bins)"
        );
    }
    config.memory_backend = manifest
        .capabilities_of(CapabilityType::Storage)
        .find_map(|c| c.name.clone());
    let supervisor = Supervisor::start(config)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let status = supervisor
        .plugins()
        .into_iter()
        .find(|p| p.name == manifest.plugin.name);
    let mut passed = true;
    match status {
        Some(s) if s.state == StateKind::Running => println!(
            "ok      loaded {} {} (worker pid {}, sandbox {})",
            s.name,
            s.version,
            s.pid.unwrap_or(0),
            s.sandbox
                .iter()
                .filter(|(_, v)| *v == LayerState::Applied)
                .map(|(l, _)| l.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => {
            let why = other
                .and_then(|s| s.error)
                .or_else(|| supervisor.failures().first().map(|f| f.error.clone()))
                .unwrap_or_else(|| "not loaded".into());
            println!("error   not loaded: {why}");
            supervisor.shutdown().await;
            return Ok(false);
        }
    }
    for cap in &manifest.capabilities {
        let (ok, line) = call_once(&supervisor, manifest, cap, args).await;
        println!("{} {line}", if ok { "ok     " } else { "error  " });
        passed &= ok;
    }
    supervisor.shutdown().await;
    Ok(passed)
}

/// Calls one capability; a plugin's own refusal is an answer (it ran), a
/// trap, crash or time-out is a failure.
async fn call_once(
    sup: &Supervisor,
    manifest: &Manifest,
    cap: &prx_supervisor::manifest::Capability,
    args: &str,
) -> (bool, String) {
    let answered = |what: String, result: Result<String, CallError>| match result {
        Ok(out) => (true, format!("{what} answered: {}", shorten(&out))),
        // A middleware that crashed also blocks its chain: "(fail-closed)".
        Err(e @ CallError::Blocked { .. }) if e.to_string().ends_with("(fail-closed)") => {
            (false, format!("{what} failed: {e}"))
        }
        Err(
            e @ (CallError::ToolFailed { .. }
            | CallError::Refused { .. }
            | CallError::Blocked { .. }),
        ) => (
            true,
            format!(
                "{what} answered with its own error: {}",
                shorten(&e.to_string())
            ),
        ),
        Err(e) => (false, format!("{what} failed: {e}")),
    };
    let name = cap.name.clone().unwrap_or_default();
    match cap.kind {
        CapabilityType::Tool => {
            // A tool of PRX's short form is routed by its get-spec name.
            let name = if name.is_empty() {
                sup.tools()
                    .into_iter()
                    .find(|t| t.plugin == manifest.plugin.name)
                    .map(|t| t.name)
                    .unwrap_or_default()
            } else {
                name
            };
            answered(format!("tool `{name}`"), sup.call_tool(&name, args).await)
        }
        CapabilityType::Middleware => answered(
            "middleware (inbound)".into(),
            sup.run_middleware("inbound", r#"{"content":"hello from prx-plugin test"}"#)
                .await,
        ),
        CapabilityType::Cron => answered(
            "cron job (run now)".into(),
            sup.run_cron(&manifest.plugin.name).await,
        ),
        CapabilityType::Provider => answered(
            format!("provider `{name}`"),
            sup.chat(
                &name,
                vec![ChatMessage {
                    role: "user".into(),
                    content: "hello".into(),
                }],
                "",
                0.7,
            )
            .await
            .map(|r| {
                r.text
                    .unwrap_or_else(|| format!("{} tool call(s)", r.tool_calls.len()))
            }),
        ),
        CapabilityType::Storage => match sup.store_memory("prx-plugin smoke test", "test").await {
            Ok(id) => match sup.recall_memory("smoke", 5).await {
                Ok(found) => (
                    true,
                    format!(
                        "storage `{name}` stored {id} and recalled {} memory(ies)",
                        found.len()
                    ),
                ),
                Err(e) => (false, format!("storage `{name}` recall failed: {e}")),
            },
            Err(e) => (false, format!("storage `{name}` store failed: {e}")),
        },
        CapabilityType::Module => {
            let described = sup.describe_modules().await;
            match described.iter().find(|m| m.plugin == manifest.plugin.name) {
                Some(m) if m.error.is_none() => (
                    true,
                    format!(
                        "module answered describe: {} (rpcs: {})",
                        m.status.as_deref().unwrap_or("-"),
                        m.rpcs.join(", ")
                    ),
                ),
                Some(m) => (
                    false,
                    format!(
                        "module describe failed: {}",
                        m.error.as_deref().unwrap_or("?")
                    ),
                ),
                None => (false, "module not found".into()),
            }
        }
        CapabilityType::Hook => {
            let topic = cap
                .events
                .first()
                .map(|p| match p.pattern() {
                    "*" => "prx-plugin.smoke-test".to_owned(),
                    p => p.replace('*', "smoke-test"),
                })
                .unwrap_or_else(|| "prx-plugin.smoke-test".into());
            if let Err(e) = sup.publish(&topic, r#"{"from":"prx-plugin test"}"#) {
                return (false, format!("cannot publish {topic}: {e}"));
            }
            let started = Instant::now();
            loop {
                let status = sup
                    .plugins()
                    .into_iter()
                    .find(|p| p.name == manifest.plugin.name);
                if let Some(s) = status.filter(|s| s.events_handled > 0) {
                    return if s.handler_failures == 0 {
                        (true, format!("hook handled {topic}"))
                    } else {
                        (false, format!("hook failed on {topic} (see the log above)"))
                    };
                }
                if started.elapsed() > Duration::from_secs(10) {
                    return (false, format!("hook did not receive {topic} within 10 s"));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

fn shorten(text: &str) -> String {
    const MAX: usize = 200;
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}
