//! One tool in four languages (`prx-bench languages <examples dir>
//! <test plugins dir> <prx-worker>`): text statistics, written in Rust
//! (plugins/testing/text-stats-rs), Python (testing/text-stats-py),
//! TypeScript (examples/text-stats-ts) and Go (testing/text-stats-go), as
//! `scripts/build-plugins.sh`
//! leaves them, measured side by side:
//!
//! - the component's size;
//! - its first compile: Cranelift, in-process, once (every later start
//!   uses the compile cache);
//! - a sandboxed worker's spawn to ready from the compile cache, every
//!   layer (21 starts a run);
//! - a call through one supervisor and the worker, on the same 2 KiB
//!   text (201 calls a run, the languages taking turns run by run).
//!
//! Each figure is the median of three runs' medians; ratios are to Rust.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;
use prx_supervisor::manifest::Manifest;
use prx_supervisor::{Supervisor, SupervisorConfig};
use prx_worker::runtime;

use crate::{Subject, worker_spawn_to_ready};

const RUNS: usize = 3;

struct Language {
    name: &'static str,
    dir: PathBuf,
    tool: &'static str,
    wasm: Vec<u8>,
    manifest: Manifest,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// The same text for every call: 2 KiB of prose.
fn text() -> String {
    let paragraph = "The quick brown fox jumps over the lazy dog. It's 2 o'clock, and the dog sleeps! Does the fox care? ";
    paragraph.repeat(2048 / paragraph.len() + 1)
}

fn language(name: &'static str, dir: PathBuf, tool: &'static str) -> Result<Language> {
    let manifest = Manifest::load(&dir.join("plugin.toml"))
        .map_err(|e| anyhow::anyhow!("{e}; build the plugins first: scripts/build-plugins.sh"))?;
    let wasm = std::fs::read(manifest.wasm_path(&dir))?;
    Ok(Language {
        name,
        dir,
        tool,
        wasm,
        manifest,
    })
}

pub fn run(examples: &Path, tests: &Path, worker: &Path) -> Result<()> {
    let languages = [
        language("Rust", tests.join("text-stats-rs"), "text_stats_rs")?,
        language("Python", tests.join("text-stats-py"), "text_stats_py")?,
        language("TypeScript", examples.join("text-stats-ts"), "text_stats")?,
        language("Go", tests.join("text-stats-go"), "text_stats_go")?,
    ];
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    let mut compile = Vec::new();
    let mut spawn = Vec::new();
    for lang in &languages {
        let (limits, engine) = prx_supervisor::plugin::limits_of(&lang.manifest.resources);
        let built = runtime::build_engine(&engine).map_err(|e| anyhow::anyhow!("{e}"))?;
        let t = Instant::now();
        runtime::compile(&built, &lang.wasm).map_err(|e| anyhow::anyhow!("{e}"))?;
        compile.push(t.elapsed());
        let subject = Subject {
            name: lang.name,
            wasm: &lang.wasm,
            limits,
            engine,
        };
        let mut runs = Vec::new();
        for _ in 0..RUNS {
            let sandbox = prx_supervisor::worker_handle::verify::SandboxPolicy::default();
            runs.push(worker_spawn_to_ready(&current, &subject, worker, 21, sandbox)?.0);
        }
        spawn.push(median(runs));
    }

    // One supervisor with every language's tool.
    let scratch = tempfile::tempdir()?;
    for lang in &languages {
        let dir = scratch
            .path()
            .join("plugins")
            .join(&*lang.manifest.plugin.name);
        std::fs::create_dir_all(&dir)?;
        std::fs::copy(lang.dir.join("plugin.toml"), dir.join("plugin.toml"))?;
        std::fs::write(dir.join("plugin.wasm"), &lang.wasm)?;
    }
    let mut config =
        SupervisorConfig::new(scratch.path().join("plugins"), scratch.path().join("state"));
    config.worker_binary = Some(worker.to_owned());
    config.ephemeral_kv = true;
    let args = serde_json::json!({ "text": text(), "top": 5 }).to_string();
    let calls = current.block_on(async {
        let sup = Supervisor::start(config).await?;
        anyhow::ensure!(
            sup.running() == languages.len(),
            "not all loaded: {:?}",
            sup.failures()
        );
        let mut runs = vec![Vec::new(); languages.len()];
        for _ in 0..RUNS {
            for (i, lang) in languages.iter().enumerate() {
                let mut samples = Vec::new();
                for _ in 0..201 {
                    let t = Instant::now();
                    sup.call_tool(lang.tool, &args).await?;
                    samples.push(t.elapsed());
                }
                runs[i].push(median(samples));
            }
        }
        sup.shutdown().await;
        Ok(runs.into_iter().map(median).collect::<Vec<_>>())
    })?;

    let row = |what: &str, values: &[String]| println!("| {what} | {} |", values.join(" | "));
    println!(
        "| text statistics, the same tool in | Rust | Python (componentize-py 0.25.1) | TypeScript (componentize-js 0.23.0) | Go (1.27.3: wasip1, wit-component) |"
    );
    println!("|---|---|---|---|---|");
    let ratio = |values: &[f64], unit: &str, digits: usize| -> Vec<String> {
        values
            .iter()
            .map(|v| {
                if values[0] == *v {
                    format!("{v:.digits$} {unit}")
                } else {
                    format!("{v:.digits$} {unit} ({:.1}x)", v / values[0])
                }
            })
            .collect()
    };
    let sizes: Vec<f64> = languages
        .iter()
        .map(|l| l.wasm.len() as f64 / 1e6)
        .collect();
    row("component size", &ratio(&sizes, "MB", 2));
    let compile: Vec<f64> = compile.into_iter().map(ms).collect();
    row(
        "first compile, Cranelift in-process (later starts use the compile cache)",
        &ratio(&compile, "ms", 0),
    );
    let spawn: Vec<f64> = spawn.into_iter().map(ms).collect();
    row(
        "worker spawn to ready from the compile cache, every sandbox layer",
        &ratio(&spawn, "ms", 2),
    );
    let calls: Vec<f64> = calls.into_iter().map(ms).collect();
    row(
        "a call on a 2 KiB text through the supervisor and the worker",
        &ratio(&calls, "ms", 3),
    );
    Ok(())
}
