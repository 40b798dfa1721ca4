//! JavaScript and TypeScript plugins: TypeScript is compiled with tsc,
//! then the plugin, its npm dependencies and the SDK
//! (`plugins/pdk/javascript`, built into this binary, importable as
//! `@prx/pdk`) are bundled into one module with esbuild, and
//! componentize-js makes a component of it for a world made from the
//! manifest (`crate::world`). The plugin's own tests run under Node's
//! test runner against the SDK's fake host.
//!
//! The tools are pinned in `plugins/cli/js/package.json` and its lock
//! file (scripts/bootstrap.sh installs them with npm ci), and driven by
//! `plugins/cli/js/build.mjs` through componentize-js's JavaScript API,
//! offline: its AOT path, which downloads a compiler, is never used.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use prx_supervisor::manifest::Manifest;

/// The componentize-js release the SDK is built and tested with.
pub const COMPONENTIZE_JS: &str = "0.23.0";

/// The SDK, as files relative to its root.
const SDK: &[(&str, &str)] = &[
    (
        "package.json",
        include_str!("../../pdk/javascript/package.json"),
    ),
    (
        "src/backend.js",
        include_str!("../../pdk/javascript/src/backend.js"),
    ),
    (
        "src/component.js",
        include_str!("../../pdk/javascript/src/component.js"),
    ),
    (
        "src/errors.js",
        include_str!("../../pdk/javascript/src/errors.js"),
    ),
    (
        "src/host.js",
        include_str!("../../pdk/javascript/src/host.js"),
    ),
    (
        "src/index.js",
        include_str!("../../pdk/javascript/src/index.js"),
    ),
    (
        "src/module.js",
        include_str!("../../pdk/javascript/src/module.js"),
    ),
    (
        "src/report.js",
        include_str!("../../pdk/javascript/src/report.js"),
    ),
    (
        "src/testing.js",
        include_str!("../../pdk/javascript/src/testing.js"),
    ),
    (
        "src/worlds.js",
        include_str!("../../pdk/javascript/src/worlds.js"),
    ),
    (
        "types/index.d.ts",
        include_str!("../../pdk/javascript/types/index.d.ts"),
    ),
    (
        "types/testing.d.ts",
        include_str!("../../pdk/javascript/types/testing.d.ts"),
    ),
    (
        "types/component.d.ts",
        include_str!("../../pdk/javascript/types/component.d.ts"),
    ),
    (
        "node/register.mjs",
        include_str!("../../pdk/javascript/node/register.mjs"),
    ),
    (
        "node/hooks.mjs",
        include_str!("../../pdk/javascript/node/hooks.mjs"),
    ),
];

/// Each module of `@prx/pdk` and its file in the SDK.
const MODULES: &[(&str, &str, &str)] = &[
    ("@prx/pdk", "src/index.js", "types/index.d.ts"),
    ("@prx/pdk/testing", "src/testing.js", "types/testing.d.ts"),
    (
        "@prx/pdk/component",
        "src/component.js",
        "types/component.d.ts",
    ),
];

/// The toolchain scripts/bootstrap.sh installs in this repository.
const REPO_TOOLCHAIN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/js");

/// Where the plugin's module may be, in this order.
const SOURCES: &[&str] = &["src/plugin.ts", "plugin.ts", "src/plugin.js", "plugin.js"];

/// Where a JavaScript project's build output goes (ignored by its .gitignore).
fn scratch(dir: &Path) -> PathBuf {
    dir.join("build").join("prx")
}

