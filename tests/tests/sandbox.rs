//! The worker sandbox under attack: from inside a loaded, fully sandboxed
//! worker, a probe (`prx-worker --test-probe`) tries what an attacker who
//! escaped wasm would try. Each attempt must fail, by an error or by the
//! seccomp filter killing the worker (`SIGSYS`). Then each layer is turned
//! off in turn, and the others must still keep the files and the network
//! out of reach.

mod common;

use std::collections::BTreeSet;
use std::net::TcpListener;

use common::{Env, echo_manifest, slow_to_compile, tool_manifest};
use prx_supervisor::worker::verify::Layer;
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
async fn probe_with(probe: &str, enabled: BTreeSet<Layer>) -> (Outcome, Env, Option<String>) {
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
        assert_eq!(code.as_deref(), Some("cache, mapped"), "{name}");
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
            reported.contains(&(layer.as_str().to_owned(), "applied".to_owned())),
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
    for ns in ["user", "net", "ipc", "mnt"] {
        assert_ne!(
            std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap(),
            std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap(),
            "{ns}"
        );
    }
    // Its own cgroup, with the memory and task limits of the policy.
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let leaf = format!("/echo-tool-{pid}");
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
    let expected = prx_supervisor::worker::verify::SandboxPolicy::default().memory_limit(16 << 20);
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
