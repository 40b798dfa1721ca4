//! Shared harness: real binaries, real guests, one temporary directory per
//! test. Nothing here sleeps a fixed time to let something start; it waits
//! for the readiness line.
#![allow(dead_code)]

pub mod nats;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use prx_supervisor::{PluginStatus, Supervisor, SupervisorConfig};

/// A binary of this workspace, next to the test executable's `deps/`.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the binaries first (cargo build --workspace --bins; scripts/test.sh does)",
        path.display()
    );
    path
}

/// A compiled guest component by crate name.
pub fn guest(crate_name: &str) -> PathBuf {
    let path =
        Path::new(env!("PRX_GUEST_DIR")).join(format!("{}.wasm", crate_name.replace('-', "_")));
    assert!(path.is_file(), "guest {} was not built", path.display());
    path
}

/// The compile cache shared by all tests (keyed by content, so sharing is
/// safe), so each guest is compiled once per run.
pub fn shared_cache() -> PathBuf {
    Path::new(env!("PRX_ROOT")).join("target/test-compile-cache")
}

/// How long a test waits for something that should happen: long enough
/// for a loaded CI machine, and only a failing test ever waits it out.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Waits (polling) until `check` gives a value; fails the test, naming
/// `what`, after [`PATIENCE`].
pub async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (polling every 5 ms) until `check` holds; fails the test, naming
/// `what`, after [`PATIENCE`].
pub async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A plugin's status; fails the test when the supervisor does not list it.
pub fn status(sup: &Supervisor, name: &str) -> PluginStatus {
    sup.plugins()
        .into_iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("{name} is not listed"))
}

/// Calls `tool` with JSON arguments; its JSON answer. Fails the test when
/// the call fails or the answer is not JSON.
pub async fn op(sup: &Supervisor, tool: &str, args: serde_json::Value) -> serde_json::Value {
    let out = sup.call_tool(tool, &args.to_string()).await.expect("call");
    serde_json::from_str(&out).expect("json")
}

/// A Python plugin under plugins/ (`examples/hello-py`,
/// `testing/py-faults`), built with prx-plugin and componentize-py;
/// returns its directory, which then holds plugin.wasm.
pub fn python_plugin(path: &str) -> PathBuf {
    built_plugin(path, "componentize-py comes from .venv")
}

/// A JavaScript or TypeScript plugin under plugins/
/// (`examples/text-stats-ts`), built with prx-plugin (tsc, esbuild,
/// componentize-js); returns its directory, which then holds plugin.wasm.
pub fn js_plugin(path: &str) -> PathBuf {
    built_plugin(path, "the JavaScript toolchain comes from plugins/cli/js")
}

/// Builds a plugin with `prx-plugin build`. Builds run one at a time, and
/// prx-plugin skips a plugin whose inputs did not change since its last
/// build.
pub fn built_plugin(path: &str, toolchain: &str) -> PathBuf {
    static BUILDS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = BUILDS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = Path::new(env!("PRX_ROOT")).join("plugins").join(path);
    let out = Command::new(bin("prx-plugin"))
        .arg("build")
        .arg("--dir")
        .arg(&dir)
        .output()
        .expect("run prx-plugin build");
    assert!(
        out.status.success(),
        "prx-plugin build {} failed ({toolchain}: scripts/bootstrap.sh):\n{}{}",
        dir.display(),
        stdout(&out),
        stderr(&out)
    );
    dir
}

