//! The link that makes several supervisors one cluster, over NATS.
//!
//! A supervisor started with `[cluster]` (or `prx up --cluster URL`)
//! connects to a NATS server and, through it, to every other supervisor
//! connected there. This module holds what the link is made of: the
//! connection and its settings, the subjects ([`subjects`]), the bytes sent
//! on them ([`wire`]), who is in the cluster ([`members`]), the counters
//! operators read, and the JetStream key-value store that gives a plugin
//! the same kv on every node ([`kv`]). What travels over the link (which
//! calls, which events) is decided by the supervisor above.
//!
//! Workers never touch NATS: every message is sent and read here, in the
//! supervisor, and every message read is checked like any other untrusted
//! input before it reaches a plugin.

pub mod kv;
pub mod members;
pub mod subjects;
pub mod wire;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use members::Members;

/// How long a cross-node call waits for its answer unless the operator
/// says otherwise: the longest a plugin call runs by default (30 s) and a
/// little more.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(35);
/// How often a node says it is alive, with its plugins.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);

/// `[cluster]`: how this supervisor joins the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// NATS server URLs (`nats://host:port`, `tls://host:port`).
    pub servers: Vec<String>,
    /// This node's name in the cluster: unique among the nodes.
    pub node: String,
    /// A NATS credentials file (a user JWT and its nkey seed).
    pub credentials: Option<PathBuf>,
    /// The CA that signed the server's certificate; TLS is then required.
    pub tls_ca: Option<PathBuf>,
    /// A client certificate and its key, for servers that verify clients.
    pub tls_cert: Option<(PathBuf, PathBuf)>,
    /// How long a call to a plugin on another node waits for its answer.
    pub call_timeout: Duration,
    pub heartbeat: Duration,
    /// Copies JetStream keeps of each plugin's kv bucket (1 on a single
    /// NATS server; 3 on a NATS cluster of three or more).
    pub kv_replicas: usize,
}

impl ClusterConfig {
    /// The settings for one server URL; the node is named after the host.
    pub fn new(server: &str) -> Self {
        Self {
            servers: vec![server.to_owned()],
            node: default_node_name(),
            credentials: None,
            tls_ca: None,
            tls_cert: None,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            heartbeat: DEFAULT_HEARTBEAT,
            kv_replicas: 1,
        }
    }
}

impl ClusterConfig {
    /// The server URLs with any user, password or token replaced by
    /// `***`: what logs, errors and `prx cluster` show.
    pub fn redacted_servers(&self) -> Vec<String> {
        self.servers
            .iter()
            .map(|s| match url::Url::parse(s) {
                Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
                    let _ = url.set_username("***");
                    let _ = url.set_password(None);
                    url.to_string()
                }
                _ => s.clone(),
            })
            .collect()
    }
}

/// The user and password (or, alone, the token) in a server URL.
fn userinfo(server: &str) -> Option<(String, Option<String>)> {
    let url = url::Url::parse(server).ok()?;
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    (!url.username().is_empty()).then(|| (decode(url.username()), url.password().map(decode)))
}

/// The host name, made a valid node name (letters, digits and `-`).
pub fn default_node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_matches('-');
    if name.is_empty() {
        "node".into()
    } else {
        name.into()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "cannot reach the NATS server at {servers}: {error}; start nats-server there (see docs/cluster.md) or leave out --cluster to run alone"
    )]
    Connect { servers: String, error: String },
    #[error("[cluster] {0}")]
    Config(String),
    #[error("NATS JetStream: {0}")]
    JetStream(String),
}

/// Most nodes counted apart in the traffic counters (and held in the
/// table of members); more are counted together.
pub const MAX_PEERS: usize = 256;
/// Most calls from other nodes served at once; more are answered `busy`.
pub const MAX_SERVED_CALLS: usize = 256;

/// Which way a cross-node call or event went, seen from this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Direction {
    /// Made here, served by another node.
    Out,
    /// Made on another node, served here.
    In,
}

impl Direction {
    pub fn label(self) -> &'static str {
        match self {
            Self::Out => "out",
            Self::In => "in",
        }
    }
}

/// Counters of what crossed the link, by direction and the other node.
#[derive(Debug, Default)]
pub struct Traffic {
    calls: Mutex<BTreeMap<(Direction, String), u64>>,
    call_failures: Mutex<BTreeMap<(Direction, String), u64>>,
    events_out: std::sync::atomic::AtomicU64,
    events_in: std::sync::atomic::AtomicU64,
    /// Messages from the link that were refused (bad bytes, bad names).
    refused: std::sync::atomic::AtomicU64,
}

