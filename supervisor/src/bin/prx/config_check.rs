//! `prx config check`: reads a `prx.toml` and says what it will do, or
//! what is wrong with it and how to fix it, without starting anything.

use std::process::ExitCode;

use anyhow::Result;
use prx_supervisor::SupervisorConfig;
use prx_supervisor::config::LogFormat;

pub(super) fn config_check(file: &std::path::Path) -> Result<ExitCode> {
    let config = match SupervisorConfig::from_file(file, None, None) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("prx: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let policy = |set: &std::collections::BTreeSet<prx_supervisor::manifest::Permission>| {
        set.iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("{}: ok", file.display());
    println!("plugins      {}", config.plugins_dir.display());
    println!("state        {}", config.state_dir.display());
    println!("cache        {}", config.cache_dir().display());
    match &config.permissions.default {
        Some(set) => println!("permissions  default: {}", policy(set)),
        None => println!("permissions  default: every declared permission"),
    }
    for (plugin, set) in &config.permissions.plugins {
        println!("             {plugin}: {}", policy(set));
    }
    let r = &config.restart;
    println!(
        "restart      backoff {:?} to {:?}, healthy after {:?}, quarantine after {} crashes in {:?}",
        r.backoff_initial, r.backoff_max, r.healthy_after, r.max_crashes, r.crash_window
    );
    if r.quarantine_cooldown.is_zero() {
        println!("quarantine   lifted only by `prx release`");
    } else {
        println!(
            "quarantine   for crashes lifted after {:?}, doubling up to {:?}; the streak resets after {:?} of serving",
            r.quarantine_cooldown, r.quarantine_cooldown_max, r.quarantine_reset
        );
    }
    println!(
        "liveness     ping every {:?}, timeout {:?}",
        config.liveness.interval, config.liveness.timeout
    );
    println!(
        "logs         {} lines/s per plugin, burst {}",
        config.log_rate.per_second, config.log_rate.burst
    );
    println!("events       queue {} per subscriber", config.event_queue);
    match &config.cluster {
        Some(c) => println!(
            "cluster      node {} on {}; calls wait {} ms; heartbeat {} ms; kv {:?} with {} replica(s)",
            c.node,
            c.redacted_servers().join(", "),
            c.call_timeout.as_millis(),
            c.heartbeat.as_millis(),
            config.kv_backend,
            c.kv_replicas
        ),
        None => println!(
            "cluster      none: this supervisor runs alone (kv {:?})",
            config.kv_backend
        ),
    }
    let sandbox = &config.sandbox;
    let required: Vec<&str> = sandbox.required.iter().map(|l| l.as_str()).collect();
    println!(
        "sandbox      every layer; required: {}; seccomp {}; address space {} MiB + memories",
        if required.is_empty() {
            "none".to_owned()
        } else {
            required.join(", ")
        },
        if sandbox.seccomp_log_only {
            "log-only (development)"
        } else {
            "enforced"
        },
        sandbox.address_space_base >> 20
    );
    println!(
        "kv           {}",
        if config.ephemeral_kv {
            "in memory (ephemeral)".to_owned()
        } else {
            config.kv_path().display().to_string()
        }
    );
    let caps = |c: &prx_supervisor::config::ResourceCap| {
        let keys = [
            ("max_fuel", c.max_fuel),
            ("max_memory_mb", c.max_memory_mb),
            ("max_execution_time_ms", c.max_execution_time_ms),
            ("max_http_requests", c.max_http_requests),
            ("max_kv_storage_kb", c.max_kv_storage_kb),
        ];
        let set: Vec<String> = keys
            .iter()
            .filter_map(|(k, v)| v.map(|v| format!("{k} {v}")))
            .collect();
        if set.is_empty() {
            "as the manifest asks".to_owned()
        } else {
            set.join(", ")
        }
    };
    println!(
        "resources    default: {}",
        caps(&config.resource_caps.default)
    );
    for (plugin, cap) in &config.resource_caps.plugins {
        println!("             {plugin}: {}", caps(cap));
    }
    let api = &config.api;
    println!(
        "api          socket {} (mode {:o}, no token); http {}; requests up to {} KiB",
        config.socket_path().display(),
        api.socket_mode,
        match api.http {
            Some(addr) => format!(
                "{addr} (token from {})",
                if api.token.is_some() {
                    "the config".to_owned()
                } else {
                    config.token_path().display().to_string()
                }
            ),
            None => "off".to_owned(),
        },
        api.max_request_bytes >> 10
    );
    println!(
        "log format   {}",
        match config.log_format {
            LogFormat::Human => "human",
            LogFormat::Json => "json",
        }
    );
    Ok(ExitCode::SUCCESS)
}
