//! `prx-plugin validate`: checks a component against its manifest and the
//! PRX ABI without compiling it. The component's WIT is decoded from its
//! type information and compared, function by function, with the ABI in
//! `wit/` (built into this binary).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use prx_supervisor::manifest::{CapabilityType, Manifest, Permission};
use wit_parser::decoding::DecodedWasm;
use wit_parser::{Function, Resolve, Type, TypeDefKind, WorldId, WorldItem, WorldKey};

/// The ABI as this host knows it: `wit/`, built in.
pub(crate) const WIT: &[(&str, &str)] = &[
    ("exports.wit", include_str!("../../../wit/exports.wit")),
    ("worlds.wit", include_str!("../../../wit/worlds.wit")),
];
pub(crate) const HOST_WIT: &[(&str, &str)] = &[
    (
        "cache.wit",
        include_str!("../../../wit/deps/host/cache.wit"),
    ),
    (
        "config.wit",
        include_str!("../../../wit/deps/host/config.wit"),
    ),
    (
        "events.wit",
        include_str!("../../../wit/deps/host/events.wit"),
    ),
    (
        "http-outbound.wit",
        include_str!("../../../wit/deps/host/http-outbound.wit"),
    ),
    (
        "kv-atomic.wit",
        include_str!("../../../wit/deps/host/kv-atomic.wit"),
    ),
    ("kv.wit", include_str!("../../../wit/deps/host/kv.wit")),
    ("log.wit", include_str!("../../../wit/deps/host/log.wit")),
    (
        "memory.wit",
        include_str!("../../../wit/deps/host/memory.wit"),
    ),
    ("rpc.wit", include_str!("../../../wit/deps/host/rpc.wit")),
];

/// How bad one finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    Warning,
    Error,
}

/// What validation found, in the order it looked.
#[derive(Debug, Default)]
pub struct Report {
    pub findings: Vec<(Level, String)>,
}

impl Report {
    pub(crate) fn ok(&mut self, message: impl Into<String>) {
        self.findings.push((Level::Ok, message.into()));
    }

    pub(crate) fn warn(&mut self, message: impl Into<String>) {
        self.findings.push((Level::Warning, message.into()));
    }

    pub(crate) fn error(&mut self, message: impl Into<String>) {
        self.findings.push((Level::Error, message.into()));
    }

    pub fn errors(&self) -> usize {
        self.findings
            .iter()
            .filter(|(l, _)| *l == Level::Error)
            .count()
    }

    /// One line per finding, then a summary line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (level, message) in &self.findings {
            let tag = match level {
                Level::Ok => "ok     ",
                Level::Warning => "warning",
                Level::Error => "error  ",
            };
            let _ = writeln!(out, "{tag} {message}");
        }
        let warnings = self
            .findings
            .iter()
            .filter(|(l, _)| *l == Level::Warning)
            .count();
        let _ = match self.errors() {
            0 => writeln!(out, "valid ({warnings} warning(s))"),
            n => writeln!(out, "invalid: {n} error(s), {warnings} warning(s)"),
        };
        out
    }
}

/// Validates the component `wasm` against the manifest at `manifest_path`.
pub fn validate(wasm: &[u8], manifest_path: &Path) -> Report {
    match std::fs::read_to_string(manifest_path) {
        Ok(text) => validate_with(wasm, manifest_path, &text),
        Err(e) => {
            let mut report = Report::default();
            report.error(format!(
                "{}: {e}; run this in the plugin's directory or pass --manifest",
                manifest_path.display()
            ));
            report
        }
    }
}

/// Validates `wasm` against a manifest given as text (`path` names it).
pub fn validate_with(wasm: &[u8], path: &Path, manifest_text: &str) -> Report {
    let mut report = Report::default();
    let manifest = match Manifest::parse(path, manifest_text) {
        Ok(m) => {
            report.ok(format!(
                "{}: plugin `{}` {}, {} capabilit{}",
                path.display(),
                m.plugin.name,
                m.plugin.version,
                m.capabilities.len(),
                if m.capabilities.len() == 1 {
                    "y"
                } else {
                    "ies"
                }
            ));
            Some(m)
        }
        Err(e) => {
            report.error(e.to_string());
            None
        }
    };
    let Some((resolve, world)) = check_binary(wasm, &mut report) else {
        return report;
    };
    let Some(manifest) = manifest else {
        return report;
    };
    let reference = reference();
    check_exports(&manifest, &resolve, world, &reference, &mut report);
    check_imports(&manifest, &resolve, world, &reference, &mut report);
    crate::footprint::check(wasm, &manifest, &mut report);
    report
}