impl Traffic {
    /// Counts a call with `peer`; past [`MAX_PEERS`] names, as
    /// `(unknown)` (see [`Cluster::count_call`] for which names come here).
    pub fn call(&self, direction: Direction, peer: &str, ok: bool) {
        let table = if ok { &self.calls } else { &self.call_failures };
        let mut table = table.lock().unwrap_or_else(|p| p.into_inner());
        let peer = if table.len() < MAX_PEERS || table.contains_key(&(direction, peer.to_owned())) {
            peer
        } else {
            "(unknown)"
        };
        *table.entry((direction, peer.to_owned())).or_default() += 1;
    }

    pub fn event(&self, direction: Direction) {
        match direction {
            Direction::Out => &self.events_out,
            Direction::In => &self.events_in,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a refused message; true when it is worth a log line (the
    /// 1st, 2nd, 4th, 8th, ...): a node sending garbage cannot flood the
    /// log, and the count is in the metrics.
    pub fn refused(&self) -> bool {
        (self.refused.fetch_add(1, Ordering::Relaxed) + 1).is_power_of_two()
    }

    /// (direction, peer, succeeded, failed), in order.
    pub fn calls(&self) -> Vec<(Direction, String, u64, u64)> {
        let ok = self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let failed = self
            .call_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut keys: Vec<_> = ok.keys().chain(failed.keys()).cloned().collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .map(|key| {
                let n = ok.get(&key).copied().unwrap_or(0);
                let f = failed.get(&key).copied().unwrap_or(0);
                (key.0, key.1, n, f)
            })
            .collect()
    }

    /// (events sent, events received, messages refused).
    pub fn totals(&self) -> (u64, u64, u64) {
        (
            self.events_out.load(Ordering::Relaxed),
            self.events_in.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        )
    }
}

/// This node's link to the cluster; cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    link: Arc<Link>,
}

struct Link {
    client: async_nats::Client,
    jetstream: async_nats::jetstream::Context,
    node: Arc<str>,
    config: ClusterConfig,
    members: Members,
    traffic: Traffic,
    connected: Arc<AtomicBool>,
    /// Calls from other nodes being served ([`MAX_SERVED_CALLS`]).
    serving: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.link.node)
            .field("servers", &self.link.config.servers)
            .finish()
    }
}

