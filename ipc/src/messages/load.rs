//! Loading: what a compile worker and a run worker answer once the
//! component is compiled, mapped or refused.

use bincode::{Decode, Encode};

use crate::text::WorkerText;

use super::handshake::SandboxReport;

/// A compile worker's answer: the artifact follows in chunks. Sent with
/// every sandbox layer in place, before any code of the plugin could run
/// (none does in a compile worker).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Compiled {
    /// Length of the artifact that follows in chunks.
    pub artifact_len: u64,
    /// How long compiling took, in microseconds.
    pub compile_us: u64,
    /// Every sandbox layer, applied or not, in order.
    pub sandbox: SandboxReport,
}

/// The worker instantiated the plugin. It sent [`super::FromWorker::Confined`]
/// (every layer in place, seccomp last) before the first line of the
/// plugin ran.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Loaded {
    /// Names of the component's exported interfaces.
    pub exports: Vec<String>,
    /// Names of the component's imported interfaces. A host call to an
    /// interface not among them cannot come from the component.
    pub imports: Vec<String>,
    /// How long mapping (or copying) and deserialising took, in
    /// microseconds.
    pub compile_us: u64,
    /// How the code was obtained.
    pub code: CodeSource,
}

/// How a worker obtained the plugin's machine code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum CodeSource {
    /// Compiled from the component's bytes.
    Compiled,
    /// The cached artifact, mapped and run in place.
    Mapped,
    /// The cached artifact, read and copied: the mapping could not be made
    /// executable (a `noexec` mount, for one).
    Copied,
}

impl CodeSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Compiled => "compiled",
            Self::Mapped => "cache, mapped",
            Self::Copied => "cache, copied",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct LoadFailed {
    pub stage: LoadStage,
    pub message: WorkerText,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum LoadStage {
    Receive,
    Compile,
    Deserialize,
    Link,
    Instantiate,
}
