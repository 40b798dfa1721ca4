//! `plugin.toml`: parsing and validation of a plugin's manifest.
//!
//! The manifest is written by a plugin author the operator may not trust,
//! so this module refuses anything it does not understand: unknown keys,
//! names that are not kebab-case, a `wasm` path that could leave the
//! plugin's directory. Defaults are the PRX 0.1.0 contract. Every error
//! names the file, the key (and line where there is one) and the fix.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[path = "manifest_names.rs"]
mod names;
#[path = "manifest_short_form.rs"]
mod short_form;
pub use names::{check_capability_name, check_name};
use names::{check_pattern, check_relative_path};
pub use short_form::HttpAllowlistTable;

/// The PRX 0.1.0 default compute budget per invocation.
pub const DEFAULT_MAX_FUEL: u64 = 100_000_000;
/// The PRX 0.1.0 default linear memory limit.
pub const DEFAULT_MAX_MEMORY_MB: u64 = 16;
/// The PRX 0.1.0 default wall-clock limit per invocation.
pub const DEFAULT_MAX_EXECUTION_TIME_MS: u64 = 5_000;
/// The PRX 0.1.0 default number of outbound requests per invocation.
pub const DEFAULT_MAX_HTTP_REQUESTS: u32 = 10;
/// The PRX 0.1.0 default KV quota.
pub const DEFAULT_MAX_KV_STORAGE_KB: u64 = 1_024;

/// Above this a memory limit is surely a typo (4 GiB is wasm32's ceiling).
const MAX_MEMORY_MB_CEILING: u64 = 4_096;
/// Above this an invocation is not a call but a job; ten minutes.
const MAX_EXECUTION_TIME_CEILING_MS: u64 = 600_000;
/// The most kv storage a plugin may ask for, in KiB: 1 TiB (2^30 KiB).
/// A manifest asking for more is refused. It is also the cap when the
/// operator sets none; `max_kv_storage_kb` under `[resources.default]` or
/// `[resources.plugins]` in the supervisor's config lowers it (a cap above
/// it is refused there). In bytes it is 2^40, far from `u64::MAX`.
pub const MAX_KV_STORAGE_KB_CEILING: u64 = 1 << 30;
/// Longest plugin or capability name; keeps paths and log lines sane.
const MAX_NAME_LEN: usize = 64;

/// A parsed, validated manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub plugin: PluginSection,
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    #[serde(default)]
    pub permissions: Permissions,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub config: BTreeMap<String, ConfigValue>,
    /// PRX's Python SDK writes the allowlist as a table of its own,
    /// `[http_allowlist] urls = [...]`; folded into `[permissions]` at load.
    #[serde(default, skip_serializing)]
    pub http_allowlist: Option<HttpAllowlistTable>,
    /// The manifest used PRX's short form, `[plugin] capability`.
    #[serde(skip)]
    short_form: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSection {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub description: String,
    /// The component, relative to the manifest; `plugin.wasm` when absent
    /// (as PRX reads it).
    #[serde(default = "default_wasm")]
    pub wasm: String,
    #[serde(default)]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// PRX's plugin API version; `1` is the only one there is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// PRX's Python SDK's short form for a plugin of one capability,
    /// `capability = "tool"` instead of `[[capabilities]]`; folded into
    /// `capabilities` at load (and gone from then on).
    #[serde(default, skip_serializing)]
    pub capability: Option<CapabilityType>,
}

fn default_wasm() -> String {
    "plugin.wasm".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CapabilityType {
    Tool,
    Hook,
    Middleware,
    Cron,
    Provider,
    Storage,
    /// A bus module (this host's addition to PRX 0.1.0's six).
    Module,
}

impl CapabilityType {
    /// The component export this capability needs.
    pub fn export(self) -> &'static str {
        match self {
            Self::Tool => "prx:plugin/tool-exports@0.1.0",
            Self::Hook => "prx:plugin/hook-exports@0.1.0",
            Self::Middleware => "prx:plugin/middleware-exports@0.1.0",
            Self::Cron => "prx:plugin/cron-exports@0.1.0",
            Self::Provider => "prx:plugin/provider-exports@0.1.0",
            Self::Storage => "prx:plugin/storage-exports@0.1.0",
            Self::Module => "prx:plugin/module-exports@0.1.0",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tool => "tool",
            Self::Hook => "hook",
            Self::Middleware => "middleware",
            Self::Cron => "cron",
            Self::Provider => "provider",
            Self::Storage => "storage",
            Self::Module => "module",
        }
    }
}

