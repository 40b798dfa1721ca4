//! Runs cron plugins on their schedules, never two runs of one plugin at
//! once, and on demand (`prx cron run`).
//!
//! Time comes from a [`Clock`]: the system's in production, a
//! [`crate::clock::ManualClock`] in tests, so a schedule can be driven minute by minute
//! without waiting. Fire times missed while the supervisor was down or a
//! clock jumped are not caught up: after a run, the next fire time is the
//! first one after now.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Instant;

use chrono::{DateTime, Utc};
use prx_ipc::{Call, Output};

use crate::clock::Clock;
use crate::cron_expr::CronSchedule;
use crate::error::CallError;
use crate::metrics::CronOutcome;
use crate::plugin::{Plugin, PluginState, Runtime};
use crate::topics::no_chain;

/// Why a run started.
#[derive(Debug, Clone, Copy)]
pub enum Trigger {
    Schedule(DateTime<Utc>),
    Manual,
}

/// The right to run a plugin's cron job: one at a time per plugin,
/// released when dropped.
#[derive(Debug)]
pub struct Claim(Arc<Plugin>);

impl Claim {
    /// `None` while another run holds it.
    pub fn take(plugin: &Arc<Plugin>) -> Option<Self> {
        plugin
            .cron_running
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .ok()
            .map(|_| Self(plugin.clone()))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.0.cron_running.store(false, Ordering::SeqCst);
    }
}

/// Runs the plugin's cron job now, unless a run is in progress.
pub async fn run_now(plugin: &Arc<Plugin>, rt: &Runtime) -> Result<String, CallError> {
    let claim = Claim::take(plugin).ok_or_else(|| CallError::Busy {
        plugin: plugin.name.to_string(),
        why: "its previous cron run is still going".into(),
    })?;
    run_claimed(claim, rt, Trigger::Manual).await
}

/// One run, holding the plugin's claim until it ends.
async fn run_claimed(claim: Claim, rt: &Runtime, trigger: Trigger) -> Result<String, CallError> {
    let plugin = &*claim.0;
    let started = Instant::now();
    let result = match plugin.call(rt, Call::CronRun, no_chain()).await {
        Ok(Output::Text(text)) => Ok(crate::text::untrusted_text(text)),
        Ok(Output::Refused(error)) => Err(CallError::Refused {
            plugin: plugin.name.to_string(),
            action: "its cron run".into(),
            error: crate::text::untrusted_text(error),
        }),
        Ok(_) => Err(plugin.bad_reply()),
        Err(e) => Err(e),
    };
    let duration_ms = started.elapsed().as_millis() as u64;
    let (trigger_name, scheduled_for) = match trigger {
        Trigger::Schedule(at) => ("schedule", Some(at.to_rfc3339())),
        Trigger::Manual => ("manual", None),
    };
    let outcome = CronOutcome {
        trigger: trigger_name.into(),
        scheduled_for: scheduled_for.clone(),
        success: result.is_ok(),
        output: match &result {
            Ok(text) => text.clone(),
            Err(e) => e.to_string(),
        },
        duration_ms,
    };
    {
        let mut stats = plugin.cron.lock().unwrap_or_else(|p| p.into_inner());
        stats.runs += 1;
        if result.is_err() {
            stats.failures += 1;
        }
        stats.last = Some(outcome.clone());
    }
    match &result {
        Ok(text) => {
            tracing::info!(plugin = %plugin.name, trigger = trigger_name, duration_ms, "cron run done: {text}")
        }
        Err(e) => {
            tracing::warn!(plugin = %plugin.name, trigger = trigger_name, duration_ms, "cron run failed: {e}")
        }
    }
    plugin.announce(
        "prx.cron.completed",
        serde_json::to_value(&outcome).unwrap_or_default(),
    );
    if let Err(e) = &result {
        plugin.report_error(&e.to_string(), "cron", no_chain());
    }
    result
}

/// Fires the plugin's cron job on `schedule` until the plugin is stopped
/// or replaced.
pub async fn run_schedule(
    plugin: Weak<Plugin>,
    rt: Runtime,
    schedule: CronSchedule,
    clock: Arc<dyn Clock>,
) {
    let mut after = clock.now();
    loop {
        let Some(next) = schedule.next_after(after) else {
            return;
        };
        {
            let Some(plugin) = plugin.upgrade() else {
                return;
            };
            plugin.cron.lock().unwrap_or_else(|p| p.into_inner()).next = Some(next.to_rfc3339());
        }
        clock.sleep_until(next).await;
        let Some(strong) = plugin.upgrade() else {
            return;
        };
        if strong.is_stopping() {
            return;
        }
        after = next.max(clock.now());
        if matches!(
            strong.state(),
            PluginState::Failed(_) | PluginState::Stopped
        ) {
            return;
        }
        let Some(claim) = Claim::take(&strong) else {
            strong
                .cron
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .skipped += 1;
            tracing::warn!(plugin = %strong.name, due = %next.to_rfc3339(),
                "the previous cron run is still going; skipping this one");
            continue;
        };
        let rt = rt.clone();
        tokio::spawn(async move {
            // Errors are logged, counted and published by the run.
            let _ = run_claimed(claim, &rt, Trigger::Schedule(next)).await;
        });
    }
}
