//! What a name in a manifest may be: a plugin's (it becomes a directory,
//! a kv namespace, a log field), a capability's, an event pattern, the
//! component's path inside the plugin's directory.

use std::path::{Component, Path};

use super::MAX_NAME_LEN;

/// Plugin names are kebab-case: they become directory names, KV namespaces
/// and log fields, so nothing that could escape any of those is allowed.
pub fn check_name(key: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.split('-').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{key} = {name:?} is not a kebab-case name (lowercase letters, digits and single dashes, at most {MAX_NAME_LEN} characters), e.g. \"my-plugin\""
        ))
    }
}

/// Capability names (a tool's name as the LLM sees it) allow snake_case and
/// kebab-case: letters, digits, `_` and `-`, starting with a letter.
pub fn check_capability_name(at: &str, name: &str) -> Result<(), String> {
    let mut bytes = name.bytes();
    let ok = name.len() <= MAX_NAME_LEN
        && bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{at} name = {name:?} must start with a letter and use only letters, digits, `_` and `-` (at most {MAX_NAME_LEN})"
        ))
    }
}

/// The bus's own parser decides, so a manifest accepts exactly the
/// patterns a hook can subscribe.
pub(super) fn check_pattern(at: &str, pattern: &str) -> Result<(), String> {
    crate::topics::Pattern::parse(pattern)
        .map(|_| ())
        .map_err(|e| format!("{at} event {e}"))
}

/// A path inside the plugin's directory: relative, no `..`, no root.
pub(super) fn check_relative_path(key: &str, path: &str) -> Result<(), String> {
    let p = Path::new(path);
    let escapes = path.is_empty()
        || p.is_absolute()
        || p.components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
    if escapes {
        return Err(format!(
            "{key} = {path:?} must be a relative path inside the plugin's directory (no `..`, no leading `/`), e.g. \"plugin.wasm\""
        ));
    }
    Ok(())
}