impl fmt::Display for CapabilityType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capability {
    #[serde(rename = "type")]
    pub kind: CapabilityType,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub events: Vec<EventPattern>,
    #[serde(default)]
    pub priority: Option<i64>,
    #[serde(default)]
    pub schedule: Option<String>,
}

/// A hook's event pattern: a table (`pattern`, `description`) as in the PRX
/// guide, or a bare string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EventPattern {
    Table(EventPatternTable),
    Bare(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventPatternTable {
    pub pattern: String,
    #[serde(default)]
    pub description: Option<String>,
}

impl EventPattern {
    pub fn pattern(&self) -> &str {
        match self {
            Self::Table(t) => &t.pattern,
            Self::Bare(s) => s,
        }
    }
}

/// A permission a plugin can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Permission {
    #[serde(rename = "log")]
    Log,
    #[serde(rename = "config")]
    Config,
    #[serde(rename = "kv")]
    Kv,
    #[serde(rename = "events")]
    Events,
    #[serde(rename = "http-outbound")]
    HttpOutbound,
    #[serde(rename = "memory")]
    Memory,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Log => "log",
            Self::Config => "config",
            Self::Kv => "kv",
            Self::Events => "events",
            Self::HttpOutbound => "http-outbound",
            Self::Memory => "memory",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Permissions {
    #[serde(default)]
    pub required: Vec<Permission>,
    #[serde(default)]
    pub optional: Vec<Permission>,
    #[serde(default)]
    pub http_allowlist: Vec<String>,
    /// Named in the PRX 0.1.0 guide as future work; accepted so such
    /// manifests load, and refused when not empty (no plugin gets files).
    #[serde(default)]
    pub filesystem_allowlist: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(default = "default_fuel")]
    pub max_fuel: u64,
    #[serde(default = "default_memory")]
    pub max_memory_mb: u64,
    #[serde(default = "default_time")]
    pub max_execution_time_ms: u64,
    #[serde(default = "default_http")]
    pub max_http_requests: u32,
    #[serde(default = "default_kv")]
    pub max_kv_storage_kb: u64,
    /// This host's addition: stop the plugin's worker after this many
    /// seconds without a call; the next call starts one from the compile
    /// cache. Absent: the worker runs until the plugin is unloaded.
    #[serde(default)]
    pub idle_stop_s: Option<u64>,
    /// This host's addition: worker processes for this plugin, calls going
    /// to the least busy; for plugins that keep no state in their instance.
    #[serde(default = "default_workers")]
    pub workers: u32,
}

/// The most workers one plugin may ask for.
pub const MAX_WORKERS: u32 = 16;

fn default_workers() -> u32 {
    1
}

fn default_fuel() -> u64 {
    DEFAULT_MAX_FUEL
}
fn default_memory() -> u64 {
    DEFAULT_MAX_MEMORY_MB
}
fn default_time() -> u64 {
    DEFAULT_MAX_EXECUTION_TIME_MS
}
fn default_http() -> u32 {
    DEFAULT_MAX_HTTP_REQUESTS
}
fn default_kv() -> u64 {
    DEFAULT_MAX_KV_STORAGE_KB
}

impl Resources {
    /// The kv quota in bytes. Saturates rather than wrapping, although a
    /// validated manifest is at most [`MAX_KV_STORAGE_KB_CEILING`] KiB.
    pub fn kv_quota_bytes(&self) -> u64 {
        self.max_kv_storage_kb.saturating_mul(1024)
    }
}

impl Default for Resources {
    fn default() -> Self {
        Self {
            max_fuel: DEFAULT_MAX_FUEL,
            max_memory_mb: DEFAULT_MAX_MEMORY_MB,
            max_execution_time_ms: DEFAULT_MAX_EXECUTION_TIME_MS,
            max_http_requests: DEFAULT_MAX_HTTP_REQUESTS,
            max_kv_storage_kb: DEFAULT_MAX_KV_STORAGE_KB,
            idle_stop_s: None,
            workers: 1,
        }
    }
}

/// `[config]` values are strings; any other TOML type is refused with a hint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConfigValue(pub toml::Value);

