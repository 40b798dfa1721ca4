//! What the supervisor checks of a worker's sandbox, trusting nothing the
//! worker says: the layers the operator requires must be reported applied,
//! and what the kernel shows of the process (`/proc/<pid>/status`, its
//! namespaces) must agree with the report.

use std::collections::BTreeSet;
use std::path::Path;

use prx_ipc::{LayerStatus, SandboxReport, SandboxSettings, SeccompMode, layer};
use serde::{Deserialize, Serialize};

/// A sandbox layer the operator can require.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layer {
    Namespaces,
    Rlimits,
    Capabilities,
    NoNewPrivs,
    Landlock,
    Seccomp,
    /// Applied by the supervisor: a memory and pids cgroup per worker.
    Cgroup,
}

impl Layer {
    pub const ALL: [Layer; 7] = [
        Layer::Namespaces,
        Layer::Rlimits,
        Layer::Capabilities,
        Layer::NoNewPrivs,
        Layer::Landlock,
        Layer::Seccomp,
        Layer::Cgroup,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Namespaces => layer::NAMESPACES,
            Self::Rlimits => layer::RLIMITS,
            Self::Capabilities => layer::CAPABILITIES,
            Self::NoNewPrivs => layer::NO_NEW_PRIVS,
            Self::Landlock => layer::LANDLOCK,
            Self::Seccomp => layer::SECCOMP,
            Self::Cgroup => layer::CGROUP,
        }
    }
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The operator's sandbox settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxPolicy {
    /// Layers the workers apply; all of them unless a test turns one off.
    pub enabled: BTreeSet<Layer>,
    /// `Log` lets a forbidden syscall through and logs it (to derive the
    /// allowlist); never for production.
    pub seccomp_log_only: bool,
    /// Layers without which a worker is refused.
    pub required: BTreeSet<Layer>,
    /// Address space for the runtime itself (compiler, allocator, stacks);
    /// each linear memory's reservation and guard come on top.
    pub address_space_base: u64,
    /// `RLIMIT_CPU` per worker in seconds; 0 for none (a worker lives as
    /// long as its plugin, so CPU time accumulates over every call; fuel
    /// and the epoch deadline bound each call).
    pub cpu_seconds: u64,
    /// A worker's cgroup memory limit for the runtime itself (compiling
    /// included); each linear memory's maximum comes on top.
    pub memory_base: u64,
    /// A worker's cgroup limit on tasks (threads).
    pub max_tasks: u64,
}

/// Linear memories counted into the address-space limit.
const MEMORIES_IN_ADDRESS_SPACE: u64 = 8;

impl Default for SandboxPolicy {
    /// Every layer on; seccomp, no_new_privs and rlimits required (they
    /// need nothing from the host but a Linux kernel); the others are
    /// reported when the host does not offer them.
    fn default() -> Self {
        Self {
            enabled: Layer::ALL.into(),
            seccomp_log_only: false,
            required: [Layer::Seccomp, Layer::NoNewPrivs, Layer::Rlimits].into(),
            address_space_base: 4 << 30,
            cpu_seconds: 0,
            memory_base: 1 << 30,
            max_tasks: 128,
        }
    }
}

impl SandboxPolicy {
    /// The cgroup memory limit of a worker whose linear memories may grow
    /// to `max_memory` bytes each.
    pub fn memory_limit(&self, max_memory: u64) -> u64 {
        self.memory_base
            .saturating_add(MEMORIES_IN_ADDRESS_SPACE.saturating_mul(max_memory))
    }

    /// What the worker is told to apply, for a plugin whose linear
    /// memories reserve `memory_reservation + memory_guard` each.
    pub fn settings(
        &self,
        memory_reservation: u64,
        memory_guard: u64,
        component_len: u64,
    ) -> SandboxSettings {
        let on = |layer| self.enabled.contains(&layer);
        SandboxSettings {
            namespaces: on(Layer::Namespaces),
            rlimits: on(Layer::Rlimits),
            capabilities: on(Layer::Capabilities),
            no_new_privs: on(Layer::NoNewPrivs),
            landlock: on(Layer::Landlock),
            seccomp: match (on(Layer::Seccomp), self.seccomp_log_only) {
                (false, _) => SeccompMode::Off,
                (true, true) => SeccompMode::Log,
                (true, false) => SeccompMode::Enforce,
            },
            address_space: self.address_space_base.saturating_add(
                MEMORIES_IN_ADDRESS_SPACE
                    .saturating_mul(memory_reservation.saturating_add(memory_guard)),
            ),
            // Initial memory images are at most the size of what was sent
            // (data segments are part of it).
            file_size: component_len.saturating_add(1 << 20),
            cpu_seconds: self.cpu_seconds,
        }
    }
}

/// Why a worker's sandbox was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SandboxRefusal {
    /// The host cannot give a required layer: an operator matter.
    #[error(
        "sandbox layer `{layer}` is required but could not be applied ({why}); provide it on this host or remove it from [sandbox] required"
    )]
    Missing { layer: Layer, why: String },
    /// The worker claims something the kernel contradicts: a security
    /// event.
    #[error("the worker reports sandbox layer `{layer}` applied, but {evidence}")]
    Contradicted { layer: Layer, evidence: String },
}

