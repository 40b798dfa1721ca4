//! Snapshot tests over `tests/manifests/{good,bad}`: every good manifest
//! parses; every bad one fails with exactly the message in its `.expected`
//! file. Run with `UPDATE_SNAPSHOTS=1` to rewrite the `.expected` files
//! after a deliberate change to a message, then review the diff.

use std::path::{Path, PathBuf};

use super::*;

fn dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/manifests")
        .join(kind)
}

fn manifests(kind: &str) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir(kind))
        .expect("manifest folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in {kind}");
    files
}

#[test]
fn good_manifests_parse() {
    for path in manifests("good") {
        let text = std::fs::read_to_string(&path).expect("read");
        let name = path.file_name().expect("name");
        if let Err(e) = Manifest::parse(Path::new(name), &text) {
            panic!("{e}");
        }
    }
}

#[test]
fn bad_manifests_fail_with_their_snapshot_message() {
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some();
    let mut mismatches = Vec::new();
    for path in manifests("bad") {
        let text = std::fs::read_to_string(&path).expect("read");
        let name = path.file_name().expect("name");
        let message = match Manifest::parse(Path::new(name), &text) {
            Ok(_) => panic!("{} parsed but should not", path.display()),
            Err(e) => format!("{e}\n"),
        };
        let expected_path = path.with_extension("expected");
        if update {
            std::fs::write(&expected_path, &message).expect("write snapshot");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != message {
            mismatches.push(format!(
                "{}:\n  expected: {}  actual:   {}",
                path.display(),
                expected,
                message
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn defaults_are_the_prx_contract() {
    let text = std::fs::read_to_string(dir("good").join("minimal-defaults.toml")).expect("read");
    let m = Manifest::parse(Path::new("m.toml"), &text).expect("parse");
    assert_eq!(m.resources.max_fuel, 100_000_000);
    assert_eq!(m.resources.max_memory_mb, 16);
    assert_eq!(m.resources.max_execution_time_ms, 5_000);
    assert_eq!(m.resources.max_http_requests, 10);
    assert_eq!(m.resources.max_kv_storage_kb, 1_024);
    let patterns: Vec<_> = m.capabilities[0]
        .events
        .iter()
        .map(|e| e.pattern())
        .collect();
    assert_eq!(patterns, ["tool.*", "*"]);
}

#[test]
fn names_that_could_escape_are_refused() {
    for name in [
        "", "../x", "a/b", "A", "a--b", "-a", "a-", "a b", "a\0b", "a.b",
    ] {
        assert!(check_name("[plugin].name", name).is_err(), "{name:?}");
    }
    for name in ["a", "echo-tool", "x9", "a-1-b"] {
        assert!(check_name("[plugin].name", name).is_ok(), "{name:?}");
    }
}

const TOOL: &str = "[plugin]\nname = \"big\"\nversion = \"1.0.0\"\nwasm = \"plugin.wasm\"\n\n[[capabilities]]\ntype = \"tool\"\nname = \"t\"\n";

/// Finding 10 (b): `max_kv_storage_kb` had no upper bound, and the quota
/// in bytes (`* 1024`) overflowed: a panic in a debug build, a wrapped
/// (possibly tiny or zero) quota in a release one.
#[test]
fn a_kv_quota_that_would_overflow_is_refused_with_the_key_and_the_bound() {
    let with_kv = |kb: &str| format!("{TOOL}\n[resources]\nmax_kv_storage_kb = {kb}\n");
    // The largest integer TOML can write: refused by validation, by name.
    let err = Manifest::parse(Path::new("m.toml"), &with_kv(&i64::MAX.to_string()))
        .expect_err("i64::MAX KiB was accepted");
    assert_eq!(
        err.message,
        format!(
            "[resources].max_kv_storage_kb = {} is above 1073741824 (1 TiB, the most a plugin may ask for); ask for less",
            i64::MAX
        )
    );
    // u64::MAX is past what TOML can write: the parser refuses it, on its line.
    let err = Manifest::parse(Path::new("m.toml"), &with_kv(&u64::MAX.to_string()))
        .expect_err("u64::MAX KiB was accepted");
    assert!(err.message.starts_with("line 11:"), "{}", err.message);
    // However it got there (serde from elsewhere, the library), validation
    // refuses u64::MAX too.
    let mut m = Manifest::parse(Path::new("m.toml"), TOOL).expect("parse");
    m.resources.max_kv_storage_kb = u64::MAX;
    let err = m.validate().expect_err("u64::MAX KiB passed validation");
    assert!(
        err.contains("[resources].max_kv_storage_kb = 18446744073709551615")
            && err.contains("above 1073741824 (1 TiB"),
        "{err}"
    );
    // The bound itself is accepted; one more is not.
    let bound = MAX_KV_STORAGE_KB_CEILING.to_string();
    let m = Manifest::parse(Path::new("m.toml"), &with_kv(&bound)).expect("the bound");
    assert_eq!(m.resources.kv_quota_bytes(), 1 << 40);
    let over = (MAX_KV_STORAGE_KB_CEILING + 1).to_string();
    assert!(Manifest::parse(Path::new("m.toml"), &with_kv(&over)).is_err());
}

#[test]
fn the_kv_quota_in_bytes_never_wraps() {
    let quota = |kb| {
        Resources {
            max_kv_storage_kb: kb,
            ..Resources::default()
        }
        .kv_quota_bytes()
    };
    assert_eq!(quota(0), 0);
    assert_eq!(quota(DEFAULT_MAX_KV_STORAGE_KB), 1 << 20);
    assert_eq!(quota(MAX_KV_STORAGE_KB_CEILING), 1 << 40);
    // 2^54 KiB is 2^64 bytes: `* 1024` wrapped it to 0 (no quota at all
    // would have been the opposite mistake); it saturates instead.
    assert_eq!(quota(1 << 54), u64::MAX);
    assert_eq!(quota((1 << 54) + 1), u64::MAX);
    assert_eq!(quota(u64::MAX), u64::MAX);
}

#[test]
fn prx_python_short_form_folds_into_the_guide_form() {
    let text = std::fs::read_to_string(dir("good").join("prx-python-short-form.toml")).unwrap();
    let m = Manifest::parse(Path::new("plugin.toml"), &text).unwrap();
    assert_eq!(m.plugin.wasm, "plugin.wasm");
    assert_eq!(m.capabilities.len(), 1);
    let tool = &m.capabilities[0];
    // A tool of the short form is routed by its get-spec name.
    assert_eq!(
        (tool.kind, tool.name.as_deref()),
        (CapabilityType::Tool, None)
    );
    assert_eq!(tool.description.as_deref(), Some("Formats JSON"));
    assert_eq!(m.permissions.http_allowlist, ["https://api.example.com/"]);

    let hook = Manifest::parse(
        Path::new("plugin.toml"),
        "[plugin]\nname = \"logger\"\nversion = \"0.1.0\"\ncapability = \"hook\"\n",
    )
    .unwrap();
    // PRX's Python hooks filter their events in the plugin: every event.
    assert_eq!(
        hook.capabilities[0].events,
        [EventPattern::Bare("*".into())]
    );
    let storage = Manifest::parse(
        Path::new("plugin.toml"),
        "[plugin]\nname = \"notes\"\nversion = \"0.1.0\"\ncapability = \"storage\"\n",
    )
    .unwrap();
    assert_eq!(storage.capabilities[0].name.as_deref(), Some("notes"));
    // The guide's form still needs a tool's name.
    let nameless = Manifest::parse(
        Path::new("plugin.toml"),
        "[plugin]\nname = \"x\"\nversion = \"0.1.0\"\n\n[[capabilities]]\ntype = \"tool\"\n",
    );
    assert!(nameless.unwrap_err().to_string().contains("needs a `name`"));
}
