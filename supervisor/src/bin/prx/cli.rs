//! The `prx` command line: its commands and options, as clap reads them.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use prx_supervisor::config::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "prx",
    version,
    about = "Run untrusted PRX WebAssembly plugins, one sandboxed process each"
)]
pub(super) struct Cli {
    #[command(subcommand)]
    pub(super) command: Command,
}

#[derive(Debug, Subcommand)]
pub(super) enum KvCommand {
    /// Print the value of KEY (as text when it is UTF-8, else as hex).
    Get { plugin: String, key: String },
    /// List the keys starting with PREFIX (all keys without one).
    List {
        plugin: String,
        #[arg(default_value = "")]
        prefix: String,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum ConfigCommand {
    /// Parse FILE; print the settings, or the first mistake with its line.
    Check { file: PathBuf },
}

#[derive(Debug, Subcommand)]
pub(super) enum MemoryCommand {
    /// Store TEXT in the built-in memory (as the host, not a plugin).
    Store {
        text: String,
        #[arg(long, default_value = "")]
        category: String,
    },
    /// Print the memories most relevant to QUERY, best first.
    Recall {
        query: String,
        #[arg(long, default_value_t = 5)]
        limit: u32,
    },
    /// Forget the memory ID (as `store` or `recall` printed it).
    Forget { id: String },
    /// How many memories are stored, and which backend serves them.
    Count,
}

#[derive(Debug, Subcommand)]
pub(super) enum EventsCommand {
    /// Print events as they are published (one JSON object per line),
    /// optionally only those matching PATTERN (`*`, `a.*`, `a.b`).
    Tail {
        #[arg(default_value = "*")]
        pattern: String,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum CronCommand {
    /// Run PLUGIN's cron job now, off schedule (refused while a run of it
    /// is going); prints its output.
    Run { plugin: String },
}

#[derive(Debug, Subcommand)]
pub(super) enum Command {
    /// Run the supervisor in the foreground.
    Up {
        /// A config file (see docs/prx.toml); the flags below win over it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Directory with one sub-directory per plugin (plugin.toml + wasm).
        #[arg(long, required_unless_present = "config")]
        plugins: Option<PathBuf>,
        /// The supervisor's own files (kv database, compile cache, API
        /// socket); `.prx` unless the config file says otherwise.
        #[arg(long)]
        state: Option<PathBuf>,
        /// Compiled artifacts (default: <state>/cache). Safe to share
        /// between supervisors: entries are keyed by content.
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        /// Also serve the API and the web console on this loopback address
        /// (e.g. 127.0.0.1:8780); state changes there need the API token.
        #[arg(long)]
        http: Option<String>,
        /// `human` (default) or `json` (one object per line).
        #[arg(long)]
        log_format: Option<LogFormat>,
        /// Join the cluster on this NATS server (nats://HOST:PORT): events,
        /// calls and (with `[kv] backend = "jetstream"`) kv reach every
        /// node; see docs/cluster.md.
        #[arg(long)]
        cluster: Option<String>,
        /// This node's name in the cluster (default: the host name).
        #[arg(long)]
        node: Option<String>,
    },
    /// Call a tool with JSON arguments and print its output.
    Call {
        tool: String,
        #[arg(default_value = "{}")]
        args: String,
        #[arg(long, default_value = ".prx")]
        state: PathBuf,
    },
    /// Per plugin: state, worker pid, restarts, last exit cause, uptime.
    Status {
        #[arg(long, default_value = ".prx")]
        state: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Read a plugin's kv store (read-only).
    Kv {
        #[command(subcommand)]
        command: KvCommand,
        #[arg(long, default_value = ".prx", global = true)]
        state: PathBuf,
    },
    /// Publish an event as the host: TOPIC (dot-separated) and a JSON
    /// payload of at most 64 KiB.
    Publish {
        topic: String,
        #[arg(default_value = "{}")]
        payload: String,
        #[arg(long, default_value = ".prx")]
        state: PathBuf,
    },
    /// The event bus: subscribers, their patterns, queued and dropped
    /// events; `prx events tail` follows events live.
    Events {
        #[command(subcommand)]
        command: Option<EventsCommand>,
        #[arg(long, default_value = ".prx", global = true)]
        state: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run the middleware chain of STAGE (inbound, outbound, llm_request,
    /// llm_response) over JSON data; prints the result.
    Middleware {
        stage: String,
        #[arg(default_value = "{}")]
        data: String,
        #[arg(long, default_value = ".prx")]
        state: PathBuf,
    },
    /// Chat with PROVIDER: MESSAGES is a JSON list of {"role", "content"}.
    Chat {
        provider: String,
        messages: String,
        #[arg(long, default_value = "")]
        model: String,
        #[arg(long, default_value_t = 0.7)]
        temperature: f64,
        #[arg(long, default_value = ".prx")]
        state: PathBuf,
    },
    /// Call the bus-module RPC NAME with a JSON payload; prints the reply.
    Rpc {
        name: String,
        #[arg(default_value = "{}")]
        payload: String,
        #[arg(long, default_value = ".prx")]
        state: PathBuf,
    },
    /// The cluster this supervisor is in: nodes, their plugins and health,
    /// and the calls and events between them.
    Cluster {
        #[arg(long, default_value = ".prx")]
        state: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Bus modules: their RPCs, status and stats.
    Modules {
        #[arg(long, default_value = ".prx")]
        state: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Cron plugins: schedules, next fire times, last results; `prx cron
    /// run PLUGIN` runs one now.
    Cron {
        #[command(subcommand)]
        command: Option<CronCommand>,
        #[arg(long, default_value = ".prx", global = true)]
        state: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Store in, recall from, forget from or count the memory (the
    /// built-in store, or the storage plugin the config selects).
    Memory {
        #[command(subcommand)]
        command: MemoryCommand,
        #[arg(long, default_value = ".prx", global = true)]
        state: PathBuf,
    },
    /// Check a config file and print what it sets.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Apply what changed in the plugins directory now (new, changed and
    /// removed plugins), or reload one plugin from its files even if they
    /// did not change. The running version serves until the new one is
    /// healthy; a refused new version leaves it serving.
    Reload {
        plugin: Option<String>,
        #[arg(long, default_value = ".prx")]
        state: PathBuf,
    },
    /// Lift the quarantine of a plugin and start it again.
    Release {
        plugin: String,
        #[arg(long, default_value = ".prx")]
        state: PathBuf,
    },
    /// List plugins: name, version, capabilities, state, worker pid.
    Plugins {
        #[arg(long, default_value = ".prx")]
        state: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}