/// Magic, layer, validity, and the component's world.
fn check_binary(wasm: &[u8], report: &mut Report) -> Option<(Resolve, WorldId)> {
    if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
        report.error("not a WebAssembly file (no \\0asm magic bytes)");
        return None;
    }
    report.ok("WebAssembly magic bytes");
    if wasm[4..8] == [1, 0, 0, 0] {
        report.error(
            "a core WebAssembly module, not a component: build for wasm32-wasip2 (which emits components) or wrap it with `wasm-tools component new`",
        );
        return None;
    }
    if wasm[4..8] != [0x0d, 0, 1, 0] {
        report.error(
            "an unknown WebAssembly version or layer; expected a component (version 0x0d, layer 1)",
        );
        return None;
    }
    report.ok("a WebAssembly component (not a core module)");
    let mut validator = wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all());
    if let Err(e) = validator.validate_all(wasm) {
        report.error(format!(
            "the component is not valid WebAssembly: {e} (a truncated file ends in an unexpected end of file)"
        ));
        return None;
    }
    report.ok(format!("valid WebAssembly ({} bytes)", wasm.len()));
    match wit_parser::decoding::decode(wasm) {
        Ok(DecodedWasm::Component(resolve, world)) => Some((resolve, world)),
        Ok(DecodedWasm::WitPackage(..)) => {
            report.error("a WIT package encoded as wasm, not a component that implements one");
            None
        }
        Err(e) => {
            report.error(format!("cannot read the component's interface: {e:#}"));
            None
        }
    }
}

/// The PRX ABI, parsed from the WIT built into this binary.
pub(crate) fn reference() -> Resolve {
    let parse = |files: &[(&str, &str)]| {
        let mut map = wit_parser::SourceMap::new();
        for (name, text) in files {
            map.push_str(name, *text);
        }
        map.parse()
            .map_err(|(_, e)| e)
            .expect("the built-in WIT parses (tests/wit_abi.rs checks it)")
    };
    let mut resolve = Resolve::default();
    resolve
        .push_groups(parse(WIT), vec![parse(HOST_WIT)])
        .expect("the built-in WIT resolves");
    resolve
}

fn world_named(resolve: &Resolve, name: &str) -> Option<WorldId> {
    resolve.worlds.iter().find_map(|(id, w)| {
        let package = w.package.map(|p| &resolve.packages[p].name)?;
        (package.namespace == "prx" && package.name == "plugin" && w.name == name).then_some(id)
    })
}

/// A world's items by their full names (`prx:plugin/tool-exports@0.1.0`).
fn items<'a>(
    resolve: &'a Resolve,
    items: impl Iterator<Item = (&'a WorldKey, &'a WorldItem)>,
) -> BTreeMap<String, &'a WorldItem> {
    items
        .map(|(key, item)| {
            let name = match (key, item) {
                (_, WorldItem::Interface { id, .. }) => resolve
                    .id_of(*id)
                    .unwrap_or_else(|| resolve.name_world_key(key)),
                _ => resolve.name_world_key(key),
            };
            (name, item)
        })
        .collect()
}

fn check_exports(
    manifest: &Manifest,
    resolve: &Resolve,
    world: WorldId,
    reference: &Resolve,
    report: &mut Report,
) {
    let exports = items(resolve, resolve.worlds[world].exports.iter());
    let mut expected = BTreeSet::new();
    for cap in &manifest.capabilities {
        let name = cap.kind.export();
        expected.insert(name);
        let Some(WorldItem::Interface { id, .. }) = exports.get(name) else {
            let has: Vec<&str> = exports.keys().map(String::as_str).collect();
            report.error(format!(
                "declares a `{kind}` capability but the component does not export {name} (it exports {}); build it for the `{kind}` world (with the PDK: export_{kind}!) or fix [[capabilities]]",
                if has.is_empty() { "nothing".to_owned() } else { has.join(", ") },
                kind = cap.kind,
            ));
            continue;
        };
        let before = report.errors();
        compare_interface(name, resolve, *id, reference, true, report);
        if report.errors() == before {
            report.ok(format!(
                "exports {name} as the `{}` capability needs",
                cap.kind
            ));
        }
    }
    for (name, item) in exports
        .iter()
        .filter(|(n, _)| !expected.contains(n.as_str()))
    {
        if is_componentize_py_init(name, item, resolve) {
            report.ok("exports componentize-py's `init` (used while it builds the component; the host never calls it)");
            continue;
        }
        report.warn(format!(
            "exports {name}, which no capability in plugin.toml uses (the host never calls it)"
        ));
    }
}

/// componentize-py leaves an unnamed interface `exports` with one
/// function, `init`, in every component it builds.
fn is_componentize_py_init(name: &str, item: &WorldItem, resolve: &Resolve) -> bool {
    let WorldItem::Interface { id, .. } = item else {
        return false;
    };
    let interface = &resolve.interfaces[*id];
    name == "exports" && interface.name.is_none() && interface.functions.keys().eq(["init"])
}

