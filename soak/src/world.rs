//! What the soak runs: a plugins directory with example plugins in Rust
//! and Python (and the kv test tool), each manifest given a short time
//! limit so a stopped worker is found within seconds; a config with short
//! quarantine cool-downs; a local web service for the http plugin. Every
//! plugin's good files are kept, so faults can break them and put them
//! back.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

/// The soak's quarantine cool-down, its cap, and the time a call may take:
/// short, so a whole storm and its healing fit in a short run.
pub const COOLDOWN: Duration = Duration::from_secs(5);
pub const COOLDOWN_MAX: Duration = Duration::from_secs(20);
pub const CALL_LIMIT_MS: i64 = 2000;

/// The plugins, and where their built files are found (relative to the
/// directory of built examples or of built test plugins).
const EXAMPLES: [&str; 7] = [
    "echo-tool",
    "hello-py",
    "stats-module",
    "content-filter",
    "audit-hook",
    "events-py",
    "http-fetch",
];
const TESTING: [&str; 1] = ["kv-tool"];

/// One plugin's directory and its good files.
pub struct Plugin {
    pub name: String,
    pub dir: PathBuf,
    pub manifest: toml::Table,
    pub wasm: Vec<u8>,
}

impl Plugin {
    /// Writes `bytes` to `file` in the plugin's directory the way an
    /// installer does: write beside it, then rename over it.
    pub fn replace(&self, file: &str, bytes: &[u8]) -> Result<()> {
        let temp = self.dir.join(format!(".{file}.soak-tmp"));
        std::fs::write(&temp, bytes)?;
        std::fs::rename(&temp, self.dir.join(file))?;
        Ok(())
    }

    /// The manifest with `plugin.version` set to `version`.
    pub fn manifest_with_version(&self, version: &str) -> String {
        let mut manifest = self.manifest.clone();
        if let Some(toml::Value::Table(plugin)) = manifest.get_mut("plugin") {
            plugin.insert("version".into(), version.into());
        }
        manifest.to_string()
    }
}

pub struct World {
    pub state: PathBuf,
    pub config: PathBuf,
    pub plugins: Vec<Plugin>,
}

/// Lays out `root` (emptied first): plugins from `examples` and `testing`
/// (the directories scripts/build-plugins.sh fills), the state directory,
/// and the config; `web` is the local service's port.
pub fn prepare(
    root: &Path,
    examples: &Path,
    testing: &Path,
    cache: &Path,
    web: u16,
) -> Result<World> {
    if root.exists() {
        std::fs::remove_dir_all(root).with_context(|| format!("emptying {}", root.display()))?;
    }
    let plugins_dir = root.join("plugins");
    let state = root.join("state");
    std::fs::create_dir_all(&plugins_dir)?;
    std::fs::create_dir_all(&state)?;
    let sources = EXAMPLES
        .iter()
        .map(|n| examples.join(n))
        .chain(TESTING.iter().map(|n| testing.join(n)));
    let mut plugins = Vec::new();
    for source in sources {
        let name = source
            .file_name()
            .context("plugin directory")?
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(source.join("plugin.toml")).with_context(|| {
            format!(
                "{}: not built; run scripts/build-plugins.sh",
                source.display()
            )
        })?;
        let mut manifest: toml::Table = text.parse()?;
        adjust(&name, &mut manifest, web);
        let wasm = std::fs::read(source.join("plugin.wasm"))?;
        let dir = plugins_dir.join(&name);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("plugin.toml"), manifest.to_string())?;
        std::fs::write(dir.join("plugin.wasm"), &wasm)?;
        plugins.push(Plugin {
            name,
            dir,
            manifest,
            wasm,
        });
    }
    let config = root.join("prx.toml");
    std::fs::write(
        &config,
        format!(
            "plugins = {plugins:?}\nstate = {state:?}\ncache_dir = {cache:?}\n\n\
             [http]\nallowed_ranges = [\"127.0.0.1/32\"]\n\n\
             [restart]\nquarantine_cooldown_s = {cool}\nquarantine_cooldown_max_s = {max}\n\
             quarantine_reset_s = 60\n",
            plugins = plugins_dir.display().to_string(),
            state = state.display().to_string(),
            cache = cache.display().to_string(),
            cool = COOLDOWN.as_secs(),
            max = COOLDOWN_MAX.as_secs(),
        ),
    )?;
    Ok(World {
        state,
        config,
        plugins,
    })
}

/// The soak's changes to a manifest: a short time limit for every call,
/// room in kv for every write of a long run, and the http plugin pointed
/// at the local service.
fn adjust(name: &str, manifest: &mut toml::Table, web: u16) {
    let table = |m: &mut toml::Table, key: &str| -> toml::Table {
        match m.remove(key) {
            Some(toml::Value::Table(t)) => t,
            _ => toml::Table::new(),
        }
    };
    let mut resources = table(manifest, "resources");
    resources.insert("max_execution_time_ms".into(), CALL_LIMIT_MS.into());
    if name == "kv-tool" {
        resources.insert("max_kv_storage_kb".into(), (256 * 1024).into());
    }
    manifest.insert("resources".into(), resources.into());
    if name == "http-fetch" {
        let base = format!("http://127.0.0.1:{web}");
        let mut permissions = table(manifest, "permissions");
        permissions.insert("http_allowlist".into(), vec![base.clone()].into());
        manifest.insert("permissions".into(), permissions.into());
        let mut config = table(manifest, "config");
        config.insert("base_url".into(), base.into());
        manifest.insert("config".into(), config.into());
    }
}

/// A local web service for the http plugin: answers every request with
/// the same small JSON body.
pub async fn serve_web() -> Result<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let body = WEB_BODY;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    Ok(port)
}

/// What the local service answers.
pub const WEB_BODY: &str = r#"{"soak":"ok"}"#;
