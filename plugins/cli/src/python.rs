//! Python plugins: componentize-py builds `plugin.py` with the Python SDK
//! (`plugins/pdk/python`, built into this binary) into a component, and
//! pytest runs the plugin's own tests against the SDK's fake host.
//!
//! The component is built for a world made from the manifest: the exports
//! of its capabilities, and the host interfaces its permissions allow.
//! componentize-py keeps every import of the world it is given (Python is
//! dynamic, nothing is pruned), so building for the whole PRX world would
//! make every Python plugin ask for every permission.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use prx_supervisor::manifest::Manifest;

/// The componentize-py release the SDK is built and tested with.
pub const COMPONENTIZE_PY: &str = "0.25.1";

/// The SDK, as files relative to its root.
const SDK: &[(&str, &str)] = &[
    ("prx_app.py", include_str!("../../pdk/python/prx_app.py")),
    (
        "prx_host/__init__.py",
        include_str!("../../pdk/python/prx_host/__init__.py"),
    ),
    (
        "prx_pdk/__init__.py",
        include_str!("../../pdk/python/prx_pdk/__init__.py"),
    ),
    (
        "prx_pdk/_backend.py",
        include_str!("../../pdk/python/prx_pdk/_backend.py"),
    ),
    (
        "prx_pdk/errors.py",
        include_str!("../../pdk/python/prx_pdk/errors.py"),
    ),
    (
        "prx_pdk/host.py",
        include_str!("../../pdk/python/prx_pdk/host.py"),
    ),
    (
        "prx_pdk/info.py",
        include_str!("../../pdk/python/prx_pdk/info.py"),
    ),
    (
        "prx_pdk/module.py",
        include_str!("../../pdk/python/prx_pdk/module.py"),
    ),
    (
        "prx_pdk/testing.py",
        include_str!("../../pdk/python/prx_pdk/testing.py"),
    ),
    (
        "prx_pdk/worlds.py",
        include_str!("../../pdk/python/prx_pdk/worlds.py"),
    ),
];

/// The virtual environment scripts/bootstrap.sh makes in this repository.
const REPO_VENV: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin");

/// Where a Python project's build output goes (ignored by its .gitignore).
fn scratch(dir: &Path) -> PathBuf {
    dir.join("build").join("prx")
}

/// componentize-py: `$PRX_COMPONENTIZE_PY`, this repository's .venv, or
/// the one on PATH.
fn componentize_py() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("PRX_COMPONENTIZE_PY") {
        return Ok(PathBuf::from(path));
    }
    let venv = Path::new(REPO_VENV).join("componentize-py");
    if venv.is_file() {
        return Ok(venv);
    }
    let on_path = Command::new("componentize-py").arg("--version").output();
    if on_path.is_ok_and(|o| o.status.success()) {
        return Ok(PathBuf::from("componentize-py"));
    }
    bail!(
        "componentize-py is not installed: pip install componentize-py=={COMPONENTIZE_PY} (or set PRX_COMPONENTIZE_PY to it); in the prx-sandbox repository, scripts/bootstrap.sh installs it into .venv"
    )
}