/// Checks every function of the component's `id` against the interface
/// of the same name in the ABI. `exported`: the component must have them
/// all; imported: it may use a subset.
fn compare_interface(
    name: &str,
    resolve: &Resolve,
    id: wit_parser::InterfaceId,
    reference: &Resolve,
    exported: bool,
    report: &mut Report,
) {
    let Some(expected) = reference
        .interfaces
        .iter()
        .find(|(rid, _)| reference.id_of(*rid).as_deref() == Some(name))
        .map(|(_, i)| i)
    else {
        report.error(format!(
            "{name} is not part of the PRX ABI (the host provides none of it); the component will not instantiate"
        ));
        return;
    };
    let actual = &resolve.interfaces[id];
    for (fname, want) in &expected.functions {
        match actual.functions.get(fname) {
            Some(have) => {
                let (w, h) = (signature(reference, want), signature(resolve, have));
                if w != h {
                    report.error(format!(
                        "{name}: `{fname}` has the wrong signature: the ABI says `{w}`, the component has `{h}`; rebuild against the PRX WIT"
                    ));
                }
            }
            None if exported => report.error(format!(
                "{name}: the component does not export the function `{fname}`"
            )),
            None => {}
        }
    }
    for fname in actual.functions.keys() {
        if !expected.functions.contains_key(fname) {
            report.error(format!(
                "{name}: `{fname}` is not a function of this interface in the PRX ABI"
            ));
        }
    }
}

/// The interfaces a capability's PRX world offers, by short name, with
/// this host's additions: `kv-atomic` and `cache` wherever `kv` is
/// offered. This host links every `prx:host` interface into every plugin
/// (each gated by its permission); an import beyond the world is a
/// portability warning, an import of something no host provides an error.
pub(crate) fn offered(reference: &Resolve, kind: CapabilityType) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let Some(world) = world_named(reference, kind.as_str()) else {
        return names;
    };
    for item in reference.worlds[world].imports.values() {
        if let WorldItem::Interface { id, .. } = item
            && let Some(name) = &reference.interfaces[*id].name
        {
            names.insert(name.clone());
        }
    }
    if names.contains("kv") {
        names.extend(["kv-atomic".to_owned(), "cache".to_owned()]);
    }
    names
}

/// The permissions a manifest declares, required or optional.
pub(crate) fn declared(manifest: &Manifest) -> BTreeSet<Permission> {
    manifest
        .permissions
        .required
        .iter()
        .chain(&manifest.permissions.optional)
        .copied()
        .collect()
}

/// The permission a host interface needs; `None`: always granted.
pub(crate) fn permission_for(interface: &str) -> Option<Permission> {
    match interface {
        "kv" | "kv-atomic" | "cache" => Some(Permission::Kv),
        "events" => Some(Permission::Events),
        "http-outbound" => Some(Permission::HttpOutbound),
        "memory" => Some(Permission::Memory),
        _ => None,
    }
}

fn check_imports(
    manifest: &Manifest,
    resolve: &Resolve,
    world: WorldId,
    reference: &Resolve,
    report: &mut Report,
) {
    let mut allowed = BTreeSet::new();
    for cap in &manifest.capabilities {
        allowed.extend(offered(reference, cap.kind));
    }
    let declared = declared(manifest);
    let kinds: Vec<&str> = manifest
        .capabilities
        .iter()
        .map(|c| c.kind.as_str())
        .collect();
    let mut wasi = 0;
    let mut host = Vec::new();
    for (name, item) in items(resolve, resolve.worlds[world].imports.iter()) {
        let WorldItem::Interface { id, .. } = item else {
            if matches!(item, WorldItem::Type { .. }) {
                continue;
            }
            report.error(format!(
                "imports the bare function `{name}`, which no PRX world provides; the component will not instantiate"
            ));
            continue;
        };
        let interface = &resolve.interfaces[*id];
        let package = interface.package.map(|p| &resolve.packages[p].name);
        let short = interface.name.clone().unwrap_or_default();
        match package {
            Some(p) if p.namespace == "wasi" && p.version.as_ref().is_some_and(|v| v.major == 0 && v.minor == 2) => {
                wasi += 1;
            }
            Some(p) if p.namespace == "prx" && p.name == "host" => {
                let before = report.errors();
                compare_interface(&name, resolve, *id, reference, false, report);
                if report.errors() > before {
                    continue;
                }
                if !allowed.contains(&short) {
                    report.warn(format!(
                        "imports {name}, which the PRX 0.1.0 {} world{} does not offer (it offers {}): this host links it (permissions permitting), other PRX hosts may not",
                        kinds.join(" and "),
                        if kinds.len() == 1 { "" } else { "s" },
                        allowed.iter().cloned().collect::<Vec<_>>().join(", ")
                    ));
                }
                if let Some(permission) = permission_for(&short)
                    && !declared.contains(&permission)
                {
                    report.error(format!(
                        "imports {name} but plugin.toml does not declare the `{permission}` permission; add it to [permissions].required (or optional), or every call will be refused"
                    ));
                    continue;
                }
                host.push(short);
            }
            _ => report.error(format!(
                "imports {name}, which is outside every PRX world (the host provides prx:host and WASI 0.2 only); the component will not instantiate"
            )),
        }
    }
    if !host.is_empty() {
        report.ok(format!(
            "imports host interfaces it may use: {}",
            host.join(", ")
        ));
    }
    if wasi > 0 {
        report.ok(format!(
            "imports {wasi} WASI 0.2 interface(s) (the host gives them without files, sockets or environment)"
        ));
    }
}

