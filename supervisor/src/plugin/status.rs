//! What a plugin is doing and has done, as operators see it: its state,
//! its status (the JSON of `prx status` and the API), and the fingerprint
//! of its files that tells a reload whether anything changed.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use prx_ipc::CodeSource;
use serde::{Deserialize, Serialize};

use crate::manifest::{CapabilityType, Manifest};

use super::Plugin;

/// Where a plugin is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginState {
    Starting,
    Running,
    Restarting,
    /// Waiting before the next restart (exponential backoff).
    BackingOff {
        until: SystemTime,
    },
    /// Crashed too often, or its worker broke the protocol: not restarted
    /// until an operator releases it, or (crashes only) until `release_at`.
    Quarantined {
        reason: String,
        release_at: Option<SystemTime>,
    },
    /// Could not be loaded (manifest, compile, start-up code): not retried
    /// until its files change.
    Failed(String),
    Stopped,
    /// Its worker was stopped after `[resources] idle_stop_s` without a
    /// call; the next call starts one.
    Idle,
}

impl PluginState {
    /// Which state, without what it carries.
    pub fn kind(&self) -> StateKind {
        match self {
            Self::Starting => StateKind::Starting,
            Self::Running => StateKind::Running,
            Self::Restarting => StateKind::Restarting,
            Self::BackingOff { .. } => StateKind::BackingOff,
            Self::Quarantined { .. } => StateKind::Quarantined,
            Self::Failed(_) => StateKind::Failed,
            Self::Stopped => StateKind::Stopped,
            Self::Idle => StateKind::Idle,
        }
    }

    pub fn label(&self) -> &'static str {
        self.kind().as_str()
    }
}

/// A plugin's state as its status shows it; in JSON, its snake_case name
/// (`running`, `backing_off`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateKind {
    Starting,
    Running,
    Restarting,
    BackingOff,
    Quarantined,
    Failed,
    Stopped,
    Idle,
}

impl StateKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Restarting => "restarting",
            Self::BackingOff => "backing_off",
            Self::Quarantined => "quarantined",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
            Self::Idle => "idle",
        }
    }
}

impl std::fmt::Display for StateKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a sandbox layer stands in a worker, as its status shows it; in JSON
/// `applied`, `disabled` or `unavailable: <why>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LayerState {
    Applied,
    /// Turned off by the operator.
    Disabled,
    /// The host cannot provide it, and why.
    Unavailable(String),
}

impl From<&prx_ipc::LayerStatus> for LayerState {
    fn from(status: &prx_ipc::LayerStatus) -> Self {
        match status {
            prx_ipc::LayerStatus::Applied => Self::Applied,
            prx_ipc::LayerStatus::Disabled => Self::Disabled,
            prx_ipc::LayerStatus::Unavailable(why) => Self::Unavailable(why.clone()),
        }
    }
}

impl std::fmt::Display for LayerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Applied => f.write_str("applied"),
            Self::Disabled => f.write_str("disabled"),
            Self::Unavailable(why) => write!(f, "unavailable: {why}"),
        }
    }
}

impl Serialize for LayerState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LayerState {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.as_str() {
            "applied" => Ok(Self::Applied),
            "disabled" => Ok(Self::Disabled),
            other => other
                .strip_prefix("unavailable: ")
                .map(|why| Self::Unavailable(why.to_owned()))
                .ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "{other:?} is not a layer state (applied, disabled, unavailable: <why>)"
                    ))
                }),
        }
    }
}

/// How a worker got the plugin's code, as its status shows it; in JSON,
/// `compiled`, `cache, mapped` or `cache, copied`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CodeOrigin {
    /// Compiled from the component's bytes for this plugin.
    #[serde(rename = "compiled")]
    Compiled,
    /// The compile cache's artifact, mapped and run in place.
    #[serde(rename = "cache, mapped")]
    Mapped,
    /// The compile cache's artifact, copied (it could not be mapped
    /// executable).
    #[serde(rename = "cache, copied")]
    Copied,
}

