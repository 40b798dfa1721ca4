//! `prx-plugin`, the real binary: every Rust template generates, builds,
//! validates and passes `prx-plugin test` (its own tests, then a call in a
//! real supervisor), every Python template passes its own tests; a new
//! Rust tool goes new -> build -> validate -> pack -> install into a
//! running `prx up` -> `prx call`, and a second version installed the same
//! way is hot-reloaded with its kv state; a new Python module goes the same
//! way to `prx rpc`; `validate` fails clearly on a core module, a missing
//! export and a torn file.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;

/// One cargo target directory for every generated project (across runs
/// too): the PDK and its dependencies are compiled once.
fn template_target() -> PathBuf {
    Path::new(env!("PRX_ROOT")).join("target/template-build")
}

pub(crate) fn prx_plugin(dir: &Path, args: &[&str]) -> Output {
    Command::new(bin("prx-plugin"))
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", template_target())
        .env("PRX_WORKER_BIN", bin("prx-worker"))
        // The outer cargo's settings are for the host test build.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .expect("run prx-plugin")
}

/// Every capability a template exists for.
pub(crate) const CAPABILITIES: [&str; 7] = [
    "tool",
    "hook",
    "middleware",
    "cron",
    "provider",
    "storage",
    "module",
];

pub(crate) fn both(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

#[test]
fn every_template_builds_validates_and_passes_its_own_test() {
    let root = tempfile::tempdir().expect("temp dir");
    for capability in CAPABILITIES {
        let name = format!("my-{capability}");
        let out = prx_plugin(
            root.path(),
            &["new", &name, "--lang", "rust", "--capability", capability],
        );
        assert!(out.status.success(), "new {capability}: {}", both(&out));
        let dir = root.path().join(&name);

        let out = prx_plugin(&dir, &["build", "--release"]);
        assert!(out.status.success(), "build {capability}: {}", both(&out));
        assert!(stdout(&out).contains("\nvalid ("), "{}", both(&out));

        let out = prx_plugin(&dir, &["validate"]);
        assert!(
            out.status.success(),
            "validate {capability}: {}",
            both(&out)
        );

        let out = prx_plugin(&dir, &["test"]);
        assert!(out.status.success(), "test {capability}: {}", both(&out));
        let text = stdout(&out);
        assert!(
            text.contains("test result: ok") || stderr(&out).contains("test result: ok"),
            "{capability}: its own tests did not run: {}",
            both(&out)
        );
        assert!(
            text.contains(&format!("ok      loaded {name} 0.1.0"))
                && text.contains("smoke test passed"),
            "{capability}: {text}"
        );
    }
    // A name that is not a plugin name, an unknown capability, and the
    // Rust PDK for a Python plugin are refused before anything is written.
    for (args, expected) in [
        (&["new", "Bad Name"][..], "the plugin name"),
        (
            &["new", "x", "--capability", "daemon"],
            "unknown capability `daemon`",
        ),
        (
            &["new", "y", "--lang", "python", "--pdk", "."],
            "--pdk is the Rust PDK",
        ),
    ] {
        let out = prx_plugin(root.path(), args);
        assert!(!out.status.success());
        assert!(stderr(&out).contains(expected), "{args:?}: {}", both(&out));
    }
    assert!(!root.path().join("x").exists() && !root.path().join("y").exists());
}

#[test]
fn python_templates_pass_their_tests_and_a_python_module_goes_from_new_to_prx_rpc() {
    let work = tempfile::tempdir().expect("temp dir");
    for capability in CAPABILITIES {
        let name = format!("py-{capability}");
        let out = prx_plugin(
            work.path(),
            &["new", &name, "--lang", "python", "--capability", capability],
        );
        assert!(out.status.success(), "new {capability}: {}", both(&out));
        let out = prx_plugin(&work.path().join(&name), &["test", "--no-smoke"]);
        assert!(out.status.success(), "test {capability}: {}", both(&out));
        assert!(
            stdout(&out).contains("1 passed"),
            "{capability}: {}",
            both(&out)
        );
    }

    // The module, all the way: built with componentize-py, validated,
    // called in a real supervisor by `test`, packed, installed, called.
    let project = work.path().join("py-module");
    for args in [
        &["build"][..],
        &["validate"],
        &["test", "--no-unit"],
        &["pack"],
    ] {
        let out = prx_plugin(&project, args);
        assert!(out.status.success(), "{args:?}: {}", both(&out));
    }
    let env = Env::new();
    let daemon = Daemon::start(&env);
    let answer = install_and_ask(
        &env,
        &daemon,
        &project.join("py-module-0.1.0.prxplugin"),
        &["rpc", "py-module.square", r#"{"x":3}"#],
    );
    assert_eq!(answer.trim(), r#"{"square":9}"#);
    let again = daemon.cli(&["rpc", "py-module.square", r#"{"x":3}"#]);
    assert_eq!(stdout(&again).trim(), r#"{"square":9}"#);
    let modules = stdout(&daemon.cli(&["modules"]));
    assert!(
        modules.contains("calls: 2") && modules.contains("cache_hits: 1"),
        "{modules}"
    );
}

/// Calls `prx call` until the answer is as `check` wants; counts the
/// calls that were answered in `answered`.
fn call_until(
    daemon: &Daemon,
    tool: &str,
    answered: &mut u32,
    check: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = daemon.cli(&["call", tool, r#"{"name":"ops"}"#]);
        let text = stdout(&out);
        if out.status.success() {
            *answered += 1;
            if check(text.trim()) {
                return text.trim().to_owned();
            }
        }
        assert!(Instant::now() < deadline, "prx call {tool}: {}", both(&out));
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_new_tool_goes_from_new_to_a_running_supervisor_and_is_upgraded_in_place() {
    let env = Env::new();
    let work = tempfile::tempdir().expect("temp dir");
    let out = prx_plugin(work.path(), &["new", "greeter"]);
    assert!(out.status.success(), "{}", both(&out));
    let project = work.path().join("greeter");
    for args in [&["build", "--release"][..], &["validate"], &["pack"]] {
        let out = prx_plugin(&project, args);
        assert!(out.status.success(), "{args:?}: {}", both(&out));
    }
    let archive = project.join("greeter-0.1.0.prxplugin");
    let first = std::fs::read(&archive).expect("archive");
    let out = prx_plugin(&project, &["pack"]);
    assert!(out.status.success());
    assert_eq!(
        std::fs::read(&archive).expect("archive"),
        first,
        "pack is not reproducible"
    );

    let daemon = Daemon::start(&env);
    let plugins = env.plugins();
    let install = |archive: &Path| {
        prx_plugin(
            work.path(),
            &[
                "install",
                archive.to_str().expect("utf-8"),
                "--plugins",
                plugins.to_str().expect("utf-8"),
                "--state",
                env.state().to_str().expect("utf-8"),
            ],
        )
    };
    let out = install(&archive);
    assert!(out.status.success(), "{}", both(&out));
    // The running supervisor compiled it before it was put in place.
    assert!(
        stdout(&out)
            .contains("the running supervisor compiled greeter 0.1.0 and checked that it starts"),
        "{}",
        both(&out)
    );
    assert!(
        stdout(&out).contains("installed greeter 0.1.0"),
        "{}",
        both(&out)
    );
    let installed = plugins.join("greeter");
    let sums = std::fs::read_to_string(installed.join("checksums.sha256")).expect("checksums");
    assert!(
        sums.contains("  plugin.wasm") && sums.contains("  plugin.toml"),
        "{sums}"
    );
    let mut answered = 0;
    assert_eq!(
        call_until(&daemon, "greeter", &mut answered, |t| !t.is_empty()),
        "Hello, ops! (greeting 1)"
    );

    // Version 2: another greeting, packed and installed over the first.
    let source = project.join("src/lib.rs");
    let code = std::fs::read_to_string(&source).expect("source");
    std::fs::write(
        &source,
        code.replace("\"Hello, {name}!", "\"Hi again, {name}!"),
    )
    .expect("edit");
    let manifest = std::fs::read_to_string(project.join("plugin.toml")).expect("manifest");
    std::fs::write(
        project.join("plugin.toml"),
        manifest.replace("version = \"0.1.0\"", "version = \"0.2.0\""),
    )
    .expect("bump");
    for args in [&["build", "--release"][..], &["pack"]] {
        let out = prx_plugin(&project, args);
        assert!(out.status.success(), "{args:?}: {}", both(&out));
    }
    let out = install(&project.join("greeter-0.2.0.prxplugin"));
    assert!(out.status.success(), "{}", both(&out));
    assert!(
        stdout(&out).contains("replaced greeter 0.2.0"),
        "{}",
        both(&out)
    );
    // The kv counter carries over to the new version: every answered
    // call, by either version, was counted once.
    let answer = call_until(&daemon, "greeter", &mut answered, |t| {
        t.starts_with("Hi again")
    });
    assert_eq!(answer, format!("Hi again, ops! (greeting {answered})"));
    let out = daemon.cli(&["plugins"]);
    assert!(stdout(&out).contains("0.2.0"), "{}", both(&out));
    // Nothing is left of the staging directories.
    let names: Vec<String> = std::fs::read_dir(&plugins)
        .expect("plugins dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["greeter"]);

    // An altered archive is refused and the running version is untouched.
    let mut altered = std::fs::read(project.join("greeter-0.2.0.prxplugin")).expect("archive");
    let middle = altered.len() / 2;
    altered[middle] ^= 0xff;
    let bad = work.path().join("bad.prxplugin");
    std::fs::write(&bad, altered).expect("write");
    let out = install(&bad);
    assert!(!out.status.success(), "{}", both(&out));
    let answer = call_until(&daemon, "greeter", &mut answered, |t| {
        t.starts_with("Hi again")
    });
    assert_eq!(answer, format!("Hi again, ops! (greeting {answered})"));

    // A valid component whose start-up code never ends: the supervisor's
    // compile check fails, so it is not installed at all.
    let looping = work.path().join("looping");
    std::fs::create_dir_all(&looping).expect("dir");
    std::fs::write(
        looping.join("plugin.toml"),
        tool_manifest(
            "looping",
            "looping",
            "[resources]\nmax_execution_time_ms = 300\n",
        ),
    )
    .expect("manifest");
    std::fs::copy(guest("start-loop"), looping.join("plugin.wasm")).expect("wasm");
    let out = prx_plugin(&looping, &["pack"]);
    assert!(out.status.success(), "{}", both(&out));
    let out = install(&looping.join("looping-0.1.0.prxplugin"));
    assert!(!out.status.success(), "{}", both(&out));
    assert!(
        stderr(&out).contains("not installed: the supervisor could not start the new version"),
        "{}",
        both(&out)
    );
    assert!(!plugins.join("looping").exists());
    let leftovers: Vec<_> = std::fs::read_dir(&plugins)
        .expect("plugins dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        leftovers,
        ["greeter"],
        "a staging directory was left behind"
    );
}

#[test]
fn validate_fails_clearly_on_a_core_module_a_missing_export_and_a_torn_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    std::fs::write(d.join("plugin.toml"), echo_manifest()).expect("manifest");
    std::fs::copy(guest("echo-tool"), d.join("plugin.wasm")).expect("wasm");
    let out = prx_plugin(d, &["validate"]);
    assert!(out.status.success(), "{}", both(&out));

    // A core module.
    std::fs::write(
        d.join("core.wasm"),
        wat::parse_str("(module)").expect("wat"),
    )
    .expect("write");
    let out = prx_plugin(d, &["validate", "core.wasm"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("a core WebAssembly module, not a component"),
        "{}",
        both(&out)
    );

    // A tool component under a hook manifest: the hook export is missing.
    let hook = "[plugin]\nname = \"h\"\nversion = \"0.1.0\"\nwasm = \"plugin.wasm\"\n\n[[capabilities]]\ntype = \"hook\"\nevents = [\"a.*\"]\n";
    std::fs::write(d.join("hook.toml"), hook).expect("manifest");
    let out = prx_plugin(d, &["validate", "--manifest", "hook.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("does not export prx:plugin/hook-exports@0.1.0 (it exports prx:plugin/tool-exports@0.1.0)"),
        "{}",
        both(&out)
    );

    // Half a component.
    let wasm = std::fs::read(guest("echo-tool")).expect("wasm");
    std::fs::write(d.join("torn.wasm"), &wasm[..wasm.len() / 2]).expect("write");
    let out = prx_plugin(d, &["validate", "torn.wasm"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("is not valid WebAssembly"),
        "{}",
        both(&out)
    );
}

/// Installs the archive `file` into `env`'s plugins directory, checked by
/// `daemon`, the supervisor running there; then runs `prx <ask>` until it
/// answers (the plugin loads) and returns the answer.
pub(crate) fn install_and_ask(env: &Env, daemon: &Daemon, file: &Path, ask: &[&str]) -> String {
    let out = prx_plugin(
        env.root.path(),
        &[
            "install",
            file.to_str().expect("utf-8"),
            "--plugins",
            env.plugins().to_str().expect("utf-8"),
            "--state",
            env.state().to_str().expect("utf-8"),
        ],
    );
    assert!(out.status.success(), "{}", both(&out));
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let (plugin, version) = name
        .strip_suffix(".prxplugin")
        .and_then(|n| n.rsplit_once('-'))
        .expect("NAME-VERSION.prxplugin");
    assert!(
        stdout(&out).contains(&format!("installed {plugin} {version}")),
        "{}",
        both(&out)
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let out = daemon.cli(ask);
        if out.status.success() {
            return stdout(&out).trim().to_owned();
        }
        assert!(Instant::now() < deadline, "prx {ask:?}: {}", both(&out));
        std::thread::sleep(Duration::from_millis(50));
    }
}