/// Checks a loaded worker's report against the policy and the process.
pub fn check(
    policy: &SandboxPolicy,
    report: &SandboxReport,
    pid: u32,
) -> Result<(), SandboxRefusal> {
    let status_of = |layer: Layer| {
        report
            .layers
            .iter()
            .rev()
            .find(|l| l.layer == layer.as_str())
            .map(|l| l.status.clone())
    };
    for layer in &policy.required {
        match status_of(*layer) {
            Some(LayerStatus::Applied) => {}
            Some(LayerStatus::Unavailable(why)) => {
                return Err(SandboxRefusal::Missing { layer: *layer, why });
            }
            Some(LayerStatus::Disabled) => {
                return Err(SandboxRefusal::Missing {
                    layer: *layer,
                    why: "turned off in this supervisor's configuration".into(),
                });
            }
            None => {
                return Err(SandboxRefusal::Missing {
                    layer: *layer,
                    why: "the worker did not report it".into(),
                });
            }
        }
    }
    let proc = Path::new("/proc").join(pid.to_string());
    let status = std::fs::read_to_string(proc.join("status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
            .unwrap_or("")
            .to_owned()
    };
    let applied = |layer| status_of(layer) == Some(LayerStatus::Applied);
    let contradicted =
        |layer, evidence: String| Err(SandboxRefusal::Contradicted { layer, evidence });
    if applied(Layer::Seccomp) && field("Seccomp") != "2" {
        return contradicted(
            Layer::Seccomp,
            format!("/proc/{pid}/status says Seccomp: {:?}", field("Seccomp")),
        );
    }
    if applied(Layer::NoNewPrivs) && field("NoNewPrivs") != "1" {
        return contradicted(
            Layer::NoNewPrivs,
            format!(
                "/proc/{pid}/status says NoNewPrivs: {:?}",
                field("NoNewPrivs")
            ),
        );
    }
    if applied(Layer::Capabilities) {
        for set in ["CapEff", "CapPrm", "CapBnd", "CapAmb"] {
            let value = field(set);
            if u64::from_str_radix(&value, 16) != Ok(0) {
                return contradicted(
                    Layer::Capabilities,
                    format!("/proc/{pid}/status says {set}: {value:?}"),
                );
            }
        }
    }
    if applied(Layer::Cgroup) {
        let cgroups = std::fs::read_to_string(proc.join("cgroup")).unwrap_or_default();
        if !cgroups.contains(&format!("-{pid}")) {
            return contradicted(
                Layer::Cgroup,
                format!("/proc/{pid}/cgroup does not name its cgroup: {cgroups:?}"),
            );
        }
    }
    if applied(Layer::Namespaces) {
        for ns in ["user", "net", "ipc", "mnt"] {
            let theirs = std::fs::read_link(proc.join("ns").join(ns)).ok();
            let ours = std::fs::read_link(Path::new("/proc/self/ns").join(ns)).ok();
            if theirs.is_none() || theirs == ours {
                return contradicted(
                    Layer::Namespaces,
                    format!("its {ns} namespace is the supervisor's ({theirs:?})"),
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prx_ipc::LayerReport;

    fn report(layers: &[(Layer, LayerStatus)]) -> SandboxReport {
        SandboxReport {
            layers: layers
                .iter()
                .map(|(l, s)| LayerReport {
                    layer: l.as_str().into(),
                    status: s.clone(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_required_layer_that_is_missing_refuses_the_worker_with_the_reason() {
        let policy = SandboxPolicy::default();
        let r = report(&[
            (Layer::Rlimits, LayerStatus::Applied),
            (Layer::NoNewPrivs, LayerStatus::Applied),
            (
                Layer::Seccomp,
                LayerStatus::Unavailable("no kernel support".into()),
            ),
        ]);
        let err = check(&policy, &r, std::process::id()).unwrap_err();
        assert_eq!(
            err,
            SandboxRefusal::Missing {
                layer: Layer::Seccomp,
                why: "no kernel support".into()
            }
        );
        assert!(err.to_string().contains("[sandbox] required"), "{err}");
    }

    #[test]
    fn claims_the_kernel_contradicts_are_caught() {
        // This test process has no seccomp filter, keeps no_new_privs off
        // and shares our namespaces: every claim about it is false.
        let policy = SandboxPolicy {
            required: BTreeSet::new(),
            ..SandboxPolicy::default()
        };
        for layer in [Layer::Seccomp, Layer::NoNewPrivs, Layer::Namespaces] {
            let r = report(&[(layer, LayerStatus::Applied)]);
            match check(&policy, &r, std::process::id()) {
                Err(SandboxRefusal::Contradicted { layer: l, .. }) => assert_eq!(l, layer),
                other => panic!("{layer}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_address_space_covers_the_runtime_and_the_memories() {
        let s = SandboxPolicy::default().settings(16 << 20, 64 << 10, 100);
        assert_eq!(s.file_size, 100 + (1 << 20));
        assert_eq!(s.address_space, (4 << 30) + 8 * ((16 << 20) + (64 << 10)));
        assert_eq!(s.seccomp, SeccompMode::Enforce);
        let off = SandboxPolicy {
            enabled: [Layer::Rlimits].into(),
            ..SandboxPolicy::default()
        }
        .settings(0, 0, 0);
        assert!(!off.namespaces && !off.landlock && off.rlimits);
        assert_eq!(off.seccomp, SeccompMode::Off);
    }
}
