//! Log lines a plugin writes, and their levels.

use bincode::{Decode, Encode};

use crate::text::WorkerText;

/// A log line from the plugin (the `log` import, or WASI stdout/stderr).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct LogMsg {
    pub level: LogLevel,
    pub message: WorkerText,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Encode, Decode)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trace => "trace",
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}
