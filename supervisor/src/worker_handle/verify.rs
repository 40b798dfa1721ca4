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

/// Checks a worker's report against the policy and against the kernel's
/// view of the process that runs the plugin, which is returned: with the
/// namespaces layer, the one child of `pid` (the process the supervisor
/// started), process 1 of its own PID namespace; otherwise `pid` itself.
pub fn check(
    policy: &SandboxPolicy,
    settings: &SandboxSettings,
    report: &SandboxReport,
    pid: u32,
) -> Result<u32, SandboxRefusal> {
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
    let applied = |layer| status_of(layer) == Some(LayerStatus::Applied);
    let contradicted =
        |layer, evidence: String| Err(SandboxRefusal::Contradicted { layer, evidence });
    // The cgroup is the started process's (its child inherits it).
    if applied(Layer::Cgroup) {
        let cgroups = read_proc(pid, "cgroup");
        if !cgroups.lines().any(|l| l.ends_with(&format!("-{pid}"))) {
            return contradicted(
                Layer::Cgroup,
                format!("/proc/{pid}/cgroup does not name its cgroup: {cgroups:?}"),
            );
        }
    }
    // The worker forks into its PID namespace right after unsharing it,
    // even when a later namespace step fails: the one child, when there
    // is one, is what runs the plugin.
    let children = read_proc(pid, &format!("task/{pid}/children"));
    let pid = match children.split_whitespace().collect::<Vec<_>>()[..] {
        [one] => match one.parse() {
            Ok(child) => child,
            Err(_) => return contradicted(Layer::Namespaces, format!("child {one:?}")),
        },
        [] if !applied(Layer::Namespaces) => pid,
        _ => {
            return contradicted(
                Layer::Namespaces,
                format!(
                    "process {pid} has not exactly one child in a PID namespace (children: {children:?})"
                ),
            );
        }
    };
    let status = read_proc(pid, "status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
            .unwrap_or("")
            .to_owned()
    };
    if applied(Layer::Seccomp) {
        if field("Seccomp") != "2" {
            return contradicted(
                Layer::Seccomp,
                format!("/proc/{pid}/status says Seccomp: {:?}", field("Seccomp")),
            );
        }
        // The worker installs its own filters on top of any this process
        // runs under (a systemd unit's, say). Kernels before 5.9 do not
        // show the count.
        let ours = own_seccomp_filters();
        if let (Ok(theirs), Some(ours)) = (field("Seccomp_filters").parse::<u32>(), ours)
            && theirs < ours + SECCOMP_FILTERS
        {
            return contradicted(
                Layer::Seccomp,
                format!(
                    "/proc/{pid}/status shows {theirs} seccomp filters; the worker's {SECCOMP_FILTERS} on top of this supervisor's {ours} make {}",
                    ours + SECCOMP_FILTERS
                ),
            );
        }
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
    if applied(Layer::Rlimits) {
        let limits = read_proc(pid, "limits");
        for (name, want) in expected_limits(settings) {
            let shown = limit_of(&limits, name);
            if shown != Some((want, want)) {
                return contradicted(
                    Layer::Rlimits,
                    format!(
                        "/proc/{pid}/limits shows {name} {shown:?}, not {want} (soft and hard)"
                    ),
                );
            }
        }
    }
    if applied(Layer::Namespaces) {
        for ns in ["user", "pid", "net", "ipc", "mnt"] {
            let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).ok();
            let ours = std::fs::read_link(Path::new("/proc/self/ns").join(ns)).ok();
            if theirs.is_none() || theirs == ours {
                return contradicted(
                    Layer::Namespaces,
                    format!("its {ns} namespace is the supervisor's ({theirs:?})"),
                );
            }
        }
    }
    Ok(pid)
}

/// The filters a worker installs (see the worker's `seccomp` module: four
/// while it loads, one more before the plugin runs).
const SECCOMP_FILTERS: u32 = 5;

fn read_proc(pid: u32, file: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap_or_default()
}

fn own_seccomp_filters() -> Option<u32> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp_filters:"))?
        .trim()
        .parse()
        .ok()
}

/// The rlimits a worker sets, as `/proc/<pid>/limits` names them, with
/// the value (soft and hard alike) it must show. `u64::MAX` is
/// "unlimited".
fn expected_limits(settings: &SandboxSettings) -> Vec<(&'static str, u64)> {
    let unlimited_if_zero = |v: u64| if v == 0 { u64::MAX } else { v };
    vec![
        ("Max core file size", 0),
        ("Max file size", settings.file_size),
        ("Max open files", prx_ipc::WORKER_MAX_FDS),
        ("Max processes", prx_ipc::WORKER_MAX_THREADS),
        ("Max locked memory", 0),
        ("Max msgqueue size", 0),
        (
            "Max address space",
            unlimited_if_zero(settings.address_space),
        ),
        ("Max cpu time", unlimited_if_zero(settings.cpu_seconds)),
    ]
}

/// Soft and hard limit of one line of `/proc/<pid>/limits`.
fn limit_of(limits: &str, name: &str) -> Option<(u64, u64)> {
    let rest = limits.lines().find_map(|l| l.strip_prefix(name))?;
    let mut values = rest.split_whitespace().map(|v| match v {
        "unlimited" => Some(u64::MAX),
        n => n.parse().ok(),
    });
    Some((values.next()??, values.next()??))
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
        let settings = policy.settings(0, 0, 0);
        let err = check(&policy, &settings, &r, std::process::id()).unwrap_err();
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
        let settings = policy.settings(0, 0, 0);
        for layer in [
            Layer::Seccomp,
            Layer::NoNewPrivs,
            Layer::Namespaces,
            Layer::Rlimits,
        ] {
            let r = report(&[(layer, LayerStatus::Applied)]);
            match check(&policy, &settings, &r, std::process::id()) {
                Err(SandboxRefusal::Contradicted { layer: l, .. }) => assert_eq!(l, layer),
                other => panic!("{layer}: {other:?}"),
            }
        }
    }

    #[test]
    fn rlimits_are_read_as_proc_shows_them() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            32                   32                   files     \n";
        assert_eq!(limit_of(limits, "Max open files"), Some((32, 32)));
        assert_eq!(limit_of(limits, "Max cpu time"), Some((u64::MAX, u64::MAX)));
        assert_eq!(limit_of(limits, "Max processes"), None);
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