/// The toolchain: `$PRX_JS_TOOLCHAIN`, or this repository's.
fn toolchain() -> Result<PathBuf> {
    let dir = std::env::var_os("PRX_JS_TOOLCHAIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(REPO_TOOLCHAIN));
    let installed = dir
        .join("node_modules/@bytecodealliance/componentize-js/package.json")
        .is_file()
        && dir.join("build.mjs").is_file();
    if !installed {
        bail!(
            "the JavaScript toolchain (componentize-js {COMPONENTIZE_JS}, esbuild, TypeScript) is not installed at {}: in the prx-sandbox repository run scripts/bootstrap.sh (it runs npm ci in plugins/cli/js), or set PRX_JS_TOOLCHAIN to a copy of plugins/cli/js where npm ci has run",
            dir.display()
        );
    }
    Ok(dir)
}

/// Node, 20 or later.
fn node() -> Result<PathBuf> {
    let node = std::env::var_os("PRX_NODE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("node"));
    let version = Command::new(&node).arg("--version").output();
    let version = match version {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        _ => bail!(
            "Node.js is not installed (JavaScript and TypeScript plugins are built with it): install Node 20 or later, or set PRX_NODE to it"
        ),
    };
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < 20 {
        bail!("Node.js {version} is too old: JavaScript plugins need Node 20 or later");
    }
    Ok(node)
}

/// The plugin's module, relative to the project, and whether it is
/// TypeScript.
fn source(project: &Path) -> Result<(PathBuf, bool)> {
    let found = SOURCES
        .iter()
        .find(|s| project.join(s).is_file())
        .with_context(|| {
            format!(
                "{}: a JavaScript plugin's code is one of {} (prx-plugin new --lang typescript makes one)",
                project.display(),
                SOURCES.join(", ")
            )
        })?;
    Ok((PathBuf::from(found), found.ends_with(".ts")))
}

/// Writes the SDK under `root` and returns it.
fn write_sdk(root: &Path) -> Result<PathBuf> {
    let sdk = root.join("sdk");
    let _ = std::fs::remove_dir_all(&sdk);
    for (path, text) in SDK {
        crate::world::write_file(&sdk.join(path), text)?;
    }
    Ok(sdk)
}

fn js(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// The entry module: imports the plugin and the world's host interfaces,
/// and exports what `bind` makes under the names componentize-js binds.
fn entry(module: &Path, source: &Path, manifest: &Manifest, interfaces: &[&str]) -> String {
    let mut imports = String::new();
    let mut table = String::new();
    for (i, name) in interfaces.iter().enumerate() {
        imports.push_str(&format!(
            "import * as i{i} from \"prx:host/{name}@0.1.0\";\n"
        ));
        table.push_str(&format!("  {}: i{i},\n", js(name)));
    }
    let kinds: Vec<String> = manifest
        .capabilities
        .iter()
        .map(|c| js(c.kind.as_str()))
        .collect();
    let mut exports = String::new();
    let mut seen = std::collections::BTreeSet::new();
    for cap in &manifest.capabilities {
        let name = export_name(cap.kind.as_str());
        if seen.insert(name.clone()) {
            exports.push_str(&format!("export const {name} = bound.{name};\n"));
        }
    }
    format!(
        "// Written by prx-plugin build from plugin.toml: the plugin's module bound\n// to the host interfaces its world imports and to the exports it declares.\nimport * as plugin from {module};\nimport {{ bind }} from \"@prx/pdk/component\";\n{imports}\nconst bound = bind(plugin, [{kinds}], {{\n{table}}}, {source});\n{exports}",
        module = js(&module.to_string_lossy()),
        kinds = kinds.join(", "),
        source = js(&source.to_string_lossy()),
    )
}

/// `tool-exports` -> `toolExports`: the name componentize-js gives an
/// exported interface.
fn export_name(kind: &str) -> String {
    format!("{kind}Exports")
}

/// A tsconfig for one tsc run: the project's own (when it has one)
/// extended with where the output goes and where `@prx/pdk` is.
fn tsconfig(
    project: &Path,
    sdk: &Path,
    toolchain: &Path,
    out: &Path,
    files: serde_json::Value,
    types: &[&str],
) -> String {
    let mut paths = serde_json::Map::new();
    for (specifier, _, types) in MODULES {
        paths.insert(
            (*specifier).into(),
            serde_json::json!([sdk.join(types).to_string_lossy()]),
        );
    }
    let own = project.join("tsconfig.json");
    let mut config = serde_json::json!({
        "compilerOptions": {
            "outDir": out.to_string_lossy(),
            "rootDir": project.to_string_lossy(),
            "noEmit": false,
            "declaration": false,
            "declarationMap": false,
            "sourceMap": false,
            "composite": false,
            "incremental": false,
            "module": "ES2022",
            "moduleResolution": "bundler",
            "skipLibCheck": true,
            "paths": paths,
            "typeRoots": [toolchain.join("node_modules/@types").to_string_lossy()],
            "types": types,
        },
    });
    if own.is_file() {
        config["extends"] = own.to_string_lossy().into();
    } else {
        // What prx-plugin new writes, for a project without a tsconfig.
        config["compilerOptions"]["target"] = "ES2022".into();
        config["compilerOptions"]["lib"] = serde_json::json!(["ES2022", "DOM"]);
        config["compilerOptions"]["strict"] = true.into();
    }
    for (key, value) in files.as_object().into_iter().flatten() {
        config[key] = value.clone();
    }
    serde_json::to_string_pretty(&config).expect("a JSON value")
}

/// Runs tsc with `config` (written to `root/name`).
fn tsc(
    node: &Path,
    toolchain: &Path,
    root: &Path,
    name: &str,
    config: &str,
    project: &Path,
) -> Result<()> {
    let path = root.join(name);
    crate::world::write_file(&path, config)?;
    let status = Command::new(node)
        .current_dir(project)
        .arg(toolchain.join("node_modules/typescript/bin/tsc"))
        .arg("--project")
        .arg(&path)
        .status()
        .context("cannot run tsc")?;
    if !status.success() {
        bail!("tsc found errors in the TypeScript (above); fix them and build again");
    }
    Ok(())
}

/// Marks a directory of compiled modules as ES modules for Node.
fn mark_esm(dir: &Path) -> Result<()> {
    crate::world::write_file(&dir.join("package.json"), "{ \"type\": \"module\" }\n")
}

/// Builds the plugin in `dir`; returns the component.
pub fn build(dir: &Path, manifest: &Manifest) -> Result<PathBuf> {
    let project = dir.canonicalize()?;
    let (source, typescript) = source(&project)?;
    let toolchain = toolchain()?;
    let node = node()?;
    let root = scratch(&project);
    let wit = root.join("wit");
    let imports = crate::world::write(&wit, manifest)?;
    let sdk = write_sdk(&root)?;
    let compiled = root.join("tsc");
    let module = if typescript {
        compiled.join(source.with_extension("js"))
    } else {
        project.join(&source)
    };
    let entry_path = root.join("entry").join("entry.js");
    crate::world::write_file(&entry_path, &entry(&module, &source, manifest, &imports))?;
    let out = root.join("plugin.wasm");
    let stamp = root.join("inputs.sha256");
    let inputs = crate::inputs::digest(
        &project,
        &["build", "target", "tests", "dist"],
        &[&wit, &sdk, &root.join("entry")],
        &toolchain,
    )?;
    if out.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == inputs) {
        println!("{}: up to date", manifest.plugin.name);
        return Ok(out);
    }
    let _ = std::fs::remove_file(&stamp);
    if typescript {
        let _ = std::fs::remove_dir_all(&compiled);
        let files = serde_json::json!({ "files": [project.join(&source).to_string_lossy()], "include": [] });
        let config = tsconfig(&project, &sdk, &toolchain, &compiled, files, &[]);
        tsc(
            &node,
            &toolchain,
            &root,
            "tsconfig.build.json",
            &config,
            &project,
        )?;
        mark_esm(&compiled)?;
    }
    let mut modules = serde_json::Map::new();
    for (specifier, file, _) in MODULES {
        modules.insert((*specifier).into(), sdk.join(file).to_string_lossy().into());
    }
    let request = serde_json::json!({
        "entry": entry_path.to_string_lossy(),
        "bundle": root.join("bundle.js").to_string_lossy(),
        "component": out.to_string_lossy(),
        "wit": wit.to_string_lossy(),
        "world": crate::world::WORLD,
        "sdk": modules,
        "nodePaths": [project.join("node_modules").to_string_lossy()],
        // wasi:http, which fetch() needs, is not given to plugins: their
        // HTTP goes through prx:host/http-outbound and its allowlist.
        "disableFeatures": ["http", "fetch-event"],
    });
    let request_path = root.join("request.json");
    crate::world::write_file(&request_path, &request.to_string())?;
    let output = Command::new(&node)
        .current_dir(&project)
        .arg(toolchain.join("build.mjs"))
        .arg(&request_path)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run node")?;
    if !output.status.success() {
        bail!(
            "componentize-js failed (see above). An exception thrown while the plugin's module is evaluated shows here: the module runs at build time, so it must not call the host at its top level (do that in the functions the host calls)"
        );
    }
    let said: serde_json::Value = String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .context("the JavaScript build said nothing about its component")?;
    std::fs::write(&stamp, inputs)?;
    let mib = said["componentBytes"].as_f64().unwrap_or(0.0) / (1024.0 * 1024.0);
    println!(
        "{}: {mib:.1} MiB component (a {:.0} KiB bundle) in {:.1} s",
        manifest.plugin.name,
        said["bundleBytes"].as_f64().unwrap_or(0.0) / 1024.0,
        said["ms"].as_f64().unwrap_or(0.0) / 1000.0
    );
    println!("  {}", size_note(mib));
    Ok(out)
}

/// What the PRX guide's "JavaScript plugin is too large" says, for this
/// host.
pub fn size_note(mib: f64) -> String {
    format!(
        "most of the {mib:.0} MiB is the JavaScript engine componentize-js embeds (StarlingMonkey): expected, and paid once. The supervisor compiles a component once and keeps the machine code in its compile cache, so later starts do not compile again; if size is a hard limit, write the plugin in Rust"
    )
}

/// Whether the project has tests Node's runner would find.
fn has_tests(project: &Path) -> Result<bool> {
    if project.join("tests").is_dir() || project.join("test").is_dir() {
        return Ok(true);
    }
    Ok(std::fs::read_dir(project)?.flatten().any(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        name.contains(".test.") || name.starts_with("test")
    }))
}

/// Runs the plugin's own tests with `node --test`, with `@prx/pdk`
/// resolving to the SDK (TypeScript is compiled first, tests included).
/// Nothing to run is not a failure.
pub fn unit_tests(dir: &Path) -> Result<()> {
    let project = dir.canonicalize()?;
    if !has_tests(&project)? {
        println!("(no tests/ or *.test.js: nothing to run)");
        return Ok(());
    }
    let (source, typescript) = source(&project)?;
    let node = node()?;
    let root = scratch(&project);
    let sdk = write_sdk(&root)?;
    let mut cwd = project.clone();
    if typescript {
        let toolchain = toolchain()?;
        let compiled = root.join("tsc-test");
        let _ = std::fs::remove_dir_all(&compiled);
        let base = project.to_string_lossy();
        let files = serde_json::json!({
            "files": [project.join(&source).to_string_lossy()],
            "include": [format!("{base}/tests/**/*.ts"), format!("{base}/test/**/*.ts"), format!("{base}/*.test.ts")],
        });
        let config = tsconfig(&project, &sdk, &toolchain, &compiled, files, &["node"]);
        tsc(
            &node,
            &toolchain,
            &root,
            "tsconfig.test.json",
            &config,
            &project,
        )?;
        mark_esm(&compiled)?;
        cwd = compiled;
    }
    let status = Command::new(&node)
        .current_dir(&cwd)
        .arg("--import")
        .arg(sdk.join("node/register.mjs"))
        .arg("--test")
        .status()
        .with_context(|| format!("cannot run {}", node.display()))?;
    if !status.success() {
        bail!("the plugin's own tests failed (node --test, above)");
    }
    Ok(())
}
