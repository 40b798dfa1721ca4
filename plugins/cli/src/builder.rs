//! `prx-plugin build`: the language's own build, then the component is
//! put where the manifest says (written beside it and renamed into place,
//! so a supervisor watching the directory never reads half of it) and
//! validated.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

use crate::Lang;

/// The language of the project in `dir`, from the files it has.
pub fn detect(dir: &Path) -> Result<Lang> {
    if dir.join("Cargo.toml").is_file() {
        Ok(Lang::Rust)
    } else if dir.join("plugin.py").is_file() || dir.join("pyproject.toml").is_file() {
        Ok(Lang::Python)
    } else if dir.join("go.mod").is_file() {
        Ok(Lang::Go)
    } else if dir.join("tsconfig.json").is_file()
        || dir.join("src/plugin.ts").is_file()
        || dir.join("plugin.ts").is_file()
    {
        Ok(Lang::Typescript)
    } else if dir.join("package.json").is_file() || dir.join("plugin.js").is_file() {
        Ok(Lang::Javascript)
    } else {
        bail!(
            "{}: no Cargo.toml (Rust), plugin.py / pyproject.toml (Python), tsconfig.json / src/plugin.ts (TypeScript), package.json / plugin.js (JavaScript) or go.mod (Go); run this in a plugin project (prx-plugin new makes one)",
            dir.display()
        )
    }
}

pub fn build(dir: &Path, release: bool) -> Result<ExitCode> {
    let wasm = build_quietly(dir, release)?;
    println!("built {}", wasm.display());
    let report = crate::validate::validate(&std::fs::read(&wasm)?, &dir.join("plugin.toml"));
    print!("{}", report.render());
    Ok(if report.errors() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Builds the component and puts it in place; returns its path.
pub fn build_quietly(dir: &Path, release: bool) -> Result<PathBuf> {
    let manifest_path = dir.join("plugin.toml");
    let manifest = prx_supervisor::manifest::Manifest::load(&manifest_path)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let built = match detect(dir)? {
        Lang::Rust => build_rust(dir, release)?,
        Lang::Python => crate::python::build(dir, &manifest)?,
        Lang::Javascript | Lang::Typescript => crate::javascript::build(dir, &manifest)?,
        Lang::Go => crate::golang::build(dir, &manifest)?,
    };
    let target = manifest.wasm_path(dir);
    let staged = target.with_file_name(format!(
        ".{}.building",
        target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    std::fs::copy(&built, &staged).with_context(|| format!("cannot write {}", staged.display()))?;
    std::fs::rename(&staged, &target)
        .with_context(|| format!("cannot move the component to {}", target.display()))?;
    Ok(target)
}

/// Cargo (the one running us, if any) in `dir`.
pub fn cargo(dir: &Path) -> Command {
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo.current_dir(dir);
    cargo
}

fn build_rust(dir: &Path, release: bool) -> Result<PathBuf> {
    let mut build = cargo(dir);
    build.args(["build", "--target", "wasm32-wasip2"]);
    if release {
        build.arg("--release");
    }
    let status = build.status().context("cannot run cargo")?;
    if !status.success() {
        bail!(
            "cargo build failed (see above); if it says the target is missing: rustup target add wasm32-wasip2"
        );
    }
    let metadata = cargo(dir)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("cannot run cargo metadata")?;
    if !metadata.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&metadata.stderr)
        );
    }
    let metadata: serde_json::Value = serde_json::from_slice(&metadata.stdout)?;
    let target_dir = metadata["target_directory"]
        .as_str()
        .context("cargo metadata has no target_directory")?;
    let root = dir.canonicalize()?.join("Cargo.toml");
    let package = metadata["packages"]
        .as_array()
        .and_then(|p| {
            p.iter().find(|p| {
                p["manifest_path"]
                    .as_str()
                    .is_some_and(|m| Path::new(m) == root)
            })
        })
        .context("cargo metadata does not list this project's package")?;
    let lib = package["targets"]
        .as_array()
        .and_then(|t| {
            t.iter().find(|t| {
                t["crate_types"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c == "cdylib"))
            })
        })
        .context(
            "the package has no cdylib target; a plugin is `[lib] crate-type = [\"cdylib\"]`",
        )?;
    let name = lib["name"]
        .as_str()
        .context("the cdylib target has no name")?
        .replace('-', "_");
    let profile = if release { "release" } else { "debug" };
    let built = Path::new(target_dir)
        .join("wasm32-wasip2")
        .join(profile)
        .join(format!("{name}.wasm"));
    if !built.is_file() {
        bail!("cargo built nothing at {}", built.display());
    }
    Ok(built)
}
