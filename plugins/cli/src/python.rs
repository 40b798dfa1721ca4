//! Python plugins: componentize-py builds `plugin.py` with the Python SDK
//! (`plugins/pdk/python`, built into this binary) into a component, and
//! pytest runs the plugin's own tests against the SDK's fake host.
//!
//! The component is built for a world made from the manifest
//! (`crate::world`).

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
        "prx_pdk/compat.py",
        include_str!("../../pdk/python/prx_pdk/compat.py"),
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
        crate::world::write_file(&sdk.join(path), text)?;
    }
    Ok(sdk)
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
    crate::world::write(&wit, manifest)?;
    let sdk = write_sdk(&root)?;
    let kinds: Vec<String> = manifest
        .capabilities
        .iter()
        .map(|c| format!("{:?}", c.kind.as_str()))
        .collect();
    crate::world::write_file(
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
    let inputs = crate::inputs::digest(
        &project,
        &["build", "target", "tests", "__pycache__"],
        &[&root.join("wit"), &root.join("sdk")],
        &tool,
    )?;
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
        .args(["--world", crate::world::WORLD, "componentize"])
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