/// Why a manifest was refused. The message is complete on its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ManifestError {
    pub path: PathBuf,
    pub message: String,
}

impl Manifest {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|e| ManifestError {
            path: path.to_owned(),
            message: format!("cannot read the manifest: {e}"),
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates manifest text; `path` is only used in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ManifestError> {
        let err = |message: String| ManifestError {
            path: path.to_owned(),
            message,
        };
        let mut manifest: Manifest =
            toml::from_str(text).map_err(|e| err(describe_toml_error(&e, text)))?;
        manifest.fold_short_forms().map_err(err)?;
        manifest.validate().map_err(err)?;
        Ok(manifest)
    }

    /// The `[config]` table as strings (validated at load).
    pub fn config_pairs(&self) -> Vec<(String, String)> {
        self.config
            .iter()
            .filter_map(|(k, v)| v.0.as_str().map(|s| (k.clone(), s.to_owned())))
            .collect()
    }

    /// Capabilities of one type.
    pub fn capabilities_of(&self, kind: CapabilityType) -> impl Iterator<Item = &Capability> {
        self.capabilities.iter().filter(move |c| c.kind == kind)
    }

    /// Where the wasm is, given the directory holding the manifest. The path
    /// was validated to stay inside that directory.
    pub fn wasm_path(&self, plugin_dir: &Path) -> PathBuf {
        plugin_dir.join(&self.plugin.wasm)
    }

    fn validate(&self) -> Result<(), String> {
        check_name("[plugin].name", &self.plugin.name)?;
        if let Some(version) = &self.plugin.api_version
            && version != "1"
        {
            return Err(format!(
                "[plugin].api_version = {version:?} is not one this host speaks; PRX 0.1.0 plugins are api_version \"1\""
            ));
        }
        if self.plugin.version.trim().is_empty() {
            return Err("[plugin].version is empty; write a version such as \"0.1.0\"".into());
        }
        check_relative_path("[plugin].wasm", &self.plugin.wasm)?;
        if self.capabilities.is_empty() {
            return Err(
                "no [[capabilities]]: declare at least one, e.g. [[capabilities]] type = \"tool\" name = \"my_tool\"".into(),
            );
        }
        for (i, cap) in self.capabilities.iter().enumerate() {
            check_capability(i, cap, self.short_form)?;
        }
        self.check_permissions()?;
        self.check_resources()?;
        for (key, value) in &self.config {
            if !value.0.is_str() {
                return Err(format!(
                    "[config].{key} must be a string (found {}): write {key} = \"{}\"",
                    value.0.type_str(),
                    value.0
                ));
            }
        }
        Ok(())
    }

    fn check_permissions(&self) -> Result<(), String> {
        let p = &self.permissions;
        if let Some(dup) = p.required.iter().find(|r| p.optional.contains(r)) {
            return Err(format!(
                "permission `{dup}` is both required and optional; keep it in one list"
            ));
        }
        let wants_http = p.required.contains(&Permission::HttpOutbound)
            || p.optional.contains(&Permission::HttpOutbound);
        if wants_http && p.http_allowlist.is_empty() {
            return Err(
                "http-outbound is declared but [permissions].http_allowlist is empty; list the origins the plugin may call, e.g. http_allowlist = [\"https://api.example.com\"]".into(),
            );
        }
        if !wants_http && !p.http_allowlist.is_empty() {
            return Err(
                "[permissions].http_allowlist is set but http-outbound is not declared; add \"http-outbound\" to required or optional".into(),
            );
        }
        if !p.filesystem_allowlist.is_empty() {
            return Err(
                "[permissions].filesystem_allowlist is not supported: plugins get no filesystem; remove it and use kv".into(),
            );
        }
        Ok(())
    }

