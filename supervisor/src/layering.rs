//! The check that the supervisor's modules stay in layers: every
//! `crate::` path in a module's code points to a module in its own layer
//! or a lower one, and no modules import each other in a cycle.
//!
//! The layers are the table in `docs/architecture.md`, so the document a
//! newcomer reads is the one the build holds the code to. Run alone with
//! `cargo test -p prx-supervisor --lib layering`. The same check keeps
//! every source file of the host crates under 600 lines of code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const SRC: &str = env!("CARGO_MANIFEST_DIR");

/// Module name -> layer number, from the architecture document's table.
fn layers(doc: &str) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    let table = doc
        .split_once("## Layers")
        .map(|(_, rest)| rest)
        .expect("docs/architecture.md has a `## Layers` section");
    for line in table.lines().skip_while(|l| !l.starts_with('|')) {
        let Some(row) = line.strip_prefix('|') else {
            break;
        };
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let Ok(layer) = cells[0].parse::<u32>() else {
            continue; // the header and the separator
        };
        for module in cells[1].split(',') {
            let module = module.trim().trim_matches('`');
            let before = out.insert(module.to_owned(), layer);
            assert!(before.is_none(), "{module} is in two layers");
        }
    }
    out
}

/// Code without comments and without the unit tests at the end of a file
/// (`#[cfg(test)]` before `mod tests`, by this crate's habit; any other
/// test-only module is counted as code).
fn code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if is_unit_tests(line, lines.peek().copied()) {
            break;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// True at the `#[cfg(test)]` that opens a file's unit tests: followed by
/// `mod tests` (inline or in a file of its own, maybe through `#[path]`).
fn is_unit_tests(line: &str, next: Option<&str>) -> bool {
    line.starts_with("#[cfg(test)]")
        && next.is_some_and(|next| {
            next.starts_with("mod tests") || next.replace(' ', "").starts_with("#[path=")
        })
}

/// The identifier at the start of `text`.
fn ident(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// Names `code` reaches at the crate's root: the first segment of each
/// path after `crate::`, or after `depth + 1` times `super::` (which is the
/// root too from a file `depth` modules below a top-level one), including
/// each first segment of a `{...}` group.
fn crate_names(code: &str, depth: usize) -> BTreeSet<String> {
    let root_super = "super::".repeat(depth + 1);
    let mut names = BTreeSet::new();
    let starts = code
        .match_indices("crate::")
        .map(|(at, m)| at + m.len())
        .chain(
            code.match_indices(root_super.as_str())
                .filter(|(at, _)| !code[..*at].ends_with("super::"))
                .map(|(at, m)| at + m.len()),
        );
    for start in starts {
        let rest = &code[start..];
        if rest.starts_with("super::") {
            continue; // more `super::` than the root: not Rust
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && !c.is_whitespace() => {
                        names.insert(ident(&group[i..]).to_owned());
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            names.insert(ident(rest).to_owned());
        }
    }
    names.remove("");
    names
}

/// How many modules below its top-level module a file's code sits:
/// `x.rs` and `x/mod.rs` are 0, `x/y.rs` and `x/y/mod.rs` are 1.
fn depth(src: &Path, file: &Path) -> usize {
    let dirs = file
        .strip_prefix(src)
        .map(|p| p.components().count().saturating_sub(1))
        .unwrap_or(0);
    if file.file_name().is_some_and(|n| n == "mod.rs") {
        dirs.saturating_sub(1)
    } else {
        dirs
    }
}

/// The crate's top-level modules, and what `lib.rs` re-exports from each
/// (`crate::Supervisor` is the `supervisor` module's).
fn modules(lib: &str) -> (Vec<String>, BTreeMap<String, String>) {
    let lib = code(lib);
    let mut modules = Vec::new();
    let mut test_only = false;
    for line in lib.lines() {
        let line = line.trim();
        // A module compiled only for tests (this check itself) is no layer.
        if std::mem::replace(&mut test_only, line == "#[cfg(test)]") {
            continue;
        }
        let declared = line
            .strip_prefix("pub mod ")
            .or_else(|| line.strip_prefix("mod "))
            .or_else(|| {
                // `pub(crate) mod x;`, `pub(super) mod x;`, `pub(in ...) mod x;`
                let rest = line.strip_prefix("pub(")?;
                rest.split_once(") mod ").map(|(_, name)| name)
            });
        if let Some(name) = declared.and_then(|rest| rest.strip_suffix(';')) {
            modules.push(name.to_owned());
        }
    }
    let mut reexports = BTreeMap::new();
    for item in lib.split(';') {
        let Some(path) = item.trim().strip_prefix("pub use ") else {
            continue;
        };
        let module = ident(path);
        if !modules.iter().any(|m| m == module) {
            continue;
        }
        let names = path[module.len()..].trim_start_matches("::");
        for name in names.trim_matches(['{', '}']).split(',') {
            let name = name.trim().rsplit("::").next().unwrap_or("").trim();
            if !name.is_empty() {
                reexports.insert(name.to_owned(), module.to_owned());
            }
        }
    }
    (modules, reexports)
}

/// The files of module `name`: `name.rs`, everything under `name/`, and
/// files they include with `#[path]` outside their tests.
fn files(src: &Path, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let file = src.join(format!("{name}.rs"));
    if file.exists() {
        out.push(file);
    }
    let mut dirs = vec![src.join(name)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut included = Vec::new();
    for file in &out {
        let text =
            code(&std::fs::read_to_string(file).expect("read a source file")).replace(' ', "");
        for (at, _) in text.match_indices("#[path=\"") {
            let rest = &text[at + "#[path=\"".len()..];
            let relative = &rest[..rest.find('"').expect("a closing quote")];
            included.push(file.parent().expect("a directory").join(relative));
        }
    }
    out.extend(included);
    out.sort();
    out
}

/// Edges of the module graph: module -> the modules its code names.
fn imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("read lib.rs");
    let (modules, reexports) = modules(&lib);
    let mut graph = BTreeMap::new();
    for module in &modules {
        let mut uses = BTreeSet::new();
        for file in files(src, module) {
            let text = std::fs::read_to_string(&file).expect("read a source file");
            for name in crate_names(&code(&text), depth(src, &file)) {
                let target = if modules.contains(&name) {
                    Some(name)
                } else {
                    reexports.get(&name).cloned()
                };
                if let Some(target) = target.filter(|t| t != module) {
                    uses.insert(target);
                }
            }
        }
        graph.insert(module.clone(), uses);
    }
    graph
}

/// A cycle in `graph`, if there is one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        graph: &BTreeMap<String, BTreeSet<String>>,
        node: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(graph, next, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(graph, node, &mut Vec::new(), &mut done))
}

#[test]
fn every_import_points_down_the_layers_of_docs_architecture_md() {
    let src = Path::new(SRC).join("src");
    let doc = std::fs::read_to_string(Path::new(SRC).join("../docs/architecture.md"))
        .expect("read docs/architecture.md");
    let layers = layers(&doc);
    let graph = imports(&src);
    let mut wrong = Vec::new();
    for module in graph.keys() {
        if !layers.contains_key(module) {
            wrong.push(format!(
                "module `{module}` is in no layer: add it to the table in docs/architecture.md"
            ));
        }
    }
    for module in layers.keys() {
        if !graph.contains_key(module) {
            wrong.push(format!(
                "docs/architecture.md lists `{module}`, which lib.rs does not declare"
            ));
        }
    }
    for (module, uses) in &graph {
        let Some(own) = layers.get(module) else {
            continue;
        };
        for used in uses {
            if let Some(theirs) = layers.get(used).filter(|theirs| *theirs > own) {
                wrong.push(format!(
                    "`{module}` (layer {own}) uses `{used}` (layer {theirs}): imports must point down"
                ));
            }
        }
    }
    if let Some(found) = cycle(&graph) {
        wrong.push(format!("modules import each other: {}", found.join(" -> ")));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Longest a source file's code may be (its unit tests not counted): what
/// a reader can hold in mind.
const MAX_CODE_LINES: usize = 600;

#[test]
fn no_source_file_holds_more_than_600_lines_of_code() {
    let root = Path::new(SRC).join("..");
    let mut long = Vec::new();
    for krate in ["supervisor", "ipc", "worker", "bench", "soak"] {
        let mut dirs = vec![root.join(krate).join("src")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir)
                .expect("read a source directory")
                .flatten()
            {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).expect("read a source file");
                    let all: Vec<&str> = text.lines().collect();
                    let lines = (0..all.len())
                        .find(|&i| is_unit_tests(all[i], all.get(i + 1).copied()))
                        .unwrap_or(all.len());
                    if lines > MAX_CODE_LINES && !path.ends_with("tests.rs") {
                        long.push(format!("{} ({lines} lines)", path.display()));
                    }
                }
            }
        }
    }
    assert!(
        long.is_empty(),
        "over {MAX_CODE_LINES} lines of code: split each by idea\n{}",
        long.join("\n")
    );
}

#[test]
fn the_check_sees_imports_groups_reexports_and_cycles() {
    let text = "use crate::a::X;\nuse crate::{b::Y, c, d::{e, f}};\n// crate::commented\nlet s = crate::Sup::new();\n#[cfg(test)]\nmod helpers { use crate::g; }\n#[cfg(test)]\nmod tests { use crate::hidden; }\n";
    let names = crate_names(&code(text), 0);
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["Sup", "a", "b", "c", "d", "g"]
    );
    // From a file one module down, `super::super::` is the root and
    // `super::` its own parent.
    let nested = "use super::super::plugin::P;\nuse super::sibling::S;\n";
    assert_eq!(
        crate_names(nested, 1).into_iter().collect::<Vec<_>>(),
        ["plugin"]
    );
    assert_eq!(
        crate_names(nested, 0).into_iter().collect::<Vec<_>>(),
        ["sibling"]
    );
    let src = Path::new("/s");
    assert_eq!(depth(src, Path::new("/s/x.rs")), 0);
    assert_eq!(depth(src, Path::new("/s/x/mod.rs")), 0);
    assert_eq!(depth(src, Path::new("/s/x/y.rs")), 1);
    assert_eq!(depth(src, Path::new("/s/x/y/mod.rs")), 1);
    let (mods, reexports) = modules(
        "pub mod a;\nmod sup;\npub(crate) mod hid;\n#[cfg(test)]\nmod checks;\npub use sup::{Sup, Other};\npub use a::X;\n",
    );
    assert_eq!(mods, ["a", "sup", "hid"]);
    assert_eq!(reexports.get("Sup").map(String::as_str), Some("sup"));
    assert_eq!(reexports.get("X").map(String::as_str), Some("a"));
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_owned(), ["b".to_owned()].into()),
        ("b".to_owned(), ["a".to_owned()].into()),
    ]
    .into();
    assert_eq!(
        cycle(&graph),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
    let doc = "# x\n\n## Layers\n\n| layer | modules | holds |\n|---|---|---|\n| 0 | `a`, `b` | leaves |\n| 1 | `c` | more |\n\nafter\n";
    let layers = layers(doc);
    assert_eq!(layers.get("b"), Some(&0));
    assert_eq!(layers.get("c"), Some(&1));
}