impl From<CodeSource> for CodeOrigin {
    fn from(source: CodeSource) -> Self {
        match source {
            CodeSource::Compiled => Self::Compiled,
            CodeSource::Mapped => Self::Mapped,
            CodeSource::Copied => Self::Copied,
        }
    }
}

/// What `prx plugins` shows of a plugin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PluginStatus {
    pub name: String,
    pub version: String,
    pub dir: PathBuf,
    pub capabilities: Vec<String>,
    pub state: StateKind,
    /// Why it is failed or quarantined.
    pub error: Option<String>,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub last_exit: Option<String>,
    pub uptime_ms: Option<u64>,
    /// Calls being served by the current worker.
    pub in_flight: usize,
    /// When backing off, or quarantined for crashes: the next start, in ms
    /// since the Unix epoch.
    pub restart_at_ms: Option<u64>,
    /// Log lines dropped by the per-plugin rate limit.
    #[serde(default)]
    pub log_dropped: u64,
    /// The current worker's sandbox layers (and start-up steps), each with
    /// how it stands; in JSON `applied`, `disabled` or `unavailable: <why>`.
    #[serde(default)]
    pub sandbox: Vec<(String, LayerState)>,
    /// RPC names a module registered.
    #[serde(default)]
    pub rpcs: Vec<String>,
    /// Events its handler (hook or module) received, and how many of those
    /// failed (an error, a trap, no answer).
    #[serde(default)]
    pub events_handled: u64,
    #[serde(default)]
    pub handler_failures: u64,
    /// The first 12 hex digits of the SHA-256 of the manifest and
    /// component being served: which build runs.
    #[serde(default)]
    pub digest: String,
    /// How the current worker got the plugin's code.
    #[serde(default)]
    pub code: Option<CodeOrigin>,
    /// Times a new version of the plugin took over while it ran.
    #[serde(default)]
    pub reloads: u32,
    /// Why the newest version of its files is not the one serving (it
    /// failed validation, asked for more than the policy allows, or did
    /// not start); the version shown keeps serving.
    #[serde(default)]
    pub reload_error: Option<String>,
    /// Calls, errors, latency over recent calls and fuel (all versions).
    #[serde(default)]
    pub calls: crate::metrics::CallSummary,
    /// With `[resources] idle_stop_s`: times its idle worker was stopped,
    /// and how long the last call that found it stopped waited for a new
    /// one (a start from the compile cache).
    #[serde(default)]
    pub idle_stops: u32,
    #[serde(default)]
    pub last_wake_ms: Option<f64>,
    /// With `[resources] workers` above 1: the process ids of the workers
    /// beyond the first (`pid`).
    #[serde(default)]
    pub spare_pids: Vec<u32>,
}

/// Sizes and modification times of a plugin's manifest and component.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprint(Vec<Option<(u64, SystemTime)>>);

impl Fingerprint {
    /// Reads the fingerprint of the plugin in `dir` now.
    pub fn of(dir: &Path) -> Self {
        let wasm = Manifest::load(&dir.join("plugin.toml"))
            .map(|m| m.wasm_path(dir))
            .unwrap_or_else(|_| dir.join("plugin.wasm"));
        Self::of_files(dir, &wasm)
    }

    /// The same, with the component's path already known.
    pub fn of_files(dir: &Path, wasm: &Path) -> Self {
        let stat = |p: &Path| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.len(), m.modified().ok()?)))
        };
        Self(vec![stat(&dir.join("plugin.toml")), stat(wasm)])
    }
}