/// The Python beside componentize-py (its virtual environment), else
/// python3: pytest runs with it.
fn python() -> PathBuf {
    componentize_py()
        .ok()
        .and_then(|c| c.parent().map(|d| d.join("python")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// Writes the SDK under `root` and returns it.
fn write_sdk(root: &Path) -> Result<PathBuf> {
    let sdk = root.join("sdk");
    for (path, text) in SDK {
        write(&sdk.join(path), text)?;
    }
    Ok(sdk)
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// The WIT world a plugin with this manifest is built for.
pub fn world(manifest: &Manifest) -> String {
    let reference = crate::validate::reference();
    let declared = crate::validate::declared(manifest);
    let mut offered = std::collections::BTreeSet::new();
    let mut exports = std::collections::BTreeSet::new();
    for cap in &manifest.capabilities {
        exports.insert(cap.kind.export());
        offered.extend(crate::validate::offered(&reference, cap.kind));
    }
    // What the worlds offer, as far as the permissions allow, and what a
    // declared permission asks for beyond them (this host links every
    // prx:host interface; validate warns that other hosts may not).
    let imports = crate::validate::HOST_WIT.iter().filter_map(|(file, _)| {
        let name = file.strip_suffix(".wit")?;
        let wanted = match crate::validate::permission_for(name) {
            None => offered.contains(name),
            Some(permission) => declared.contains(&permission),
        };
        wanted.then_some(name)
    });
    let mut wit = String::from(
        "// Written by prx-plugin build from plugin.toml: the exports of its\n// capabilities and the host interfaces its permissions allow.\npackage prx:python-build;\n\nworld python-plugin {\n",
    );
    for name in imports {
        let _ = writeln!(wit, "    import prx:host/{name}@0.1.0;");
    }
    for export in exports {
        let _ = writeln!(wit, "    export {export};");
    }
    wit.push_str("}\n");
    wit
}

/// Builds the plugin in `dir` with componentize-py; returns the component.
pub fn build(dir: &Path, manifest: &Manifest) -> Result<PathBuf> {
    if !dir.join("plugin.py").is_file() {
        bail!(
            "{}: a Python plugin's code is plugin.py (prx-plugin new --lang python makes one)",
            dir.display()
        );
    }
    let project = dir.canonicalize()?;
    let root = scratch(&project);
    let wit = root.join("wit");
    let _ = std::fs::remove_dir_all(&wit);
    write(&wit.join("world.wit"), &world(manifest))?;
    for (name, text) in crate::validate::WIT {
        write(&wit.join("deps/plugin").join(name), text)?;
    }
    for (name, text) in crate::validate::HOST_WIT {
        write(&wit.join("deps/host").join(name), text)?;
    }
    let sdk = write_sdk(&root)?;
    let kinds: Vec<String> = manifest
        .capabilities
        .iter()
        .map(|c| format!("{:?}", c.kind.as_str()))
        .collect();
    write(
        &sdk.join("prx_build.py"),
        &format!(
            "# Written by prx-plugin build: what plugin.toml declares.\nCAPABILITIES = [{}]\n",
            kinds.join(", ")
        ),
    )?;
    let out = root.join("plugin.wasm");
    let tool = componentize_py()?;
    // Like cargo, nothing is rebuilt when no input changed.
    let stamp = root.join("inputs.sha256");
    let inputs = inputs_digest(&project, &root, &tool)?;
    if out.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == inputs) {
        println!("{}: up to date", manifest.plugin.name);
        return Ok(out);
    }
    let _ = std::fs::remove_file(&stamp);
    let status = Command::new(&tool)
        .current_dir(&root)
        // Its Rust backtraces say nothing to a plugin author.
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .arg("--wit-path")
        .arg(&wit)
        .args(["--world", "prx:python-build/python-plugin", "componentize"])
        .arg("--python-path")
        .arg(&project)
        .arg("--python-path")
        .arg(&sdk)
        .arg("--output")
        .arg(&out)
        .arg("prx_app")
        .status()
        .with_context(|| format!("cannot run {}", tool.display()))?;
    if status.success() {
        std::fs::write(&stamp, inputs)?;
    } else {
        bail!(
            "componentize-py failed (see above). An error raised while importing plugin.py shows here: the module runs at build time, so it must not call the host at import (do that in the functions the host calls)"
        );
    }
    Ok(out)
}

/// A digest of everything a build reads: the project's files (not its
/// tests, build output or hidden files), the generated world and SDK, and
/// the componentize-py in use.
fn inputs_digest(project: &Path, root: &Path, componentize_py: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    fn walk(dir: &Path, skip: &[&str], files: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || skip.contains(&name.as_str()) {
                continue;
            }
            if entry.file_type()?.is_dir() {
                walk(&entry.path(), &["__pycache__"], files)?;
            } else if !name.ends_with(".wasm") && !name.ends_with(".prxplugin") {
                files.push(entry.path());
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(
        project,
        &["build", "target", "tests", "__pycache__"],
        &mut files,
    )?;
    walk(&root.join("wit"), &[], &mut files)?;
    walk(&root.join("sdk"), &["__pycache__"], &mut files)?;
    files.sort();
    let mut hash = Sha256::new();
    hash.update(componentize_py.to_string_lossy().as_bytes());
    for file in files {
        hash.update(file.to_string_lossy().as_bytes());
        hash.update([0]);
        hash.update(std::fs::read(&file)?);
        hash.update([0]);
    }
    Ok(format!("{:x}", hash.finalize()))
}

/// Runs the plugin's own tests with pytest, with `plugin` and the SDK
/// importable. Nothing to run is not a failure.
pub fn unit_tests(dir: &Path) -> Result<()> {
    let has_tests = dir.join("tests").is_dir()
        || std::fs::read_dir(dir)?.flatten().any(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("test_") && name.ends_with(".py")
        });
    if !has_tests {
        println!("(no tests/ or test_*.py: nothing to run)");
        return Ok(());
    }
    let project = dir.canonicalize()?;
    let sdk = write_sdk(&scratch(&project))?;
    let python = python();
    let path = std::env::join_paths([project.clone(), sdk])?;
    let status = Command::new(&python)
        .current_dir(&project)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .env("PYTHONPATH", path)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .status()
        .with_context(|| format!("cannot run {}", python.display()))?;
    match status.code() {
        Some(0) => Ok(()),
        // pytest: 5 is "no tests collected".
        Some(5) => Ok(()),
        _ => bail!(
            "the plugin's own tests failed (pytest, above); if it says `No module named pytest`: {} -m pip install pytest",
            python.display()
        ),
    }
}
