//! kv through real workers: namespaces, quota, durability across a
//! SIGKILL of the supervisor, and permissions decided by the supervisor.

use crate::common;

use std::collections::BTreeSet;

use common::{Daemon, Env, op, stderr, stdout, tool_manifest};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use prx_supervisor::manifest::Permission;
use serde_json::{Value, json};

fn kv_manifest(plugin: &str, tool: &str, extra: &str) -> String {
    tool_manifest(
        plugin,
        tool,
        &format!("[permissions]\nrequired = [\"kv\"]\n{extra}"),
    )
}

#[tokio::test]
async fn two_plugins_with_the_same_keys_never_see_each_other() {
    let env = Env::new();
    env.add("one", "kv-tool", &kv_manifest("one", "kv1", ""));
    env.add("two", "kv-tool", &kv_manifest("two", "kv2", ""));
    let mut config = env.config();
    config.ephemeral_kv = true;
    let sup = prx_supervisor::Supervisor::start(config).await.unwrap();

    let long = "k".repeat(1024);
    let keys = [
        "",
        "shared",
        "two:shared",
        "../two/shared",
        "a\u{0}b",
        "two\u{0}shared",
        long.as_str(),
    ];
    for key in keys {
        assert_eq!(
            op(
                &sup,
                "kv1",
                json!({"op":"set","key":key,"value":"from one"})
            )
            .await,
            json!({"ok": null})
        );
        assert_eq!(
            op(
                &sup,
                "kv2",
                json!({"op":"set","key":key,"value":"from two"})
            )
            .await,
            json!({"ok": null})
        );
    }
    for key in keys {
        assert_eq!(
            op(&sup, "kv1", json!({"op":"get","key":key})).await["ok"],
            "from one",
            "{key:?}"
        );
        assert_eq!(
            op(&sup, "kv2", json!({"op":"get","key":key})).await["ok"],
            "from two",
            "{key:?}"
        );
    }
    // Too long is refused, not truncated into another key.
    let longer = "k".repeat(1025);
    let err = op(&sup, "kv1", json!({"op":"set","key":longer,"value":"x"})).await;
    assert!(
        err["err"]
            .as_str()
            .unwrap()
            .contains("longer than the 1024-byte maximum"),
        "{err}"
    );
    let listed = op(&sup, "kv2", json!({"op":"list","key":""})).await;
    assert_eq!(listed["ok"].as_array().unwrap().len(), keys.len());
    assert_eq!(
        sup.kv_get("two", "../two/shared").unwrap().as_deref(),
        Some(&b"from two"[..])
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn a_write_past_the_quota_fails_clearly_and_keeps_the_earlier_data() {
    let env = Env::new();
    env.add(
        "q",
        "kv-tool",
        &kv_manifest("q", "kv", "\n[resources]\nmax_kv_storage_kb = 1\n"),
    );
    let mut config = env.config();
    config.ephemeral_kv = true;
    let sup = prx_supervisor::Supervisor::start(config).await.unwrap();

    assert_eq!(
        op(&sup, "kv", json!({"op":"set","key":"a","size":600})).await,
        json!({"ok": null})
    );
    let err = op(&sup, "kv", json!({"op":"set","key":"b","size":600})).await;
    assert_eq!(
        err["err"],
        "kv.set: over quota: 601 bytes needed, 601 of 1024 in use (max_kv_storage_kb); nothing was written"
    );
    assert_eq!(
        op(&sup, "kv", json!({"op":"get","key":"b"})).await["ok"],
        Value::Null
    );
    assert_eq!(
        op(&sup, "kv", json!({"op":"get","key":"a"})).await["ok"]
            .as_str()
            .unwrap()
            .len(),
        600
    );
    // Freeing space makes room again.
    assert_eq!(
        op(&sup, "kv", json!({"op":"delete","key":"a"})).await["ok"],
        true
    );
    assert_eq!(
        op(&sup, "kv", json!({"op":"set","key":"b","size":600})).await,
        json!({"ok": null})
    );
    sup.shutdown().await;
}

#[test]
fn acknowledged_writes_survive_a_sigkill_of_the_supervisor() {
    let env = Env::new();
    env.add("kv-tool", "kv-tool", &kv_manifest("kv-tool", "kv", ""));
    let mut daemon = Daemon::start(&env);
    for i in 0..50 {
        let out = daemon.cli(&[
            "call",
            "kv",
            &json!({"op":"increment","key":"n"}).to_string(),
        ]);
        assert_eq!(
            stdout(&out).trim(),
            json!({"ok": i + 1}).to_string(),
            "{}",
            stderr(&out)
        );
    }
    let out = daemon.cli(&[
        "call",
        "kv",
        &json!({"op":"set","key":"last","value":"kept"}).to_string(),
    ]);
    assert!(out.status.success());
    kill(Pid::from_raw(daemon.pid() as i32), Signal::SIGKILL).unwrap();
    let _ = daemon.child.wait();

    let daemon = Daemon::start(&env);
    let n = daemon.cli(&["call", "kv", &json!({"op":"get","key":"n"}).to_string()]);
    assert_eq!(stdout(&n).trim(), json!({"ok": "50"}).to_string());
    let listed = stdout(&daemon.cli(&["kv", "list", "kv-tool"]));
    assert_eq!(listed, "last\nn\n");
    assert_eq!(
        stdout(&daemon.cli(&["kv", "get", "kv-tool", "last"])),
        "kept\n"
    );
}

#[tokio::test]
async fn permissions_are_decided_by_the_supervisor() {
    let env = Env::new();
    // Declared optional, refused by policy: calls fail, the plugin runs.
    env.add(
        "optional",
        "kv-tool",
        &tool_manifest("optional", "opt", "[permissions]\noptional = [\"kv\"]\n"),
    );
    // Not declared at all: calls trap, as in PRX 0.1.0.
    env.add(
        "undeclared",
        "kv-tool",
        &tool_manifest("undeclared", "undeclared", ""),
    );
    // Required, refused by policy: not loaded, and says why.
    env.add("required", "kv-tool", &kv_manifest("required", "req", ""));
    let mut config = env.config();
    config.ephemeral_kv = true;
    config.permissions.default = Some(BTreeSet::from([Permission::Events]));
    let sup = prx_supervisor::Supervisor::start(config).await.unwrap();

    let denied = op(&sup, "opt", json!({"op":"set","key":"k","value":"v"})).await;
    assert_eq!(denied["err"], "permission denied: kv");
    assert_eq!(
        op(&sup, "opt", json!({"op":"increment","key":"k"})).await["err"],
        "permission denied: kv"
    );

    let err = sup
        .call_tool("undeclared", &json!({"op":"set","key":"k"}).to_string())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("permission denied: kv (not declared in [permissions])"),
        "{text}"
    );

    let failures = sup.failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(
        failures[0].error.contains(
            "plugin `required` requires permission `kv`, which the operator's policy does not allow"
        ),
        "{}",
        failures[0].error
    );
    // The policy can allow it for one plugin by name.
    sup.shutdown().await;
    let mut config = env.config();
    config.ephemeral_kv = true;
    config.permissions.default = Some(BTreeSet::new());
    config
        .permissions
        .plugins
        .insert("required".into(), BTreeSet::from([Permission::Kv]));
    let sup = prx_supervisor::Supervisor::start(config).await.unwrap();
    assert_eq!(
        op(&sup, "req", json!({"op":"increment","key":"k"})).await["ok"],
        1
    );
    assert_eq!(
        op(&sup, "opt", json!({"op":"increment","key":"k"})).await["err"],
        "permission denied: kv"
    );
    sup.shutdown().await;
}
