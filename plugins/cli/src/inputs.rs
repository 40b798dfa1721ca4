//! Whether a build of a Python or JavaScript plugin is up to date: like
//! cargo, nothing is rebuilt when no input changed. The inputs are the
//! project's files (not its tests, build output, dependencies' folders or
//! hidden files), what the build generated (world, SDK) and the tool.

use std::path::{Path, PathBuf};

use anyhow::Result;
use sha2::{Digest, Sha256};

/// Skipped at every depth: caches of the languages' own tools.
const ALWAYS_SKIPPED: &[&str] = &["__pycache__", "node_modules"];

fn walk(dir: &Path, skip: &[&str], files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.')
            || skip.contains(&name.as_str())
            || ALWAYS_SKIPPED.contains(&name.as_str())
        {
            continue;
        }
        if entry.file_type()?.is_dir() {
            walk(&entry.path(), &[], files)?;
        } else if !name.ends_with(".wasm") && !name.ends_with(".prxplugin") {
            files.push(entry.path());
        }
    }
    Ok(())
}

/// A digest of the files under `project` (but its top-level `skip`
/// folders), of everything under each of `generated`, and of `tool`.
pub fn digest(project: &Path, skip: &[&str], generated: &[&Path], tool: &Path) -> Result<String> {
    let mut files = Vec::new();
    walk(project, skip, &mut files)?;
    for dir in generated {
        walk(dir, &[], &mut files)?;
    }
    files.sort();
    let mut hash = Sha256::new();
    hash.update(tool.to_string_lossy().as_bytes());
    for file in files {
        hash.update(file.to_string_lossy().as_bytes());
        hash.update([0]);
        hash.update(std::fs::read(&file)?);
        hash.update([0]);
    }
    Ok(format!("{:x}", hash.finalize()))
}
