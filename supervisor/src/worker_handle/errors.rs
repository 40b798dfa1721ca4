//! What can go wrong starting a worker or calling it, as types the
//! plugin's supervision decides on (a security event, a stale artifact, a
//! crash) rather than text.

use std::path::PathBuf;
use std::time::Duration;

use prx_ipc::{GuestError, LoadStage, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};

use super::handshake::stage_name;

/// Why a worker could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot start the worker binary {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the worker speaks protocol {min}..={max}; this supervisor speaks {MIN_PROTOCOL_VERSION}..={PROTOCOL_VERSION}"
    )]
    Protocol { min: u16, max: u16 },
    #[error("{} failed: {message}", stage_name(*.stage))]
    Load { stage: LoadStage, message: String },
    /// A start was asked of a component that was not compiled first.
    #[error("the plugin is started from a compiled artifact only (compile it first)")]
    NotCompiled,
    #[error("loading did not finish within {0:?} (compile timeout)")]
    Timeout(Duration),
    #[error("the worker broke the protocol during start-up: {0}")]
    Violation(String),
    #[error("the worker exited during start-up ({0})")]
    Exited(String),
    #[error(transparent)]
    Sandbox(#[from] super::verify::SandboxRefusal),
}

impl StartError {
    /// True when a cached artifact was refused and compiling from the wasm
    /// may work.
    pub fn is_stale_artifact(&self) -> bool {
        matches!(
            self,
            Self::Load {
                stage: LoadStage::Deserialize,
                ..
            }
        )
    }

    /// True when the worker lied or broke the protocol while starting: a
    /// security event (the plugin is quarantined), not a failure to retry.
    pub fn is_security_event(&self) -> bool {
        matches!(
            self,
            Self::Violation(_) | Self::Sandbox(super::verify::SandboxRefusal::Contradicted { .. })
        )
    }

    /// The error as the plugin's status and the operator read it: a
    /// security event says so first.
    pub fn reason(&self) -> String {
        if self.is_security_event() {
            format!("security event: {self}")
        } else {
            self.to_string()
        }
    }
}

/// Why an invocation did not return a value.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InvokeError {
    #[error("{}", .0.message)]
    Guest(GuestError),
    #[error("no answer within {0:?}; the worker was killed")]
    Timeout(Duration),
    #[error("the worker died ({0})")]
    Died(String),
    /// The reply's type is not one the call can return: a protocol
    /// violation; the worker was killed.
    #[error("a reply of the wrong type; the worker was killed")]
    BadReply,
    /// Too many calls wait for the worker already, or this one waited its
    /// whole deadline for its turn; the worker is not blamed.
    #[error("busy: {0}")]
    Busy(String),
}