/// A plugins directory and a state directory of one test.
pub struct Env {
    pub root: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Self {
        Self {
            root: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn plugins(&self) -> PathBuf {
        self.root.path().join("plugins")
    }

    pub fn state(&self) -> PathBuf {
        self.root.path().join("state")
    }

    /// Adds `plugins/<dir>/` with the given manifest and guest wasm.
    pub fn add(&self, dir: &str, guest_crate: &str, manifest: &str) -> PathBuf {
        let path = self.plugins().join(dir);
        std::fs::create_dir_all(&path).expect("plugin dir");
        std::fs::write(path.join("plugin.toml"), manifest).expect("manifest");
        std::fs::copy(guest(guest_crate), path.join("plugin.wasm")).expect("wasm");
        path
    }

    /// Adds `plugins/<dir>/` with a plugin prx-plugin built (Python,
    /// JavaScript) and `manifest` (its own plugin.toml when None).
    pub fn add_built(&self, dir: &str, source: &Path, manifest: Option<&str>) -> PathBuf {
        let path = self.plugins().join(dir);
        std::fs::create_dir_all(&path).expect("plugin dir");
        match manifest {
            Some(text) => std::fs::write(path.join("plugin.toml"), text),
            None => std::fs::copy(source.join("plugin.toml"), path.join("plugin.toml")).map(drop),
        }
        .expect("manifest");
        std::fs::copy(source.join("plugin.wasm"), path.join("plugin.wasm")).expect("wasm");
        path
    }

    /// Adds one of `plugins/examples/` (a Rust guest) with its own
    /// manifest.
    pub fn add_example(&self, name: &str) -> PathBuf {
        let manifest = Path::new(env!("PRX_ROOT"))
            .join("plugins/examples")
            .join(name)
            .join("plugin.toml");
        let text = std::fs::read_to_string(&manifest).expect("example manifest");
        self.add(name, name, &text)
    }

    pub fn config(&self) -> SupervisorConfig {
        std::fs::create_dir_all(self.plugins()).expect("plugins dir");
        let mut config = SupervisorConfig::new(self.plugins(), self.state());
        config.worker_binary = Some(bin("prx-worker"));
        config.cache_dir = Some(shared_cache());
        config
    }

    pub async fn supervisor(&self) -> Supervisor {
        Supervisor::start(self.config())
            .await
            .expect("supervisor starts")
    }
}

/// The echo example's manifest (plugin `echo-tool`, tool `echo`).
pub fn echo_manifest() -> String {
    tool_manifest("echo-tool", "echo", "")
}

/// A tool manifest with the given name and extra TOML appended.
pub fn tool_manifest(plugin: &str, tool: &str, extra: &str) -> String {
    format!(
        "[plugin]\nname = \"{plugin}\"\nversion = \"0.1.0\"\nwasm = \"plugin.wasm\"\n\n[[capabilities]]\ntype = \"tool\"\nname = \"{tool}\"\n\n{extra}\n"
    )
}

/// `prx up` running in the background; killed on drop.
pub struct Daemon {
    pub child: Child,
    pub state: PathBuf,
    /// What it printed on stdout up to its readiness line.
    pub banner: Vec<String>,
}

/// How to start a [`Daemon`] beyond the defaults.
#[derive(Default)]
pub struct Launch<'a> {
    pub args: &'a [&'a str],
    pub env: &'a [(&'a str, &'a str)],
    /// Where its stderr (its log) goes; inherited when `None`.
    pub log: Option<PathBuf>,
}

impl Daemon {
    /// Starts `prx up` and waits for its readiness line.
    pub fn start(env: &Env) -> Self {
        Self::start_with(env, &[])
    }

    /// Starts `prx up <extra> --plugins .. --state ..`.
    pub fn start_with(env: &Env, extra: &[&str]) -> Self {
        Self::launch(
            env,
            Launch {
                args: extra,
                ..Launch::default()
            },
        )
    }

