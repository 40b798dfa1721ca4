//! Errors a caller of the supervisor sees. Each message names the plugin,
//! what failed and, where there is one, the fix.

use prx_ipc::GuestErrorKind;

/// Why a call into a plugin did not produce a result.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    #[error("no tool named `{tool}`{}", known_list(.known))]
    UnknownTool { tool: String, known: Vec<String> },
    #[error("plugin `{plugin}` is {state}{}", detail_suffix(.detail))]
    NotRunning {
        plugin: String,
        state: String,
        detail: Option<String>,
    },
    #[error("tool `{tool}` of plugin `{plugin}` failed: {error}")]
    ToolFailed {
        plugin: String,
        tool: String,
        error: String,
    },
    #[error("plugin `{plugin}` {message}{}", hint(*.kind))]
    Guest {
        plugin: String,
        kind: GuestErrorKind,
        message: String,
    },
    #[error(
        "plugin `{plugin}` did not answer within {after_ms} ms; its worker was killed and is being restarted"
    )]
    Unresponsive { plugin: String, after_ms: u64 },
    #[error("plugin `{plugin}` crashed ({cause}); restarting")]
    Crashed { plugin: String, cause: String },
    #[error("plugin `{plugin}` answered with a reply of the wrong type; its worker was killed")]
    BadReply { plugin: String },
    #[error("the supervisor is shutting down and takes no new calls")]
    ShuttingDown,
    #[error("no {what} named `{name}`{}", loaded_list(.known))]
    NotFound {
        what: &'static str,
        name: String,
        known: Vec<String>,
    },
    #[error("middleware `{plugin}` blocked the {stage} chain: {error}")]
    Blocked {
        plugin: String,
        stage: String,
        error: String,
    },
    #[error("plugin `{plugin}` refused {action}: {error}")]
    Refused {
        plugin: String,
        action: String,
        error: String,
    },
    #[error("plugin `{plugin}` returned {what}")]
    BadOutput { plugin: String, what: String },
    #[error("{0}")]
    BadRequest(String),
    #[error("plugin `{plugin}` is busy: {why}")]
    Busy { plugin: String, why: String },
    #[error("{0}")]
    Unavailable(String),
    /// Nothing anywhere in the cluster serves it.
    #[error("no {what} named `{name}` on any node of the cluster{}", nodes_list(.nodes))]
    NotInCluster {
        what: &'static str,
        name: String,
        nodes: Vec<String>,
    },
    /// The call failed on the node that served it.
    #[error("{message} (on node {node})")]
    Remote {
        node: String,
        /// What [`CallError::kind`] said there, when it is one of ours.
        kind: &'static str,
        message: String,
    },
}

/// Every kind [`CallError::kind`] returns, so that one read from another
/// node is kept only when it is one of them.
pub const KINDS: [&str; 22] = [
    "unknown_tool",
    "not_running",
    "tool_failed",
    "trap",
    "out_of_fuel",
    "deadline",
    "memory_limit",
    "missing_export",
    "host_call",
    "unresponsive",
    "crashed",
    "bad_reply",
    "shutting_down",
    "not_found",
    "blocked",
    "refused",
    "bad_output",
    "bad_request",
    "busy",
    "unavailable",
    "remote",
    "not_in_cluster",
];

impl CallError {
    /// The error a node read from another node's answer.
    pub fn remote(node: &str, kind: &str, message: &str) -> Self {
        Self::Remote {
            node: node.into(),
            kind: KINDS
                .iter()
                .find(|k| **k == kind)
                .copied()
                .unwrap_or("remote"),
            message: crate::text::untrusted_text(message.to_owned()),
        }
    }
}

fn nodes_list(nodes: &[String]) -> String {
    if nodes.is_empty() {
        " (no other node is up)".into()
    } else {
        format!(" (nodes up: {})", nodes.join(", "))
    }
}

