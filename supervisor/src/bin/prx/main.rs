//! `prx`: run the supervisor and talk to it.
//!
//! `prx up` runs in the foreground and serves the local API on a Unix socket
//! in the state directory; the other commands are clients of that API.

mod cli;
mod cluster;
mod commands;
mod config_check;
mod up;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use prx_supervisor::SupervisorConfig;

use cli::{Cli, Command, ConfigCommand, CronCommand, EventsCommand};
use commands::{
    call, chat, cron, events, kv, list, memory, modules, post_output, publish, release, reload,
    status, tail,
};
use config_check::config_check;
use up::up;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("prx: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("prx: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Up {
            config,
            plugins,
            state,
            cache_dir,
            http,
            log_format,
            cluster,
            node,
        } => {
            let mut config = match config {
                Some(file) => SupervisorConfig::from_file(&file, plugins, state)?,
                None => SupervisorConfig::new(
                    plugins.context("--plugins is required without --config")?,
                    state.unwrap_or_else(|| PathBuf::from(".prx")),
                ),
            };
            if cache_dir.is_some() {
                config.cache_dir = cache_dir;
            }
            if let Some(http) = http {
                config.api.http = Some(
                    prx_supervisor::config_file::parse_loopback(&http)
                        .map_err(|e| anyhow::anyhow!("--http: {e}"))?,
                );
            }
            if let Some(format) = log_format {
                config.log_format = format;
            }
            if let Some(server) = cluster {
                let settings = config
                    .cluster
                    .get_or_insert_with(|| prx_supervisor::cluster::ClusterConfig::new(&server));
                settings.servers = vec![server];
            }
            if let Some(node) = node {
                prx_supervisor::cluster::subjects::check_node(&node)
                    .map_err(|e| anyhow::anyhow!("--node: {e}"))?;
                match &mut config.cluster {
                    Some(settings) => settings.node = node,
                    None => {
                        anyhow::bail!("--node names this node in a cluster: give --cluster too")
                    }
                }
            }
            up(config).await
        }
        Command::Config {
            command: ConfigCommand::Check { file },
        } => config_check(&file),
        Command::Call { tool, args, state } => call(&tool, args, state).await,
        Command::Plugins { state, json } => list(state, json).await,
        Command::Status { state, json } => status(state, json).await,
        Command::Release { plugin, state } => release(&plugin, state).await,
        Command::Reload { plugin, state } => reload(plugin.as_deref(), state).await,
        Command::Kv { command, state } => kv(command, state).await,
        Command::Publish {
            topic,
            payload,
            state,
        } => publish(&topic, payload, state).await,
        Command::Events {
            command: None,
            state,
            json,
        } => events(state, json).await,
        Command::Events {
            command: Some(EventsCommand::Tail { pattern, count }),
            state,
            ..
        } => tail(&pattern, count, state).await,
        Command::Middleware { stage, data, state } => {
            let uri = format!("/v1/middleware/{stage}");
            post_output(&state, &uri, data).await
        }
        Command::Chat {
            provider,
            messages,
            model,
            temperature,
            state,
        } => chat(&provider, &messages, model, temperature, state).await,
        Command::Rpc {
            name,
            payload,
            state,
        } => post_output(&state, &format!("/v1/rpc/{name}"), payload).await,
        Command::Modules { state, json } => modules(state, json).await,
        Command::Cluster { state, json } => cluster::cluster(state, json).await,
        Command::Cron {
            command: Some(CronCommand::Run { plugin }),
            state,
            ..
        } => post_output(&state, &format!("/v1/cron/{plugin}/run"), String::new()).await,
        Command::Cron {
            command: None,
            state,
            json,
        } => cron(state, json).await,
        Command::Memory { command, state } => memory(command, state).await,
    }
}
