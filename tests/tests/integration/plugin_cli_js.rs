//! `prx-plugin` for JavaScript and TypeScript, the real binary: every
//! template in both languages passes its own tests (node --test against
//! the SDK's fake host), and a new TypeScript tool goes new -> build ->
//! validate -> test (a call in a real supervisor) -> pack -> install into
//! a running `prx up` -> `prx call`.

use crate::common;
use crate::plugin_cli::{CAPABILITIES, both, install_and_ask, prx_plugin};

use common::*;

#[test]
fn javascript_and_typescript_templates_pass_their_tests_and_a_typescript_tool_goes_from_new_to_prx_call()
 {
    let work = tempfile::tempdir().expect("temp dir");
    for lang in ["typescript", "javascript"] {
        for capability in CAPABILITIES {
            let name = format!("{lang}-{capability}");
            let out = prx_plugin(
                work.path(),
                &["new", &name, "--lang", lang, "--capability", capability],
            );
            assert!(out.status.success(), "new {name}: {}", both(&out));
            let out = prx_plugin(&work.path().join(&name), &["test", "--no-smoke"]);
            assert!(out.status.success(), "test {name}: {}", both(&out));
            let text = stdout(&out);
            assert!(
                text.contains("# pass 1") && text.contains("# fail 0"),
                "{name}: {}",
                both(&out)
            );
        }
    }

    // The TypeScript tool, all the way.
    let project = work.path().join("typescript-tool");
    for args in [
        &["build", "--release"][..],
        &["validate"],
        &["test", "--no-unit"],
        &["pack"],
    ] {
        let out = prx_plugin(&project, args);
        assert!(out.status.success(), "{args:?}: {}", both(&out));
    }
    // A build with nothing changed does nothing.
    let again = prx_plugin(&project, &["build"]);
    assert!(
        stdout(&again).contains("typescript-tool: up to date"),
        "{}",
        both(&again)
    );
    let env = Env::new();
    let daemon = Daemon::start(&env);
    let answer = install_and_ask(
        &env,
        &daemon,
        &project.join("typescript-tool-0.1.0.prxplugin"),
        &["call", "typescript-tool", r#"{"name":"ops"}"#],
    );
    assert_eq!(answer.trim(), "Hello, ops! (greeting 1)");
    let bad = daemon.cli(&["call", "typescript-tool", r#"{"name":7}"#]);
    assert_eq!(
        stderr(&bad).trim(),
        "prx: tool `typescript-tool` of plugin `typescript-tool` failed: TypeError: name must be a string"
    );
}
