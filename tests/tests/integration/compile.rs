//! A component that takes too long to compile: the worker compiling it is
//! killed at the load timeout, the plugin is marked failed (not retried
//! in a loop), and the other plugins load and serve as usual.

use crate::common;

use std::time::Duration;

use common::{Env, echo_manifest, slow_to_compile, tool_manifest};
use prx_supervisor::Supervisor;
use prx_supervisor::plugin::StateKind;

#[tokio::test]
async fn a_compile_past_the_load_timeout_fails_the_plugin_once() {
    let env = Env::new();
    env.add("echo-tool", "echo-tool", &echo_manifest());
    let dir = env.plugins().join("slow");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("plugin.toml"), tool_manifest("slow", "slow", "")).unwrap();
    std::fs::write(dir.join("plugin.wasm"), slow_to_compile(400_000)).unwrap();
    let mut config = env.config();
    config.ephemeral_kv = true;
    config.load_timeout = Duration::from_millis(1500);
    config.retry_poll = Duration::from_millis(50);
    // A cache of its own: the slow component must really be compiled.
    config.cache_dir = Some(env.state().join("fresh-cache"));
    let sup = Supervisor::start(config).await.expect("start");

    let slow = sup
        .plugins()
        .into_iter()
        .find(|p| p.name == "slow")
        .unwrap();
    assert_eq!(slow.state, StateKind::Failed, "{slow:?}");
    let error = slow.error.unwrap_or_default();
    assert!(
        error.contains("loading did not finish within 1.5s (compile timeout)"),
        "{error}"
    );
    assert_eq!(slow.pid, None, "the compiling worker was not killed");
    // The others are unaffected.
    assert_eq!(
        sup.call_tool("echo", r#"{"text":"fine"}"#).await.unwrap(),
        "fine"
    );
    // Not retried in a loop: its files did not change, so after many
    // retry polls it is still failed, with no restart.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let slow = sup
        .plugins()
        .into_iter()
        .find(|p| p.name == "slow")
        .unwrap();
    assert_eq!((slow.state, slow.restarts), (StateKind::Failed, 0));
    sup.shutdown().await;
}