fn loaded_list(known: &[String]) -> String {
    if known.is_empty() {
        "; none is loaded".into()
    } else {
        format!("; loaded: {}", known.join(", "))
    }
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "; no tools are loaded".into()
    } else {
        format!("; loaded tools: {}", known.join(", "))
    }
}

fn detail_suffix(detail: &Option<String>) -> String {
    detail
        .as_ref()
        .map(|d| format!(": {d}"))
        .unwrap_or_default()
}

fn hint(kind: GuestErrorKind) -> &'static str {
    match kind {
        GuestErrorKind::OutOfFuel => {
            "; raise [resources].max_fuel in its plugin.toml if the work is legitimate"
        }
        GuestErrorKind::Deadline => {
            "; raise [resources].max_execution_time_ms in its plugin.toml if the work is legitimate"
        }
        GuestErrorKind::MemoryLimit => {
            "; raise [resources].max_memory_mb in its plugin.toml if the work is legitimate"
        }
        GuestErrorKind::Trap | GuestErrorKind::HostCall | GuestErrorKind::MissingExport => "",
    }
}

impl CallError {
    /// The plugin the error is about, if one is.
    pub fn plugin(&self) -> Option<&str> {
        match self {
            Self::NotRunning { plugin, .. }
            | Self::ToolFailed { plugin, .. }
            | Self::Guest { plugin, .. }
            | Self::Unresponsive { plugin, .. }
            | Self::Crashed { plugin, .. }
            | Self::BadReply { plugin }
            | Self::Blocked { plugin, .. }
            | Self::Refused { plugin, .. }
            | Self::BadOutput { plugin, .. }
            | Self::Busy { plugin, .. } => Some(plugin),
            Self::UnknownTool { .. }
            | Self::ShuttingDown
            | Self::NotFound { .. }
            | Self::BadRequest(_)
            | Self::Unavailable(_)
            | Self::NotInCluster { .. }
            | Self::Remote { .. } => None,
        }
    }

    /// A short machine-readable kind for the API and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UnknownTool { .. } => "unknown_tool",
            Self::NotRunning { .. } => "not_running",
            Self::ToolFailed { .. } => "tool_failed",
            Self::Guest { kind, .. } => match kind {
                GuestErrorKind::Trap => "trap",
                GuestErrorKind::OutOfFuel => "out_of_fuel",
                GuestErrorKind::Deadline => "deadline",
                GuestErrorKind::MemoryLimit => "memory_limit",
                GuestErrorKind::MissingExport => "missing_export",
                GuestErrorKind::HostCall => "host_call",
            },
            Self::Unresponsive { .. } => "unresponsive",
            Self::Crashed { .. } => "crashed",
            Self::BadReply { .. } => "bad_reply",
            Self::ShuttingDown => "shutting_down",
            Self::NotFound { .. } => "not_found",
            Self::Blocked { .. } => "blocked",
            Self::Refused { .. } => "refused",
            Self::BadOutput { .. } => "bad_output",
            Self::BadRequest(_) => "bad_request",
            Self::Busy { .. } => "busy",
            Self::Unavailable(_) => "unavailable",
            Self::NotInCluster { what: "tool", .. } => "unknown_tool",
            Self::NotInCluster { .. } => "not_in_cluster",
            Self::Remote { kind, .. } => kind,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuel_errors_name_the_plugin_the_limit_and_the_fix() {
        let e = CallError::Guest {
            plugin: "echo".into(),
            kind: GuestErrorKind::OutOfFuel,
            message: "ran out of fuel (max_fuel = 100000000)".into(),
        };
        assert_eq!(
            e.to_string(),
            "plugin `echo` ran out of fuel (max_fuel = 100000000); raise [resources].max_fuel in its plugin.toml if the work is legitimate"
        );
        assert_eq!(e.kind(), "out_of_fuel");
    }

    #[test]
    fn unknown_tools_list_what_is_there() {
        let e = CallError::UnknownTool {
            tool: "x".into(),
            known: vec!["echo".into()],
        };
        assert_eq!(e.to_string(), "no tool named `x`; loaded tools: echo");
    }
}
