//! The worker sandbox under attack: from inside a loaded, fully sandboxed
//! worker, a probe (`prx-worker --test-probe`) tries what an attacker who
//! escaped wasm would try. Each attempt must fail, by an error or by the
//! seccomp filter killing the worker (`SIGSYS`). Then each layer is turned
//! off in turn, and the others must still keep the files and the network
//! out of reach.

use crate::common;

use std::collections::BTreeSet;
use std::net::TcpListener;

use common::{Env, echo_manifest, slow_to_compile, tool_manifest};
use prx_supervisor::plugin::{CodeOrigin, LayerState};
use prx_supervisor::worker_handle::verify::Layer;
use prx_supervisor::{CallError, Supervisor};

/// What one probe did: its report, or how the worker died.
#[derive(Debug)]
enum Outcome {
    Reported(String),
    Killed(String),
}

impl Outcome {
    fn blocked(&self) -> bool {
        match self {
            Self::Reported(text) => text.starts_with("blocked: "),
            Self::Killed(cause) => cause.contains("SIGSYS"),
        }
    }
}

/// `{kv}` in a probe stands for this supervisor's own kv database,
/// `{cache}` for the compile cache the worker's code was mapped from.
/// Also returns how the worker got its code.
async fn probe_with(probe: &str, enabled: BTreeSet<Layer>) -> (Outcome, Env, Option<CodeOrigin>) {
    let env = Env::new();
    env.add("echo-tool", "echo-tool", &echo_manifest());
    let mut config = env.config();
    let kv = config.kv_path();
    let cache = config.cache_dir.clone().expect("the shared cache");
    config.test_probe = Some(
        probe
            .replace("{kv}", &kv.display().to_string())
            .replace("{cache}", &cache.display().to_string()),
    );
    config.sandbox.enabled = enabled;
    config.sandbox.required.clear();
    config.ephemeral_kv = !probe.contains("{kv}");
    let sup = Supervisor::start(config).await.expect("start");
    assert_eq!(sup.running(), 1, "{probe}: {:?}", sup.failures());
    let code = sup.plugins().pop().and_then(|p| p.code);
    let outcome = match sup.call_tool("echo", "{}").await {
        Ok(text) => Outcome::Reported(text),
        Err(CallError::Crashed { cause, .. }) => Outcome::Killed(cause),
        Err(other) => panic!("{probe}: {other:?}"),
    };
    sup.shutdown().await;
    (outcome, env, code)
}

async fn probe(name: &str) -> Outcome {
    probe_with(name, Layer::ALL.into()).await.0
}

#[tokio::test]
async fn an_escaped_attacker_can_do_none_of_the_usual_things() {
    // Something to connect to, and a file the supervisor owns.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let supervisor_pid = std::process::id();
    let probes = [
        "open-passwd".to_owned(),
        // The supervisor's redb file, with every plugin's data.
        "open-file:{kv}".to_owned(),
        "write-file".to_owned(),
        "inet-socket".to_owned(),
        format!("connect-loopback:{port}"),
        "fork".to_owned(),
        "execve".to_owned(),
        format!("ptrace:{supervisor_pid}"),
        format!("kill:{supervisor_pid}"),
        "raise-nofile".to_owned(),
        // A descriptor passed to the supervisor over the link.
        "send-fd".to_owned(),
    ];
    for name in &probes {
        let outcome = probe(name).await;
        assert!(outcome.blocked(), "{name}: {outcome:?}");
    }
    // The supervisor (this process) is alive to say so.
}

#[tokio::test]
async fn a_worker_mapping_its_code_from_the_cache_keeps_no_descriptor_and_cannot_open_it() {
    // Make sure the echo example is in the shared compile cache.
    let env = Env::new();
    env.add("echo-tool", "echo-tool", &echo_manifest());
    env.supervisor().await.shutdown().await;
    for name in ["stray-fds", "open-file:{cache}"] {
        let (outcome, _env, code) = probe_with(name, Layer::ALL.into()).await;
        assert_eq!(code, Some(CodeOrigin::Mapped), "{name}");
        assert!(outcome.blocked(), "{name}: {outcome:?}");
    }
    // The control: without the sandbox the cache directory opens (the
    // probe is a real attempt), and still no descriptor is left over.
    let (outcome, _env, _) = probe_with("open-file:{cache}", BTreeSet::new()).await;
    assert!(
        matches!(&outcome, Outcome::Reported(t) if t == "ALLOWED"),
        "{outcome:?}"
    );
    let (outcome, _env, _) = probe_with("stray-fds", BTreeSet::new()).await;
    assert!(outcome.blocked(), "{outcome:?}");
}

