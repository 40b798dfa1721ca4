//! Delivery: events from the bus to the hooks and modules subscribed to
//! them, each plugin's queue drained by one task, and cron plugins'
//! schedules started.

use std::sync::Arc;

use prx_ipc::{Call, Output};

use crate::error::CallError;
use crate::manifest::CapabilityType;
use crate::plugin::{Plugin, Runtime};
use crate::services::events::{Event, EventBus};
use crate::topics::extend;

use super::Supervisor;

impl Supervisor {
    /// Starts delivering a hook's or module's events: one task per plugin,
    /// one event at a time, in publish order.
    pub(super) fn spawn_delivery(&self, plugin: &Arc<Plugin>) {
        let module = plugin
            .manifest
            .capabilities_of(CapabilityType::Module)
            .next()
            .is_some();
        let hook = plugin
            .manifest
            .capabilities_of(CapabilityType::Hook)
            .next()
            .is_some();
        if !module && !hook {
            return;
        }
        // Taken once per name: a new version of the plugin is served by
        // the task its first version started.
        let Some(mut queue) = self.inner.services.bus.take_plugin_queue(&plugin.name) else {
            return;
        };
        let inner = Arc::downgrade(&self.inner);
        let name = plugin.name.clone();
        tokio::spawn(async move {
            while let Some(event) = queue.recv().await {
                // The version serving now, whichever that is.
                let Some(inner) = inner.upgrade() else { return };
                let supervisor = Supervisor { inner };
                let Some(plugin) = supervisor.plugin_named(&name) else {
                    return;
                };
                if plugin.is_stopping() {
                    return;
                }
                let (hook, module) =
                    event_targets(&plugin, &supervisor.inner.services.bus, &event.topic);
                if hook {
                    deliver(&plugin, supervisor.runtime(), event.clone(), true).await;
                }
                if module {
                    deliver(&plugin, supervisor.runtime(), event, false).await;
                }
            }
        });
    }

    /// Starts the schedule of each cron capability of the plugin.
    pub(super) fn spawn_schedules(&self, plugin: &Arc<Plugin>) {
        for cap in plugin.manifest.capabilities_of(CapabilityType::Cron) {
            let Some(expr) = &cap.schedule else { continue };
            // Validated with the manifest; a failure here is a bug.
            let schedule = match crate::cron_expr::CronSchedule::parse(expr) {
                Ok(schedule) => schedule,
                Err(e) => {
                    tracing::error!(plugin = %plugin.name, "cron schedule not started: {e}");
                    continue;
                }
            };
            tokio::spawn(crate::scheduler::run_schedule(
                Arc::downgrade(plugin),
                self.runtime().clone(),
                schedule,
                self.inner.config.clock.clone(),
            ));
        }
    }
}

/// Which of a plugin's handlers an event goes to: (hook, module). A
/// plugin that is only one of them gets every event its subscriptions
/// let through; one that is both gets at its hook what its manifest
/// patterns match and at its module what it subscribed to when it loaded.
fn event_targets(plugin: &Plugin, bus: &EventBus, topic: &str) -> (bool, bool) {
    let is_hook = plugin
        .manifest
        .capabilities_of(CapabilityType::Hook)
        .next()
        .is_some();
    let is_module = plugin
        .manifest
        .capabilities_of(CapabilityType::Module)
        .next()
        .is_some();
    if is_hook && is_module {
        bus.matching(&plugin.name, topic)
    } else {
        (is_hook, is_module)
    }
}

/// Hands one event to a hook's `on-event` or a module's `on-event`. A
/// failure is logged, counted and published as an `error` event that the
/// plugin itself does not receive.
async fn deliver(plugin: &Plugin, rt: &Runtime, event: Event, hook: bool) {
    let chain = extend(&event.chain, &plugin.name);
    let call = if hook {
        Call::HookOnEvent {
            event: event.topic.to_string(),
            payload: event.payload.to_string(),
        }
    } else {
        Call::ModuleOnEvent {
            topic: event.topic.to_string(),
            payload: event.payload.to_string(),
        }
    };
    plugin
        .events_handled
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let failure = match plugin.call(rt, call, chain.clone()).await {
        Ok(Output::Unit) => return,
        // Quarantined, failed or stopping: its state says why already; an
        // `error` event per undelivered event would only add noise.
        Err(e @ CallError::NotRunning { .. }) => {
            plugin
                .handler_failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(plugin = %plugin.name, topic = %event.topic, "event not delivered: {e}");
            return;
        }
        Ok(Output::Refused(error)) => format!(
            "handler refused {}: {}",
            event.topic,
            crate::text::untrusted_text(error)
        ),
        Ok(_) => "handler answered with the wrong type".into(),
        Err(e) => format!("handler failed on {}: {e}", event.topic),
    };
    plugin
        .handler_failures
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::warn!(plugin = %plugin.name, topic = %event.topic, "{failure}");
    plugin.report_error(&failure, if hook { "hook" } else { "module" }, chain);
}
