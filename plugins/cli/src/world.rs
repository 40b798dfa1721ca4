//! The WIT world a plugin in a dynamic language (Python, JavaScript) is
//! built for, made from its manifest: the exports of its capabilities and
//! the host interfaces its permissions allow. Their toolchains keep every
//! import of the world they are given (nothing is pruned), so building
//! for the whole PRX world would make every such plugin ask for every
//! permission.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use prx_supervisor::manifest::Manifest;

/// The world's package and name, as the toolchains are told.
pub const WORLD: &str = "prx:plugin-build/plugin";

/// The host interfaces (`log`, `kv`, `http-outbound`, ...) a plugin with
/// this manifest imports.
fn imports(manifest: &Manifest) -> Vec<&'static str> {
    let reference = crate::validate::reference();
    let declared = crate::validate::declared(manifest);
    let mut offered = BTreeSet::new();
    for cap in &manifest.capabilities {
        offered.extend(crate::validate::offered(&reference, cap.kind));
    }
    // What the worlds offer, as far as the permissions allow, and what a
    // declared permission asks for beyond them (this host links every
    // prx:host interface; validate warns that other hosts may not).
    crate::validate::HOST_WIT
        .iter()
        .filter_map(|(file, _)| {
            let name = file.strip_suffix(".wit")?;
            let wanted = match crate::validate::permission_for(name) {
                None => offered.contains(name),
                Some(permission) => declared.contains(&permission),
            };
            wanted.then_some(name)
        })
        .collect()
}

/// The world's WIT text, importing `imports` (see [`imports`]).
fn world(manifest: &Manifest, imports: &[&str]) -> String {
    let exports: BTreeSet<&str> = manifest
        .capabilities
        .iter()
        .map(|c| c.kind.export())
        .collect();
    let mut wit = String::from(
        "// Written by prx-plugin build from plugin.toml: the exports of its\n// capabilities and the host interfaces its permissions allow.\npackage prx:plugin-build;\n\nworld plugin {\n",
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

/// Writes the world and the PRX ABI it refers to under `dir` (replacing
/// what was there); returns the host interfaces the world imports.
pub fn write(dir: &Path, manifest: &Manifest) -> Result<Vec<&'static str>> {
    let imports = imports(manifest);
    let _ = std::fs::remove_dir_all(dir);
    write_file(&dir.join("world.wit"), &world(manifest, &imports))?;
    for (name, text) in crate::validate::WIT {
        write_file(&dir.join("deps/plugin").join(name), text)?;
    }
    for (name, text) in crate::validate::HOST_WIT {
        write_file(&dir.join("deps/host").join(name), text)?;
    }
    Ok(imports)
}

/// Writes `text` to `path`, making its directory.
pub fn write_file(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
