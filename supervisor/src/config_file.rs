//! The operator's config file (`prx up --config prx.toml`).
//!
//! Every key is optional and has the default [`SupervisorConfig::new`]
//! gives; unknown keys are errors with their line, so a typo never turns
//! into a silently ignored setting. Relative paths are relative to the
//! file's directory. `docs/prx.toml` lists every key with its default, and
//! a test parses it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::broker::rate::LogRate;
use crate::config::{
    KvBackend, LogFormat, PermissionPolicy, ResourceCap, ResourceCaps, SupervisorConfig,
};
use crate::manifest::{MAX_KV_STORAGE_KB_CEILING, Permission};
use crate::worker_handle::verify::Layer;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    plugins: Option<PathBuf>,
    state: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    #[serde(default)]
    permissions: Permissions,
    #[serde(default)]
    restart: Restart,
    #[serde(default)]
    liveness: Liveness,
    #[serde(default)]
    calls: Calls,
    #[serde(default)]
    logs: Logs,
    #[serde(default)]
    events: Events,
    #[serde(default)]
    kv: Kv,
    #[serde(default)]
    sandbox: Sandbox,
    #[serde(default)]
    http: Http,
    #[serde(default)]
    middleware: Middleware,
    #[serde(default)]
    memory: Memory,
    #[serde(default)]
    reload: Reload,
    #[serde(default)]
    resources: Resources,
    #[serde(default)]
    api: Api,
    cluster: Option<Cluster>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cluster {
    servers: Vec<String>,
    node: Option<String>,
    credentials: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    call_timeout_ms: Option<u64>,
    heartbeat_ms: Option<u64>,
    kv_replicas: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Resources {
    #[serde(default)]
    default: ResourceCap,
    #[serde(default)]
    plugins: BTreeMap<String, ResourceCap>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Api {
    socket_mode: Option<String>,
    http: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    max_request_kb: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Middleware {
    fail_open: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Memory {
    backend: Option<String>,
    health_interval_s: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Http {
    allowed_ranges: Option<Vec<String>>,
    max_body_kb: Option<u64>,
    timeout_s: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sandbox {
    required: Option<BTreeSet<Layer>>,
    seccomp: Option<SeccompSetting>,
    address_space_base_mb: Option<u64>,
    cpu_seconds: Option<u64>,
    memory_base_mb: Option<u64>,
    max_tasks: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum SeccompSetting {
    Enforce,
    /// Development only: forbidden syscalls are allowed and logged.
    LogOnly,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Permissions {
    default: Option<BTreeSet<Permission>>,
    #[serde(default)]
    plugins: BTreeMap<String, BTreeSet<Permission>>,
    default_http_allowlist: Option<Vec<String>>,
    #[serde(default)]
    http_allowlist: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Reload {
    watch: Option<bool>,
    debounce_ms: Option<u64>,
    poll_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Restart {
    backoff_initial_ms: Option<u64>,
    backoff_max_ms: Option<u64>,
    healthy_after_s: Option<u64>,
    max_crashes: Option<u32>,
    crash_window_s: Option<u64>,
    quarantine_cooldown_s: Option<u64>,
    quarantine_cooldown_max_s: Option<u64>,
    quarantine_reset_s: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Liveness {
    interval_ms: Option<u64>,
    max_interval_ms: Option<u64>,
    timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Calls {
    load_timeout_s: Option<u64>,
    deadline_grace_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Logs {
    format: Option<LogFormat>,
    plugin_lines_per_second: Option<u32>,
    plugin_burst: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Events {
    queue: Option<usize>,
    max_depth: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Kv {
    ephemeral: Option<bool>,
    backend: Option<KvBackend>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0}: {1}")]
    Invalid(PathBuf, String),
}

impl SupervisorConfig {
    /// Reads a config file. `plugins` and `state` may come from the
    /// command line instead (`overrides`), which wins over the file.
    pub fn from_file(
        path: &Path,
        plugins: Option<PathBuf>,
        state: Option<PathBuf>,
    ) -> Result<Self, ConfigFileError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigFileError::Read(path.to_owned(), e))?;
        Self::parse_file(path, &text, plugins, state)
    }

    fn parse_file(
        path: &Path,
        text: &str,
        plugins: Option<PathBuf>,
        state: Option<PathBuf>,
    ) -> Result<Self, ConfigFileError> {
        let invalid = |m: String| ConfigFileError::Invalid(path.to_owned(), m);
        let file: File = toml::from_str(text)
            .map_err(|e| invalid(crate::manifest::describe_toml_error(&e, text)))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let plugins = plugins.or(file.plugins.map(resolve)).ok_or_else(|| {
            invalid("no plugins directory: set `plugins = \"...\"` or pass --plugins".into())
        })?;
        let state = state
            .or(file.state.map(resolve))
            .unwrap_or_else(|| base.join(".prx"));
        let mut config = Self::new(plugins, state);
        config.cache_dir = file.cache_dir.map(resolve);
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        for (key, list) in file
            .permissions
            .default_http_allowlist
            .iter()
            .map(|l| ("[permissions] default_http_allowlist".to_owned(), l))
            .chain(
                file.permissions
                    .http_allowlist
                    .iter()
                    .map(|(name, l)| (format!("[permissions.http_allowlist] {name}"), l)),
            )
        {
            crate::services::http::Allowlist::parse(list)
                .map_err(|e| invalid(format!("{key}: {e}")))?;
        }
        config.permissions = PermissionPolicy {
            default: file.permissions.default,
            plugins: file.permissions.plugins,
            default_http_allowlist: file.permissions.default_http_allowlist,
            http_allowlist: file.permissions.http_allowlist,
        };
        set(&mut config.watch, file.reload.watch);
        set(&mut config.reload_debounce, file.reload.debounce_ms.map(ms));
        set(&mut config.retry_poll, file.reload.poll_ms.map(ms));
        let r = &mut config.restart;
        set(
            &mut r.backoff_initial,
            file.restart.backoff_initial_ms.map(ms),
        );
        set(&mut r.backoff_max, file.restart.backoff_max_ms.map(ms));
        set(&mut r.healthy_after, file.restart.healthy_after_s.map(s));
        set(&mut r.max_crashes, file.restart.max_crashes);
        set(&mut r.crash_window, file.restart.crash_window_s.map(s));
        let q = &file.restart;
        set(&mut r.quarantine_cooldown, q.quarantine_cooldown_s.map(s));
        set(
            &mut r.quarantine_cooldown_max,
            q.quarantine_cooldown_max_s.map(s),
        );
        set(&mut r.quarantine_reset, q.quarantine_reset_s.map(s));
        if r.backoff_initial > r.backoff_max {
            return Err(invalid(
                "[restart] backoff_initial_ms is larger than backoff_max_ms".into(),
            ));
        }
        if r.quarantine_cooldown > r.quarantine_cooldown_max {
            return Err(invalid(
                "[restart] quarantine_cooldown_s is larger than quarantine_cooldown_max_s".into(),
            ));
        }
        let l = &mut config.liveness;
        set(&mut l.interval, file.liveness.interval_ms.map(ms));
        set(&mut l.max_interval, file.liveness.max_interval_ms.map(ms));
        set(&mut l.timeout, file.liveness.timeout_ms.map(ms));
        if l.interval.is_zero() || l.timeout.is_zero() {
            return Err(invalid(
                "[liveness] interval_ms and timeout_ms must be above zero".into(),
            ));
        }
        if l.max_interval < l.interval {
            return Err(invalid(format!(
                "[liveness] max_interval_ms ({} ms) is below interval_ms ({} ms); raise max_interval_ms or lower interval_ms",
                l.max_interval.as_millis(),
                l.interval.as_millis()
            )));
        }
        set(&mut config.load_timeout, file.calls.load_timeout_s.map(s));
        set(
            &mut config.deadline_grace,
            file.calls.deadline_grace_ms.map(ms),
        );
        let LogRate { per_second, burst } = &mut config.log_rate;
        set(per_second, file.logs.plugin_lines_per_second);
        set(burst, file.logs.plugin_burst);
        if config.log_rate.burst == 0 {
            return Err(invalid(
                "[logs] plugin_burst must be at least 1 (0 would drop every line)".into(),
            ));
        }
        set(&mut config.event_queue, file.events.queue);
        if config.event_queue == 0 {
            return Err(invalid("[events] queue must be at least 1".into()));
        }
        set(&mut config.event_max_depth, file.events.max_depth);
        if config.event_max_depth == 0 {
            return Err(invalid(
                "[events] max_depth must be at least 1 (0 would deliver no event to any plugin)"
                    .into(),
            ));
        }
        for name in file.middleware.fail_open.unwrap_or_default() {
            crate::manifest::check_name("[middleware] fail_open", &name).map_err(invalid)?;
            config.middleware_fail_open.insert(name);
        }
        match file.memory.backend.as_deref() {
            None | Some("built-in") => {}
            Some(name) => config.memory_backend = Some(name.to_owned()),
        }
        match file.memory.health_interval_s {
            Some(0) => {
                return Err(invalid(
                    "[memory] health_interval_s must be at least 1".into(),
                ));
            }
            Some(n) => config.storage_health_interval = s(n),
            None => {}
        }
        set(&mut config.ephemeral_kv, file.kv.ephemeral);
        if let Some(cluster) = file.cluster {
            config.cluster = Some(cluster.parse(&resolve).map_err(invalid)?);
        }
        set(&mut config.kv_backend, file.kv.backend);
        if config.kv_backend == KvBackend::JetStream && config.cluster.is_none() {
            return Err(invalid(
                "[kv] backend = \"jetstream\" keeps kv on the cluster's NATS server, so it needs a [cluster] with servers; add one or use backend = \"redb\"".into(),
            ));
        }
        let sandbox = &mut config.sandbox;
        set(&mut sandbox.required, file.sandbox.required);
        if let Some(mode) = file.sandbox.seccomp {
            sandbox.seccomp_log_only = mode == SeccompSetting::LogOnly;
        }
        if sandbox.seccomp_log_only && sandbox.required.contains(&Layer::Seccomp) {
            return Err(invalid(
                "[sandbox] seccomp = \"log-only\" lets forbidden syscalls through, so seccomp cannot also be required; remove \"seccomp\" from [sandbox] required (development only)".into(),
            ));
        }
        set(
            &mut sandbox.address_space_base,
            file.sandbox.address_space_base_mb.map(|mb| mb << 20),
        );
        set(&mut sandbox.cpu_seconds, file.sandbox.cpu_seconds);
        set(
            &mut sandbox.memory_base,
            file.sandbox.memory_base_mb.map(|mb| mb << 20),
        );
        set(&mut sandbox.max_tasks, file.sandbox.max_tasks);
        if let Some(ranges) = file.http.allowed_ranges {
            config.http.allowed_ranges = ranges
                .iter()
                .map(|r| {
                    r.parse().map_err(|e| {
                        invalid(format!(
                            "[http] allowed_ranges: {r:?} is not a range like \"10.0.0.0/8\" ({e})"
                        ))
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        set(
            &mut config.http.max_body,
            file.http.max_body_kb.map(|kb| kb << 10),
        );
        set(&mut config.http.timeout, file.http.timeout_s.map(s));
        set(&mut config.log_format, file.logs.format);
        for name in file.resources.plugins.keys() {
            crate::manifest::check_name("[resources.plugins]", name).map_err(invalid)?;
        }
        // No manifest may ask for more kv than the ceiling, so a cap above
        // it would promise what no plugin can get: refused, not ignored.
        let kv_caps = std::iter::once((
            "[resources.default]".to_owned(),
            file.resources.default.max_kv_storage_kb,
        ))
        .chain(
            file.resources
                .plugins
                .iter()
                .map(|(name, cap)| (format!("[resources.plugins.{name}]"), cap.max_kv_storage_kb)),
        );
        for (table, cap) in kv_caps {
            if let Some(kb) = cap.filter(|kb| *kb > MAX_KV_STORAGE_KB_CEILING) {
                return Err(invalid(format!(
                    "{table} max_kv_storage_kb = {kb} is above {MAX_KV_STORAGE_KB_CEILING} (1 TiB), the most any plugin may have; set a lower cap or remove it"
                )));
            }
        }
        config.resource_caps = ResourceCaps {
            default: file.resources.default,
            plugins: file.resources.plugins,
        };
        let api = &mut config.api;
        if let Some(mode) = file.api.socket_mode {
            api.socket_mode = u32::from_str_radix(mode.trim_start_matches("0o"), 8)
                .ok()
                .filter(|m| *m <= 0o777 && m & 0o600 == 0o600)
                .ok_or_else(|| {
                    invalid(format!(
                        "[api] socket_mode = {mode:?}: give octal permission bits that include 600 for the owner, like \"0600\" or \"0660\""
                    ))
                })?;
        }
        if let Some(http) = file.api.http {
            api.http =
                Some(parse_loopback(&http).map_err(|e| invalid(format!("[api] http: {e}")))?);
        }
        if let Some(token) = file.api.token {
            check_token(&token).map_err(|e| invalid(format!("[api] token: {e}")))?;
            api.token = Some(token);
        }
        api.token_file = file.api.token_file.map(resolve);
        if let Some(kb) = file.api.max_request_kb {
            if kb == 0 {
                return Err(invalid("[api] max_request_kb must be at least 1".into()));
            }
            api.max_request_bytes = kb << 10;
        }
        Ok(config)
    }
}

impl Cluster {
    fn parse(
        self,
        resolve: &dyn Fn(PathBuf) -> PathBuf,
    ) -> Result<crate::cluster::ClusterConfig, String> {
        let Some(first) = self.servers.first() else {
            return Err("[cluster] servers is empty: list the NATS server URLs, e.g. servers = [\"nats://127.0.0.1:4222\"]".into());
        };
        let mut config = crate::cluster::ClusterConfig::new(first);
        config.servers = self.servers;
        if let Some(node) = self.node {
            crate::cluster::subjects::check_node(&node).map_err(|e| format!("[cluster] {e}"))?;
            config.node = node;
        }
        config.credentials = self.credentials.map(resolve);
        config.tls_ca = self.tls_ca.map(resolve);
        config.tls_cert = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => Some((resolve(cert), resolve(key))),
            (None, None) => None,
            _ => {
                return Err(
                    "[cluster] tls_cert and tls_key go together: set both or neither".into(),
                );
            }
        };
        for (key, value) in [
            ("call_timeout_ms", self.call_timeout_ms),
            ("heartbeat_ms", self.heartbeat_ms),
        ] {
            if value == Some(0) {
                return Err(format!("[cluster] {key} must be at least 1"));
            }
        }
        set(
            &mut config.call_timeout,
            self.call_timeout_ms.map(Duration::from_millis),
        );
        set(
            &mut config.heartbeat,
            self.heartbeat_ms.map(Duration::from_millis),
        );
        match self.kv_replicas {
            Some(n @ 1..=5) => config.kv_replicas = n,
            Some(n) => {
                return Err(format!(
                    "[cluster] kv_replicas = {n}: JetStream keeps 1 to 5 copies"
                ));
            }
            None => {}
        }
        Ok(config)
    }
}

/// An address for the HTTP listener: a loopback IP and a port. The
/// listener serves the console and state-changing calls behind a token;
/// it is not meant to face a network.
pub fn parse_loopback(text: &str) -> Result<std::net::SocketAddr, String> {
    let addr: std::net::SocketAddr = text
        .parse()
        .map_err(|e| format!("{text:?} is not an address like \"127.0.0.1:8780\" ({e})"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{text:?} is not a loopback address; the API listens on 127.0.0.1 or [::1] only (put a proxy with its own authentication in front to reach it from elsewhere)"
        ));
    }
    Ok(addr)
}

/// A token must be long enough not to be guessed and printable ASCII, as
/// an HTTP header carries it.
pub fn check_token(token: &str) -> Result<(), String> {
    if token.len() < 32 {
        return Err(format!(
            "the token is {} characters; use at least 32 (for example `openssl rand -hex 32`)",
            token.len()
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the token must be printable ASCII without spaces".into());
    }
    Ok(())
}

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *field = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SupervisorConfig, String> {
        SupervisorConfig::parse_file(Path::new("/etc/prx/prx.toml"), text, None, None)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_documented_example_parses_and_matches_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/prx.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let config = SupervisorConfig::parse_file(&path, &text, None, None).unwrap();
        let defaults = SupervisorConfig::new("x", "y");
        // Every number in the example is the default it documents.
        assert_eq!(config.restart, defaults.restart);
        assert_eq!(config.liveness, defaults.liveness);
        assert_eq!(config.log_rate, defaults.log_rate);
        assert_eq!(config.event_queue, defaults.event_queue);
        assert_eq!(config.event_max_depth, defaults.event_max_depth);
        assert_eq!(config.middleware_fail_open, defaults.middleware_fail_open);
        assert_eq!(config.memory_backend, defaults.memory_backend);
        assert_eq!(
            config.storage_health_interval,
            defaults.storage_health_interval
        );
        assert_eq!(config.load_timeout, defaults.load_timeout);
        assert_eq!(config.deadline_grace, defaults.deadline_grace);
        assert_eq!(config.ephemeral_kv, defaults.ephemeral_kv);
        assert_eq!(config.sandbox, defaults.sandbox);
        assert_eq!(config.http, defaults.http);
        assert_eq!(config.permissions, defaults.permissions);
        assert_eq!(config.watch, defaults.watch);
        assert_eq!(config.reload_debounce, defaults.reload_debounce);
        assert_eq!(config.retry_poll, defaults.retry_poll);
        assert_eq!(config.api, defaults.api);
        assert_eq!(config.log_format, defaults.log_format);
        assert_eq!(config.resource_caps, defaults.resource_caps);
        assert!(config.plugins_dir.ends_with("plugins"));
    }

    #[test]
    fn the_heartbeat_cap_cannot_be_below_the_first_gap() {
        let e = parse("plugins = \"p\"\n[liveness]\ninterval_ms = 5000\nmax_interval_ms = 1000\n")
            .unwrap_err();
        assert!(
            e.contains("max_interval_ms (1000 ms) is below interval_ms (5000 ms)"),
            "{e}"
        );
        let config = parse("plugins = \"p\"\n[liveness]\nmax_interval_ms = 10000\n").unwrap();
        assert_eq!(
            config.liveness.max_interval,
            std::time::Duration::from_secs(10)
        );
    }

    #[test]
    fn paths_are_relative_to_the_file_and_the_command_line_wins() {
        let config = parse("plugins = \"p\"\nstate = \"/var/lib/prx\"\n").unwrap();
        assert_eq!(config.plugins_dir, Path::new("/etc/prx/p"));
        assert_eq!(config.state_dir, Path::new("/var/lib/prx"));
        let config = SupervisorConfig::parse_file(
            Path::new("/etc/prx/prx.toml"),
            "plugins = \"p\"\n",
            Some("cli".into()),
            None,
        )
        .unwrap();
        assert_eq!(config.plugins_dir, Path::new("cli"));
        assert_eq!(config.state_dir, Path::new("/etc/prx/.prx"));
    }

    #[test]
    fn a_cluster_table_is_read_whole_and_its_mistakes_are_named() {
        let config = parse(
            "plugins = \"p\"\n[kv]\nbackend = \"jetstream\"\n[cluster]\nservers = [\"nats://a:4222\", \"nats://b:4222\"]\nnode = \"node-a\"\ncredentials = \"node.creds\"\ncall_timeout_ms = 2000\nkv_replicas = 3\n",
        )
        .unwrap();
        let cluster = config.cluster.expect("a cluster");
        assert_eq!(cluster.servers, ["nats://a:4222", "nats://b:4222"]);
        assert_eq!(cluster.node, "node-a");
        assert_eq!(
            cluster.credentials.as_deref(),
            Some(Path::new("/etc/prx/node.creds"))
        );
        assert_eq!(cluster.call_timeout, Duration::from_millis(2000));
        assert_eq!(cluster.kv_replicas, 3);
        assert_eq!(config.kv_backend, KvBackend::JetStream);
        for (text, says) in [
            ("[kv]\nbackend = \"jetstream\"\n", "needs a [cluster]"),
            ("[cluster]\nservers = []\n", "servers is empty"),
            (
                "[cluster]\nservers = [\"nats://a\"]\nnode = \"Node A\"\n",
                "is not a node name",
            ),
            (
                "[cluster]\nservers = [\"nats://a\"]\ntls_cert = \"c.pem\"\n",
                "go together",
            ),
            (
                "[cluster]\nservers = [\"nats://a\"]\nkv_replicas = 7\n",
                "1 to 5",
            ),
            (
                "[cluster]\nservers = [\"nats://a\"]\nheartbeat_ms = 0\n",
                "at least 1",
            ),
            ("[cluster]\nserver = \"nats://a\"\n", "unknown key `server`"),
        ] {
            let err = parse(&format!("plugins = \"p\"\n{text}")).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn the_permission_policy_is_read_per_plugin_and_by_default() {
        let config = parse(
            "plugins = \"p\"\n[permissions]\ndefault = [\"kv\"]\n[permissions.plugins]\nweather = [\"kv\", \"http-outbound\"]\n",
        )
        .unwrap();
        let policy = &config.permissions;
        assert!(policy.allows("any", Permission::Kv));
        assert!(!policy.allows("any", Permission::HttpOutbound));
        assert!(policy.allows("weather", Permission::HttpOutbound));
        assert!(
            policy.allows("any", Permission::Log),
            "log is always allowed"
        );
        assert_eq!(policy.http_ceiling("weather"), None);

        let config = parse(
            "plugins = \"p\"\n[permissions]\ndefault_http_allowlist = [\"https://a.example\"]\n[permissions.http_allowlist]\nweather = [\"https://w.example/v1\"]\n",
        )
        .unwrap();
        let policy = &config.permissions;
        assert_eq!(
            policy.http_ceiling("weather"),
            Some(&["https://w.example/v1".to_owned()][..])
        );
        assert_eq!(
            policy.http_ceiling("other"),
            Some(&["https://a.example".to_owned()][..])
        );
        let bad = parse(
            "plugins = \"p\"\n[permissions.http_allowlist]\nweather = [\"ftp://w.example\"]\n",
        )
        .unwrap_err();
        assert!(
            bad.contains("[permissions.http_allowlist] weather") && bad.contains("ftp://"),
            "{bad}"
        );
    }

    #[test]
    fn resource_caps_are_per_key_with_the_plugins_own_first() {
        let config = parse(
            "plugins = \"p\"\n[resources.default]\nmax_memory_mb = 64\nmax_fuel = 1000\n[resources.plugins]\nbig = { max_memory_mb = 512 }\n",
        )
        .unwrap();
        let caps = &config.resource_caps;
        let asks = |memory, fuel| crate::manifest::Resources {
            max_memory_mb: memory,
            max_fuel: fuel,
            ..Default::default()
        };
        assert!(caps.check("small", &asks(64, 1000)).is_ok());
        let workers = parse("plugins = \"p\"\n[resources.default]\nworkers = 2\n").unwrap();
        let four = crate::manifest::Resources {
            workers: 4,
            ..Default::default()
        };
        let err = workers.resource_caps.check("any", &four).unwrap_err();
        assert!(
            err.contains("[resources].workers = 4, above the operator's cap of 2"),
            "{err}"
        );
        let err = caps.check("small", &asks(65, 1000)).unwrap_err();
        assert!(
            err.contains("[resources].max_memory_mb = 65, above the operator's cap of 64 ([resources.default]"),
            "{err}"
        );
        assert!(caps.check("big", &asks(512, 1000)).is_ok());
        let err = caps.check("big", &asks(512, 1001)).unwrap_err();
        assert!(
            err.contains("max_fuel = 1001") && err.contains("[resources.default]"),
            "{err}"
        );
        let err = caps.check("big", &asks(600, 1)).unwrap_err();
        assert!(err.contains("[resources.plugins.big]"), "{err}");
    }

    /// Finding 10 (b): the kv quota has a ceiling every plugin is held to
    /// (1 TiB), which the operator can lower but not raise.
    #[test]
    fn a_kv_cap_above_the_ceiling_is_refused_and_a_lower_one_holds() {
        for text in [
            "plugins = \"p\"\n[resources.default]\nmax_kv_storage_kb = 9223372036854775807\n",
            "plugins = \"p\"\n[resources.plugins]\nbig = { max_kv_storage_kb = 1073741825 }\n",
        ] {
            let err = parse(text).unwrap_err();
            assert!(
                err.contains("max_kv_storage_kb = ")
                    && err.contains("is above 1073741824 (1 TiB)")
                    && (err.contains("[resources.default]")
                        || err.contains("[resources.plugins.big]")),
                "{text:?}: {err}"
            );
        }
        let config = parse(
            "plugins = \"p\"\n[resources.default]\nmax_kv_storage_kb = 1073741824\n[resources.plugins]\nsmall = { max_kv_storage_kb = 64 }\n",
        )
        .unwrap();
        let asks = |kb| crate::manifest::Resources {
            max_kv_storage_kb: kb,
            ..Default::default()
        };
        let caps = &config.resource_caps;
        assert!(caps.check("any", &asks(MAX_KV_STORAGE_KB_CEILING)).is_ok());
        assert!(caps.check("small", &asks(64)).is_ok());
        let err = caps.check("small", &asks(65)).unwrap_err();
        assert!(
            err.contains("max_kv_storage_kb = 65, above the operator's cap of 64"),
            "{err}"
        );
    }

    #[test]
    fn mistakes_are_errors_with_their_line() {
        for (text, expected) in [
            (
                "plugins = \"p\"\n[restart]\nmax_crash = 3\n",
                "/etc/prx/prx.toml: line 3: unknown key `max_crash`",
            ),
            (
                "plugins = \"p\"\n[permissions]\ndefault = [\"network\"]\n",
                "/etc/prx/prx.toml: line 3: unknown variant `network`",
            ),
            ("state = \"s\"\n", "no plugins directory"),
            (
                "plugins = \"p\"\n[logs]\nplugin_burst = 0\n",
                "plugin_burst must be at least 1",
            ),
            (
                "plugins = \"p\"\n[restart]\nbackoff_initial_ms = 5000\nbackoff_max_ms = 10\n",
                "backoff_initial_ms is larger than backoff_max_ms",
            ),
            (
                "plugins = \"p\"\n[restart]\nquarantine_cooldown_s = 7200\n",
                "quarantine_cooldown_s is larger than quarantine_cooldown_max_s",
            ),
            (
                "plugins = \"p\"\n[sandbox]\nseccomp = \"log-only\"\n",
                "seccomp cannot also be required",
            ),
            (
                "plugins = \"p\"\n[sandbox]\nrequired = [\"selinux\"]\n",
                "line 3: unknown variant `selinux`",
            ),
            (
                "plugins = \"p\"\n[http]\nallowed_ranges = [\"10.0.0.0/33\"]\n",
                "is not a range like",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }
}