/// `func(a: string, b: list<u8>) -> result<string, string>`, with named
/// types expanded so two separately defined types compare by structure.
fn signature(resolve: &Resolve, f: &Function) -> String {
    let params: Vec<String> = f
        .params
        .iter()
        .map(|p| format!("{}: {}", p.name, ty(resolve, &p.ty)))
        .collect();
    match &f.result {
        Some(r) => format!("func({}) -> {}", params.join(", "), ty(resolve, r)),
        None => format!("func({})", params.join(", ")),
    }
}

fn ty(resolve: &Resolve, t: &Type) -> String {
    let opt = |t: &Option<Type>| {
        t.as_ref()
            .map(|t| ty(resolve, t))
            .unwrap_or_else(|| "_".into())
    };
    match t {
        Type::Bool => "bool".into(),
        Type::U8 => "u8".into(),
        Type::U16 => "u16".into(),
        Type::U32 => "u32".into(),
        Type::U64 => "u64".into(),
        Type::S8 => "s8".into(),
        Type::S16 => "s16".into(),
        Type::S32 => "s32".into(),
        Type::S64 => "s64".into(),
        Type::F32 => "f32".into(),
        Type::F64 => "f64".into(),
        Type::Char => "char".into(),
        Type::String => "string".into(),
        Type::ErrorContext => "error-context".into(),
        Type::Id(id) => {
            let def = &resolve.types[*id];
            let name = def.name.as_deref().unwrap_or("");
            match &def.kind {
                TypeDefKind::Record(r) => format!(
                    "record {name} {{{}}}",
                    joined(
                        r.fields
                            .iter()
                            .map(|f| format!("{}: {}", f.name, ty(resolve, &f.ty)))
                    )
                ),
                TypeDefKind::Variant(v) => format!(
                    "variant {name} {{{}}}",
                    joined(v.cases.iter().map(|c| match &c.ty {
                        Some(t) => format!("{}({})", c.name, ty(resolve, t)),
                        None => c.name.clone(),
                    }))
                ),
                TypeDefKind::Enum(e) => {
                    format!(
                        "enum {name} {{{}}}",
                        joined(e.cases.iter().map(|c| c.name.clone()))
                    )
                }
                TypeDefKind::Flags(f) => {
                    format!(
                        "flags {name} {{{}}}",
                        joined(f.flags.iter().map(|c| c.name.clone()))
                    )
                }
                TypeDefKind::Tuple(t) => {
                    format!("tuple<{}>", joined(t.types.iter().map(|t| ty(resolve, t))))
                }
                TypeDefKind::Option(t) => format!("option<{}>", ty(resolve, t)),
                TypeDefKind::Result(r) => format!("result<{}, {}>", opt(&r.ok), opt(&r.err)),
                TypeDefKind::List(t) => format!("list<{}>", ty(resolve, t)),
                TypeDefKind::Map(k, v) => format!("map<{}, {}>", ty(resolve, k), ty(resolve, v)),
                TypeDefKind::FixedLengthList(t, n) => format!("list<{}, {n}>", ty(resolve, t)),
                TypeDefKind::Future(t) => format!("future<{}>", opt(t)),
                TypeDefKind::Stream(t) => format!("stream<{}>", opt(t)),
                TypeDefKind::Type(t) => ty(resolve, t),
                TypeDefKind::Resource => format!("resource {name}"),
                TypeDefKind::Handle(wit_parser::Handle::Own(r)) => {
                    format!("own<{}>", ty(resolve, &Type::Id(*r)))
                }
                TypeDefKind::Handle(wit_parser::Handle::Borrow(r)) => {
                    format!("borrow<{}>", ty(resolve, &Type::Id(*r)))
                }
                TypeDefKind::Unknown => "unknown".into(),
            }
        }
    }
}

/// Items separated by `, `.
fn joined(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