impl Cluster {
    /// Connects to NATS. Fails at once when no server answers: a node that
    /// cannot join should say so at start, not serve alone in silence.
    /// Later disconnections are retried for ever, and logged.
    pub async fn connect(config: ClusterConfig) -> Result<Self, ClusterError> {
        subjects::check_node(&config.node).map_err(ClusterError::Config)?;
        if config.servers.is_empty() {
            return Err(ClusterError::Config("no servers".into()));
        }
        let connected = Arc::new(AtomicBool::new(true));
        let flag = connected.clone();
        let node = config.node.clone();
        let mut options = async_nats::ConnectOptions::new()
            .name(format!("prx-{}", config.node))
            .custom_inbox_prefix(subjects::inbox(&config.node))
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(None)
            .request_timeout(Some(config.call_timeout))
            .event_callback(move |event| {
                let flag = flag.clone();
                let node = node.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            flag.store(true, Ordering::SeqCst);
                            tracing::info!(node, "connected to NATS");
                        }
                        async_nats::Event::Disconnected => {
                            flag.store(false, Ordering::SeqCst);
                            tracing::warn!(node, "disconnected from NATS; reconnecting");
                        }
                        async_nats::Event::Draining | async_nats::Event::Closed => {
                            tracing::info!(node, "NATS connection {event}")
                        }
                        other => tracing::warn!(node, "NATS: {other}"),
                    }
                }
            });
        // `nats://user:password@host` (or `nats://token@host`): the
        // client takes them as options, not from the URL.
        if let Some((user, password)) = config.servers.iter().find_map(|s| userinfo(s)) {
            options = match password {
                Some(password) => options.user_and_password(user, password),
                None => options.token(user),
            };
        }
        if let Some(path) = &config.credentials {
            options = options.credentials_file(path).await.map_err(|e| {
                ClusterError::Config(format!("credentials {}: {e}", path.display()))
            })?;
        }
        if let Some(ca) = &config.tls_ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let Some((cert, key)) = &config.tls_cert {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        let servers: Vec<async_nats::ServerAddr> = config
            .servers
            .iter()
            .zip(config.redacted_servers())
            .map(|(s, shown)| {
                s.parse().map_err(|e| {
                    ClusterError::Config(format!(
                        "server {shown:?} is not a NATS URL like nats://host:4222: {e}"
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        let client = options
            .connect(servers)
            .await
            .map_err(|e| ClusterError::Connect {
                servers: config.redacted_servers().join(", "),
                error: e.to_string(),
            })?;
        let jetstream = async_nats::jetstream::new(client.clone());
        Ok(Self {
            link: Arc::new(Link {
                client,
                jetstream,
                node: config.node.as_str().into(),
                members: Members::new(config.heartbeat * 3),
                config,
                traffic: Traffic::default(),
                connected,
                serving: Arc::new(tokio::sync::Semaphore::new(MAX_SERVED_CALLS)),
            }),
        })
    }

    pub fn node(&self) -> &Arc<str> {
        &self.link.node
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.link.config
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.link.client
    }

    pub fn jetstream(&self) -> &async_nats::jetstream::Context {
        &self.link.jetstream
    }

    pub fn members(&self) -> &Members {
        &self.link.members
    }

    pub fn traffic(&self) -> &Traffic {
        &self.link.traffic
    }

    /// A place among the calls served for other nodes; `None` when they
    /// are all taken.
    pub fn serve_permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.link.serving.clone().try_acquire_owned().ok()
    }

    /// Counts a call with `peer` under its name when it is a node in the
    /// table of members, else as `(unknown)`: a name another node merely
    /// wrote in a message takes no place of a real node's.
    pub fn count_call(&self, direction: Direction, peer: &str, ok: bool) {
        let known = self.members().started_at(peer).is_some();
        let peer = if known { peer } else { "(unknown)" };
        self.traffic().call(direction, peer, ok);
    }

    /// The names of the nodes heard from lately.
    pub fn alive_nodes(&self) -> Vec<String> {
        self.members().alive().into_iter().map(|n| n.node).collect()
    }

    /// Whether the connection to NATS is up now.
    pub fn connected(&self) -> bool {
        self.link.connected.load(Ordering::SeqCst)
    }
}

/// What `prx cluster` and `/v1/cluster` show.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ClusterView {
    /// This node.
    pub node: String,
    pub servers: Vec<String>,
    /// The connection to NATS is up now.
    pub connected: bool,
    pub kv_backend: String,
    pub nodes: Vec<members::NodeView>,
    pub calls: Vec<CallCount>,
    pub events_out: u64,
    pub events_in: u64,
    /// Events dropped before they reached the link (it fell behind).
    pub events_dropped: u64,
    /// Messages from other nodes refused as malformed.
    pub refused: u64,
}

/// Cross-node calls between this node and one other, one way.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CallCount {
    /// `out`: made here, served there; `in`: made there, served here.
    pub direction: String,
    pub peer: String,
    pub ok: u64,
    pub failed: u64,
}

impl Cluster {
    /// The view of the cluster from this node.
    pub fn view(&self, kv_backend: &str, events_dropped: u64) -> ClusterView {
        let (events_out, events_in, refused) = self.traffic().totals();
        ClusterView {
            node: self.node().to_string(),
            servers: self.config().redacted_servers(),
            connected: self.connected(),
            kv_backend: kv_backend.into(),
            nodes: self.members().view(self.node()),
            calls: self
                .traffic()
                .calls()
                .into_iter()
                .map(|(direction, peer, ok, failed)| CallCount {
                    direction: direction.label().into(),
                    peer,
                    ok,
                    failed,
                })
                .collect(),
            events_out,
            events_in,
            events_dropped,
            refused,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_in_a_server_url_is_used_and_never_shown() {
        assert_eq!(
            userinfo("nats://node-a:p%40ss@h:4222"),
            Some(("node-a".into(), Some("p@ss".into())))
        );
        assert_eq!(
            userinfo("nats://s3cret@h:4222"),
            Some(("s3cret".into(), None))
        );
        assert_eq!(userinfo("nats://h:4222"), None);
        let mut config = ClusterConfig::new("nats://node-a:p%40ss@h:4222");
        config.servers.push("nats://s3cret@h:4223".into());
        config.servers.push("nats://h:4224".into());
        let shown = config.redacted_servers().join(" ");
        assert!(
            !shown.contains("p%40ss") && !shown.contains("s3cret"),
            "{shown}"
        );
        assert_eq!(shown, "nats://***@h:4222 nats://***@h:4223 nats://h:4224");
    }
}
