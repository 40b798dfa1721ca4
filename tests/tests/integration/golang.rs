//! Go plugins (standard Go, the Go SDK, wit-component and the reactor
//! adapter): the hash-go example in a real worker with every sandbox
//! layer required, through the CLI; and `prx-plugin new --lang go` ->
//! test (go test, then a call in a real supervisor) -> pack -> install
//! into a running `prx up` -> `prx call`.

use crate::common;
use crate::plugin_cli::{both, install_and_ask, prx_plugin};

use common::{Daemon, Env, built_plugin, stderr, stdout};

#[test]
fn the_go_example_hashes_through_the_cli_in_a_full_sandbox() {
    let env = Env::new();
    env.add_built(
        "hash-go",
        &built_plugin("examples/hash-go", "go comes from .venv"),
        None,
    );
    // Every sandbox layer required: a worker without one is refused.
    let config = env.root.path().join("prx.toml");
    std::fs::write(
        &config,
        "[sandbox]\nrequired = [\"namespaces\", \"rlimits\", \"capabilities\", \"no-new-privs\", \"landlock\", \"seccomp\", \"cgroup\"]\n",
    )
    .expect("config");
    let daemon = Daemon::start_with(&env, &["--config", config.to_str().expect("utf-8")]);
    let call = |args: &str| daemon.cli(&["call", "hash", args]);

    let out = call(r#"{"text":"abc"}"#);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        stdout(&call(r#"{"text":"abc","algorithm":"md5"}"#)).trim(),
        "md5:900150983cd24fb0d6963f7d28e17f72"
    );
    let bad = call(r#"{"text":"abc","algorithm":"crc"}"#);
    assert_eq!(
        stderr(&bad).trim(),
        r#"prx: tool `hash` of plugin `hash-go` failed: unknown algorithm "crc": use sha256, sha1 or md5"#
    );
    // Strings through the canonical ABI both ways, large ones too.
    let long = "x".repeat(100_000);
    let out = call(&format!(r#"{{"text":"{long}","algorithm":"sha1"}}"#));
    assert!(stdout(&out).starts_with("sha1:"), "{}", stderr(&out));
    let count = daemon.cli(&["kv", "get", "hash-go", "hashed"]);
    assert_eq!(stdout(&count).trim(), "3");
    let status = stdout(&daemon.cli(&["status"]));
    let line = status
        .lines()
        .find(|l| l.starts_with("hash-go"))
        .expect("listed");
    assert!(
        line.contains("running") && line.split_whitespace().nth(3) == Some("0"),
        "{line}"
    );
}

#[test]
fn a_new_go_tool_goes_from_new_to_prx_call() {
    let work = tempfile::tempdir().expect("temp dir");
    let refused = prx_plugin(
        work.path(),
        &["new", "gohook", "--lang", "go", "--capability", "hook"],
    );
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("a Go plugin here is a tool"),
        "{}",
        both(&refused)
    );
    assert!(!work.path().join("gohook").exists());

    let out = prx_plugin(work.path(), &["new", "gopher", "--lang", "go"]);
    assert!(out.status.success(), "{}", both(&out));
    let project = work.path().join("gopher");
    for args in [&["test"][..], &["validate"], &["pack"]] {
        let out = prx_plugin(&project, args);
        assert!(out.status.success(), "{args:?}: {}", both(&out));
        if args == ["test"] {
            let text = stdout(&out);
            assert!(
                text.contains("--- PASS: TestGreetsAndCounts")
                    && text.contains("tool `gopher` answered: Hello, world! (greeting 1)"),
                "{}",
                both(&out)
            );
        }
    }
    let env = Env::new();
    let daemon = Daemon::start(&env);
    let answer = install_and_ask(
        &env,
        &daemon,
        &project.join("gopher-0.1.0.prxplugin"),
        &["call", "gopher", r#"{"name":"ops"}"#],
    );
    assert_eq!(answer.trim(), "Hello, ops! (greeting 1)");
}
