//! A plugin's log lines: under its rate, escaped, and written to the
//! supervisor's log with the plugin's name.

use prx_ipc::LogLevel;
use prx_ipc::WorkerText;

use super::PluginBroker;
use super::rate::Admit;

impl PluginBroker {
    /// Log lines of this plugin dropped by the rate limit so far.
    pub fn log_dropped(&self) -> u64 {
        self.log.dropped()
    }

    /// Writes a plugin's log line into the supervisor's log, unless the
    /// plugin is over its rate (then the line is counted and dropped).
    pub fn log(&self, level: LogLevel, message: &WorkerText) {
        let plugin = &*self.plugin;
        match self.log.admit() {
            Admit::Yes => {}
            Admit::No => return,
            Admit::FirstDrop => {
                tracing::warn!(
                    plugin,
                    "plugin logs faster than {} lines/s; dropping lines until it slows down",
                    self.log.rate().per_second
                );
                return;
            }
            Admit::AfterDrops(n) => {
                tracing::warn!(
                    plugin,
                    dropped = n,
                    "plugin log lines dropped by the rate limit"
                );
            }
        }
        // Escaped, and cut when very long: a line is for reading.
        let message = message.escaped();
        self.stats.plugin_line(level.as_str(), &message);
        match level {
            LogLevel::Trace => tracing::trace!(target: "plugin", plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(target: "plugin", plugin, "{message}"),
            LogLevel::Info => tracing::info!(target: "plugin", plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(target: "plugin", plugin, "{message}"),
            LogLevel::Error => tracing::error!(target: "plugin", plugin, "{message}"),
        }
    }
}