    fn check_resources(&self) -> Result<(), String> {
        let r = &self.resources;
        let positive = [
            ("max_fuel", r.max_fuel),
            ("max_memory_mb", r.max_memory_mb),
            ("max_execution_time_ms", r.max_execution_time_ms),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(format!("[resources].{key} is 0; it must be positive"));
            }
        }
        if r.max_memory_mb > MAX_MEMORY_MB_CEILING {
            return Err(format!(
                "[resources].max_memory_mb = {} is above {MAX_MEMORY_MB_CEILING} (wasm32 cannot address more)",
                r.max_memory_mb
            ));
        }
        if r.max_execution_time_ms > MAX_EXECUTION_TIME_CEILING_MS {
            return Err(format!(
                "[resources].max_execution_time_ms = {} is above {MAX_EXECUTION_TIME_CEILING_MS}",
                r.max_execution_time_ms
            ));
        }
        if r.max_kv_storage_kb > MAX_KV_STORAGE_KB_CEILING {
            return Err(format!(
                "[resources].max_kv_storage_kb = {} is above {MAX_KV_STORAGE_KB_CEILING} (1 TiB, the most a plugin may ask for); ask for less",
                r.max_kv_storage_kb
            ));
        }
        match r.idle_stop_s {
            Some(0) => {
                return Err("[resources].idle_stop_s is 0; it must be at least 1 (or left out to keep the worker running)".into());
            }
            Some(_)
                if self
                    .capabilities_of(CapabilityType::Module)
                    .next()
                    .is_some() =>
            {
                return Err("[resources].idle_stop_s cannot be used with a `module` capability: a module's RPCs and subscriptions live in its instance, and a stopped worker would miss its events; remove idle_stop_s".into());
            }
            _ => {}
        }
        if !(1..=MAX_WORKERS).contains(&r.workers) {
            return Err(format!(
                "[resources].workers = {} must be between 1 and {MAX_WORKERS}",
                r.workers
            ));
        }
        if r.workers > 1 {
            if self
                .capabilities_of(CapabilityType::Module)
                .next()
                .is_some()
            {
                return Err("[resources].workers above 1 cannot be used with a `module` capability: a module's RPCs and subscriptions live in one instance; remove workers".into());
            }
            if r.idle_stop_s.is_some() {
                return Err("[resources].workers above 1 cannot be combined with idle_stop_s; keep one of them".into());
            }
        }
        Ok(())
    }
}

fn check_capability(index: usize, cap: &Capability, short_form: bool) -> Result<(), String> {
    let at = format!("[[capabilities]] #{} ({})", index + 1, cap.kind);
    if let Some(name) = &cap.name {
        check_capability_name(&at, name)?;
    }
    // A tool of PRX's short form, `[plugin] capability = "tool"`, has no
    // name in its manifest: it is routed by the name its get-spec gives.
    let needs_name = match cap.kind {
        CapabilityType::Tool => !short_form,
        CapabilityType::Provider | CapabilityType::Storage => true,
        _ => false,
    };
    if needs_name && cap.name.is_none() {
        return Err(format!("{at} needs a `name`"));
    }
    if cap.kind == CapabilityType::Hook && cap.events.is_empty() {
        return Err(format!(
            "{at} needs at least one event pattern: [[capabilities.events]] pattern = \"tool.*\""
        ));
    }
    for event in &cap.events {
        if cap.kind != CapabilityType::Hook {
            return Err(format!("{at} has `events`, which only hooks use"));
        }
        check_pattern(&at, event.pattern())?;
    }
    if let Some(priority) = cap.priority {
        if cap.kind != CapabilityType::Middleware {
            return Err(format!("{at} has `priority`, which only middleware uses"));
        }
        if !(0..=100).contains(&priority) {
            return Err(format!("{at} priority = {priority} is outside 0..=100"));
        }
    }
    match (&cap.schedule, cap.kind) {
        (None, CapabilityType::Cron) => Err(format!(
            "{at} needs a `schedule`, a 5-field cron expression such as \"0 * * * *\""
        )),
        (Some(_), kind) if kind != CapabilityType::Cron => {
            Err(format!("{at} has `schedule`, which only cron uses"))
        }
        (Some(schedule), _) => crate::cron_expr::CronSchedule::parse(schedule)
            .map(|_| ())
            .map_err(|e| format!("{at} schedule: {e}")),
        _ => Ok(()),
    }
}

/// Turns a TOML/serde error into one line with the line number and key.
pub(crate) fn describe_toml_error(e: &toml::de::Error, text: &str) -> String {
    let message = e.message().trim_end().replace('\n', " ");
    let message = message
        .replace("unknown field ", "unknown key ")
        .replace("missing field ", "missing key ");
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {message}")
        }
        None => message,
    }
}

#[cfg(test)]
#[path = "manifest_tests.rs"]
mod tests;
