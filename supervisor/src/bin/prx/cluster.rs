//! `prx cluster`: the nodes of the cluster this supervisor is in, their
//! plugins and health, and the calls and events between them.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use prx_supervisor::api::client;
use prx_supervisor::cluster::ClusterView;

use super::commands::{api_error, socket};

pub(super) async fn cluster(state: PathBuf, json: bool) -> Result<ExitCode> {
    let response = client::request(&socket(&state), "GET", "/v1/cluster", None).await?;
    if response.status != 200 {
        return Ok(api_error(response.body));
    }
    if json {
        println!("{}", response.body);
        return Ok(ExitCode::SUCCESS);
    }
    let view: ClusterView = serde_json::from_str(&response.body)?;
    let link = if view.connected {
        "connected"
    } else {
        "reconnecting"
    };
    println!(
        "this node: {} ({link} to {}; kv: {})",
        view.node,
        view.servers.join(", "),
        view.kv_backend
    );
    println!("{:<20} {:<8} {:>9}  PLUGINS", "NODE", "HEALTH", "SEEN");
    for node in &view.nodes {
        let health = if node.alive { "up" } else { "silent" };
        let me = if node.local { " (this node)" } else { "" };
        let plugins: Vec<String> = node
            .plugins
            .iter()
            .map(|p| format!("{} [{}]", p.name, p.state))
            .collect();
        println!(
            "{:<20} {:<8} {:>7}ms  {}",
            format!("{}{me}", node.node),
            health,
            node.last_seen_ms,
            if plugins.is_empty() {
                "-".into()
            } else {
                plugins.join(", ")
            }
        );
    }
    if !view.calls.is_empty() {
        println!("calls:");
        for c in &view.calls {
            let arrow = if c.direction == "out" { "->" } else { "<-" };
            println!(
                "  {} {arrow} {}: {} ok, {} failed",
                view.node, c.peer, c.ok, c.failed
            );
        }
    }
    println!(
        "events: {} sent, {} received from other nodes, {} dropped; {} malformed messages refused",
        view.events_out, view.events_in, view.events_dropped, view.refused
    );
    Ok(ExitCode::SUCCESS)
}