#[tokio::test]
async fn without_the_sandbox_the_same_probes_succeed() {
    // The control: the probes are real attempts, and what stops them above
    // is the sandbox, nothing else.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    for name in [
        "open-passwd".to_owned(),
        format!("connect-loopback:{port}"),
        "inet-socket".to_owned(),
        "raise-nofile".to_owned(),
    ] {
        match probe_with(&name, BTreeSet::new()).await.0 {
            Outcome::Reported(text) => assert_eq!(text, "ALLOWED", "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn seccomp_kills_on_the_first_forbidden_syscall() {
    for name in ["inet-socket", "fork", "execve", "raise-nofile", "send-fd"] {
        match probe(name).await {
            Outcome::Killed(cause) => assert!(cause.contains("SIGSYS"), "{name}: {cause}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    // Files are answered with an error instead (the runtime probes a few
    // on its own); there is nothing to find anyway.
    match probe("open-passwd").await {
        Outcome::Reported(text) => assert_eq!(text, "blocked: Permission denied"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn with_any_one_layer_off_the_others_still_keep_files_and_network_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    for off in Layer::ALL {
        let enabled: BTreeSet<Layer> = Layer::ALL.into_iter().filter(|l| *l != off).collect();
        for name in [
            "open-file:{kv}".to_owned(),
            "open-passwd".to_owned(),
            format!("connect-loopback:{port}"),
        ] {
            let (outcome, _env, _) = probe_with(&name, enabled.clone()).await;
            assert!(outcome.blocked(), "without {off}, {name}: {outcome:?}");
        }
    }
}

#[tokio::test]
async fn the_worker_reports_every_layer_and_the_supervisor_agrees() {
    let env = Env::new();
    env.add("echo-tool", "echo-tool", &echo_manifest());
    let mut config = env.config();
    config.ephemeral_kv = true;
    // Every layer required: this machine offers them all.
    config.sandbox.required = Layer::ALL.into();
    let sup = Supervisor::start(config).await.expect("start");
    assert_eq!(sup.running(), 1, "{:?}", sup.failures());
    let pid = sup.plugins()[0].pid.unwrap();
    // The operator sees every layer applied.
    let reported = sup.plugins()[0].sandbox.clone();
    for layer in Layer::ALL {
        assert!(
            reported.contains(&(layer.as_str().to_owned(), LayerState::Applied)),
            "{layer}: {reported:?}"
        );
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim_start_matches(':').trim().to_owned())
            .unwrap()
    };
    assert_eq!(field("Seccomp"), "2");
    assert_eq!(field("NoNewPrivs"), "1");
    assert_eq!(field("CapEff"), "0000000000000000");
    assert_eq!(field("CapBnd"), "0000000000000000");
    for ns in ["user", "pid", "net", "ipc", "mnt"] {
        assert_ne!(
            std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap(),
            std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap(),
            "{ns}"
        );
    }
    // Its own cgroup, with the memory and task limits of the policy, named
    // for the process the supervisor started: the plugin runs in that
    // process's one child, process 1 of its PID namespace.
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let launcher = common::parent_of(pid).expect("the started process");
    let leaf = format!("/echo-tool-{launcher}");
    assert!(
        cgroups.contains(&format!("/prx-{}-", std::process::id())) && cgroups.contains(&leaf),
        "{cgroups}"
    );
    let dirs: Vec<std::path::PathBuf> = cgroups
        .lines()
        .filter(|l| l.ends_with(&leaf))
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controller, path) = (parts.next()?, parts.next()?, parts.next()?);
            let mount = match controller {
                "" => "/sys/fs/cgroup".to_owned(),
                c => format!("/sys/fs/cgroup/{c}"),
            };
            Some(std::path::PathBuf::from(mount).join(path.trim_start_matches('/')))
        })
        .collect();
    assert!(!dirs.is_empty());
    let expected =
        prx_supervisor::worker_handle::verify::SandboxPolicy::default().memory_limit(16 << 20);
    let limit = dirs
        .iter()
        .find_map(|d| {
            ["memory.max", "memory.limit_in_bytes"]
                .iter()
                .find_map(|f| std::fs::read_to_string(d.join(f)).ok())
        })
        .unwrap();
    assert_eq!(limit.trim(), expected.to_string());
    assert_eq!(
        sup.call_tool("echo", r#"{"text":"still works"}"#)
            .await
            .unwrap(),
        "still works"
    );
    sup.shutdown().await;
    // Gone with the worker.
    for dir in dirs {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}

#[tokio::test]
async fn the_cgroup_limit_counts_the_runtime_not_only_linear_memory() {
    let env = Env::new();
    env.add("echo-tool", "echo-tool", &echo_manifest());
    let mut config = env.config();
    config.ephemeral_kv = true;
    // Room for the plugin's linear memory (8 x 2 MiB) but nothing for the
    // runtime compiling it (a long function): the cgroup counts the
    // compiler's memory too.
    std::fs::write(
        env.plugins().join("echo-tool/plugin.toml"),
        tool_manifest("echo-tool", "echo", "[resources]\nmax_memory_mb = 2\n"),
    )
    .unwrap();
    std::fs::write(
        env.plugins().join("echo-tool/plugin.wasm"),
        slow_to_compile(100_000),
    )
    .unwrap();
    config.sandbox.memory_base = 0;
    config.sandbox.required.insert(Layer::Cgroup);
    config.cache_dir = Some(env.state().join("fresh-cache"));
    let sup = Supervisor::start(config).await.expect("start");
    assert_eq!(sup.running(), 0);
    let failure = &sup.failures()[0].error;
    assert!(
        failure.contains("signal SIGKILL (out of memory: over its cgroup's memory limit)"),
        "{failure}"
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn a_required_layer_the_host_lacks_refuses_the_plugin_with_the_fix() {
    let env = Env::new();
    env.add("echo-tool", "echo-tool", &echo_manifest());
    let mut config = env.config();
    config.ephemeral_kv = true;
    // Landlock turned off here stands for a kernel without it.
    config.sandbox.enabled.remove(&Layer::Landlock);
    config.sandbox.required.insert(Layer::Landlock);
    let sup = Supervisor::start(config).await.expect("start");
    assert_eq!(sup.running(), 0);
    let failure = &sup.failures()[0];
    assert!(
        failure
            .error
            .contains("sandbox layer `landlock` is required but could not be applied")
            && failure.error.contains("[sandbox] required"),
        "{}",
        failure.error
    );
    sup.shutdown().await;
}

/// A process of the uid a sandboxed worker runs as (`nobody` when the
/// tests run as root, whom the worker drops to), for a worker to attack.
fn victim() -> Victim {
    use std::os::unix::process::CommandExt;
    let mut command = std::process::Command::new("sleep");
    command
        .arg("600")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if nix::unistd::Uid::effective().is_root() {
        command.uid(65534).gid(65534);
    }
    Victim(command.spawn().expect("sleep"))
}

/// Killed when the test ends, whatever happened.
struct Victim(std::process::Child);

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn sigio_cannot_carry_a_sigkill_out_of_a_worker() {
    // socketpair, F_SETOWN(victim), F_SETSIG(SIGKILL), O_ASYNC, write: the
    // kernel itself sends the signal. Landlock's signal scope (Linux 6.12
    // and later) stops it too; it is off here, to show the layers that
    // hold on every kernel.
    let layers = |off: &[Layer]| -> BTreeSet<Layer> {
        Layer::ALL
            .into_iter()
            .filter(|l| !off.contains(l))
            .collect()
    };
    for (off, what) in [
        (&[Layer::Landlock][..], "seccomp refuses F_SETOWN"),
        (
            &[Layer::Landlock, Layer::Seccomp][..],
            "the PID namespace leaves it no number to name",
        ),
    ] {
        let mut target = victim();
        let (outcome, _env, _) =
            probe_with(&format!("sigio-kill:{}", target.0.id()), layers(off)).await;
        assert!(outcome.blocked(), "{what}: {outcome:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(
            target.0.try_wait().expect("wait").is_none(),
            "{what}: the victim was killed"
        );
    }
    // The control: with none of the three, the probe kills the victim; the
    // attack is real.
    let mut target = victim();
    let (outcome, _env, _) = probe_with(
        &format!("sigio-kill:{}", target.0.id()),
        layers(&[Layer::Landlock, Layer::Seccomp, Layer::Namespaces]),
    )
    .await;
    assert!(
        matches!(&outcome, Outcome::Reported(t) if t == "ALLOWED"),
        "{outcome:?}"
    );
    let status = target.0.wait().expect("wait");
    assert!(!status.success(), "{status:?}");
}

/// Serves one GET: while the worker's start-up code waits for it, reads
/// the status of the process whose CPU limit is `cpu_seconds` (the one
/// worker of this test) and answers with what it found.
fn watch_start(cpu_seconds: u64) -> (u16, std::sync::mpsc::Receiver<String>) {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let port = listener.local_addr().expect("its address").port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            let mut seen = Vec::new();
            for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                let dir = entry.path();
                let limits = std::fs::read_to_string(dir.join("limits")).unwrap_or_default();
                let ours = limits.lines().any(|l| {
                    l.starts_with("Max cpu time")
                        && l.split_whitespace().nth(3) == Some(&cpu_seconds.to_string())
                });
                if ours {
                    let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
                    seen.extend(
                        status
                            .lines()
                            .filter(|l| l.starts_with("Seccomp") || l.starts_with("NoNewPrivs"))
                            .map(str::to_owned),
                    );
                }
            }
            let _ = tx.send(seen.join("; "));
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    (port, rx)
}

#[tokio::test]
async fn start_up_code_runs_with_every_layer_already_in_place() {
    // The guest's static constructor makes a host call (an HTTP GET)
    // while the component is instantiated; during that call the process
    // running it must already show its seccomp filters.
    const CPU_SECONDS: u64 = 7_777;
    let (port, seen) = watch_start(CPU_SECONDS);
    let env = Env::new();
    env.add(
        "start-call",
        "start-call",
        &tool_manifest(
            "start-call",
            "started",
            &format!(
                "[permissions]\nrequired = [\"http-outbound\"]\nhttp_allowlist = [\"http://127.0.0.1:{port}/\"]\n\n[config]\nstart_url = \"http://127.0.0.1:{port}/start\"\n"
            ),
        ),
    );
    let mut config = env.config();
    config.http.allowed_ranges = vec!["127.0.0.0/8".parse().expect("a range")];
    config.sandbox.cpu_seconds = CPU_SECONDS;
    config.ephemeral_kv = true;
    let sup = Supervisor::start(config).await.expect("start");
    assert_eq!(sup.running(), 1, "{:?}", sup.failures());
    assert_eq!(sup.call_tool("started", "{}").await.unwrap(), "started");
    let status = seen
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the start-up code's request");
    assert!(
        status.contains("Seccomp:\t2") && status.contains("NoNewPrivs:\t1"),
        "{status}"
    );
    let filters: u32 = status
        .split("; ")
        .find_map(|l| l.strip_prefix("Seccomp_filters:"))
        .map(|n| n.trim().parse().expect("a count"))
        .expect("Seccomp_filters shown");
    assert!(filters >= 3, "{status}");
    sup.shutdown().await;
}

#[test]
fn a_process_left_in_a_workers_cgroup_is_killed_when_the_worker_ends() {
    // The process that ran a plugin is the child of the one the supervisor
    // started; should it outlive its parent (its parent-death signal lost
    // in a race), the end of the worker's cgroup kills it.
    use std::os::unix::process::ExitStatusExt;
    let cgroups = prx_supervisor::worker_handle::cgroup::Cgroups::detect(&format!(
        "prx-test-left-{}",
        std::process::id()
    ));
    let mut left = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .expect("sleep");
    let cgroup = cgroups
        .place("left-behind", left.id(), 1 << 30, 64)
        .expect("a cgroup (the sandbox tests need them on this machine)");
    drop(cgroup);
    let status = left.wait().expect("wait");
    assert_eq!(status.signal(), Some(9), "{status:?}");
    cgroups.remove();
}