    /// Starts `prx up` as `how` says and waits for its readiness line.
    pub fn launch(env: &Env, how: Launch<'_>) -> Self {
        std::fs::create_dir_all(env.plugins()).expect("plugins dir");
        let stderr = match &how.log {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("log file")),
            None => Stdio::inherit(),
        };
        let mut child = Command::new(bin("prx"))
            .arg("up")
            .args(how.args)
            .envs(how.env.iter().copied())
            .arg("--plugins")
            .arg(env.plugins())
            .arg("--state")
            .arg(env.state())
            .env("PRX_WORKER_BIN", bin("prx-worker"))
            .arg("--cache-dir")
            .arg(shared_cache())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn prx up");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut banner = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.starts_with("prx: ready") => break,
                Ok(line) => banner.push(line),
                Err(_) => {
                    let _ = child.kill();
                    panic!("prx up did not print its readiness line");
                }
            }
        }
        Self {
            child,
            state: env.state(),
            banner,
        }
    }

    /// The address of its HTTP listener, from its `prx: console at` line.
    pub fn http_addr(&self) -> String {
        self.banner
            .iter()
            .find_map(|l| l.strip_prefix("prx: console at http://"))
            .map(|rest| rest.trim_end_matches('/').to_owned())
            .expect("prx up printed no console address (was --http given?)")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs `prx <args> --state <state>`.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(bin("prx"))
            .args(args)
            .arg("--state")
            .arg(&self.state)
            .output()
            .expect("run prx")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The parent pid of a process, from /proc.
pub fn parent_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// A valid component whose one core function is a very long chain of
/// additions: cheap to write, slow for Cranelift to compile.
pub fn slow_to_compile(additions: usize) -> Vec<u8> {
    let mut body = String::with_capacity(additions * 24);
    for _ in 0..additions {
        body.push_str("i32.const 1 i32.add\n");
    }
    let text = format!(
        "(component (core module (func (export \"f\") (param i32) (result i32) local.get 0\n{body})))"
    );
    wat::parse_str(&text).expect("valid component text")
}

/// `wasm` with a custom section `name` holding `payload` appended: other
/// bytes (a new build to the compile cache), the same behaviour.
pub fn with_custom_section(mut wasm: Vec<u8>, name: &str, payload: &[u8]) -> Vec<u8> {
    let size = 1 + name.len() + payload.len();
    assert!(size < 128, "one-byte LEB128 sizes only");
    wasm.extend_from_slice(&[0, size as u8, name.len() as u8]);
    wasm.extend_from_slice(name.as_bytes());
    wasm.extend_from_slice(payload);
    wasm
}

/// The provider and storage worlds of a "worlds" test plugin (py-worlds,
/// js-worlds): its chat answers `MODEL@TEMPERATURE: LAST MESSAGE` and, for
/// the model `tools`, one call of its `tool`; it is the memory backend.
pub async fn chat_and_memory_answer(sup: &Supervisor, provider: &str, tool: &str) {
    let user = |text: &str| prx_supervisor::ChatMessage {
        role: "user".into(),
        content: text.into(),
    };
    let reply = sup
        .chat(provider, vec![user("hello")], "small", 0.5)
        .await
        .expect("the provider answers");
    assert_eq!(reply.text.as_deref(), Some("small@0.5: hello"));
    let calls = sup
        .chat(provider, vec![user("x")], "tools", 0.0)
        .await
        .expect("the provider answers");
    assert_eq!(calls.text, None);
    assert_eq!(
        calls
            .tool_calls
            .iter()
            .map(|c| (c.id.as_str(), c.name.as_str(), c.arguments.as_str()))
            .collect::<Vec<_>>(),
        [("call-1", tool, r#"{"x":1}"#)]
    );

    let id = sup
        .store_memory("The sky is blue", "fact")
        .await
        .expect("stored");
    sup.store_memory("Grass is green", "fact")
        .await
        .expect("stored");
    let found = sup.recall_memory("sky", 5).await.expect("recalled");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].id.as_str(), found[0].text.as_str()),
        (id.as_str(), "The sky is blue")
    );
    assert_eq!(sup.count_memories().await.expect("counted"), 2);
    assert!(sup.forget_memory(&id).await.expect("forgotten"));
    assert_eq!(sup.count_memories().await.expect("counted"), 1);
}
