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