impl Plugin {
    pub fn status(&self) -> PluginStatus {
        let state = self.state();
        let worker = self.worker();
        PluginStatus {
            name: self.name.to_string(),
            version: self.manifest.plugin.version.clone(),
            dir: self.dir.clone(),
            capabilities: self
                .manifest
                .capabilities
                .iter()
                .map(|c| match &c.name {
                    Some(name) => format!("{}:{name}", c.kind),
                    // A tool of PRX's short form: the name its get-spec
                    // gave, by which it is routed.
                    None => match (c.kind, self.tool_spec()) {
                        (CapabilityType::Tool, Some(spec)) => {
                            format!("tool:{}", spec.name.escaped())
                        }
                        _ => c.kind.to_string(),
                    },
                })
                .collect(),
            error: match &state {
                PluginState::Failed(reason) | PluginState::Quarantined { reason, .. } => {
                    Some(reason.clone())
                }
                _ => None,
            },
            restart_at_ms: match &state {
                PluginState::BackingOff { until }
                | PluginState::Quarantined {
                    release_at: Some(until),
                    ..
                } => until
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_millis() as u64),
                _ => None,
            },
            state: state.kind(),
            pid: worker.as_ref().map(|w| w.pid()),
            restarts: self.restarts.load(Ordering::Relaxed),
            last_exit: self
                .last_exit
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            in_flight: worker.as_ref().map(|w| w.in_flight()).unwrap_or(0),
            log_dropped: self.broker.log_dropped(),
            sandbox: worker
                .as_ref()
                .map(|w| {
                    w.sandbox()
                        .layers
                        .iter()
                        .map(|l| (l.layer.clone(), LayerState::from(&l.status)))
                        .collect()
                })
                .unwrap_or_default(),
            uptime_ms: worker.as_ref().map(|w| w.uptime().as_millis() as u64),
            rpcs: self.rpcs(),
            events_handled: self.events_handled.load(Ordering::Relaxed),
            handler_failures: self.handler_failures.load(Ordering::Relaxed),
            digest: self.digest_hex(),
            code: worker.as_ref().map(|w| {
                if self.compiled_here.load(Ordering::Relaxed) {
                    CodeOrigin::Compiled
                } else {
                    w.code().into()
                }
            }),
            reloads: self.reloads.load(Ordering::Relaxed),
            reload_error: self.reload_error().map(|(_, why)| why),
            calls: self.stats().summary(),
            idle_stops: self.idle.stops(),
            spare_pids: self.spare_pids(),
            last_wake_ms: self.idle.last_wake_ms(),
        }
    }

    /// The plugin's files when they were last looked at.
    pub fn files(&self) -> Fingerprint {
        self.files.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Files that changed to the very same content.
    pub fn set_files(&self, files: Fingerprint) {
        *self.files.lock().unwrap_or_else(|p| p.into_inner()) = files;
    }

    /// The first 12 hex digits of the content digest.
    pub fn digest_hex(&self) -> String {
        self.digest[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The refused newer version's files and why, if one was refused.
    pub fn reload_error(&self) -> Option<(Fingerprint, String)> {
        self.reload_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records that the version in `files` was refused; this one serves on.
    pub fn set_reload_error(&self, files: Fingerprint, why: String) {
        *self.reload_error.lock().unwrap_or_else(|p| p.into_inner()) = Some((files, why));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_states_read_and_write_the_status_json_text() {
        for (state, text) in [
            (LayerState::Applied, "\"applied\""),
            (LayerState::Disabled, "\"disabled\""),
            (
                LayerState::Unavailable("no landlock".into()),
                "\"unavailable: no landlock\"",
            ),
        ] {
            assert_eq!(serde_json::to_string(&state).expect("write"), text);
            assert_eq!(
                serde_json::from_str::<LayerState>(text).expect("read"),
                state
            );
        }
        assert!(serde_json::from_str::<LayerState>("\"maybe\"").is_err());
        assert_eq!(
            serde_json::to_string(&StateKind::BackingOff).expect("write"),
            "\"backing_off\""
        );
        assert_eq!(
            serde_json::to_string(&CodeOrigin::Mapped).expect("write"),
            "\"cache, mapped\""
        );
    }
}
