//! The JavaScript SDK checked against `wit/`: every host function is
//! called by the SDK under the name componentize-js gives it, and no name
//! the SDK calls is missing from the WIT; every exported function and
//! record field is produced by the SDK's export objects; the TypeScript
//! declarations of the WIT records have exactly the WIT's fields. A
//! change to `wit/` that the SDK does not follow fails here.

use std::collections::BTreeSet;

use wit_parser::{Resolve, TypeDefKind, TypeOwner};

const BACKEND: &str = include_str!("../../pdk/javascript/src/backend.js");
const WORLDS: &str = include_str!("../../pdk/javascript/src/worlds.js");
const TYPES: &str = include_str!("../../pdk/javascript/types/index.d.ts");

/// `parameters-schema` -> `parametersSchema`, as componentize-js names it.
fn camel(name: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in name.chars() {
        if c == '-' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn interface<'a>(resolve: &'a Resolve, package: &str, name: &str) -> &'a wit_parser::Interface {
    resolve
        .interfaces
        .iter()
        .map(|(_, i)| i)
        .find(|i| {
            i.name.as_deref() == Some(name)
                && i.package
                    .is_some_and(|p| resolve.packages[p].name.name == package)
        })
        .unwrap_or_else(|| panic!("prx:{package}/{name} in wit/"))
}

/// The fields of the WIT record `record` of `prx:package/iface`.
fn record(resolve: &Resolve, package: &str, iface: &str, record: &str) -> BTreeSet<String> {
    let id = interface(resolve, package, iface).types[record];
    match &resolve.types[id].kind {
        TypeDefKind::Record(r) => r.fields.iter().map(|f| camel(&f.name)).collect(),
        other => panic!("{record} is a {other:?}"),
    }
}

/// The fields of `interface NAME { ... }` in the SDK's declarations.
fn declared(name: &str) -> BTreeSet<String> {
    let start = TYPES
        .find(&format!("export interface {name} {{"))
        .unwrap_or_else(|| panic!("interface {name} in types/index.d.ts"));
    let body = &TYPES[start..];
    let body = &body[body.find('{').expect("a body") + 1..body.find('}').expect("its end")];
    body.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("/**") && !l.starts_with('*') && !l.is_empty())
        .filter_map(|l| l.split([':', '?', '(', '<']).next())
        .map(|f| f.trim().to_owned())
        .collect()
}

#[test]
fn the_backend_calls_every_host_function_by_its_javascript_name() {
    let resolve = crate::validate::reference();
    let mut wit = BTreeSet::new();
    for (_, i) in resolve.interfaces.iter() {
        let Some(package) = i.package else { continue };
        if resolve.packages[package].name.name != "host" {
            continue;
        }
        let iface = i.name.clone().expect("a named interface");
        for name in i.functions.keys() {
            wit.insert((iface.clone(), camel(name)));
        }
    }
    // What backend.js calls: `call("kv", "listKeys", ...)`, and the log.
    let mut called = BTreeSet::from([("log".to_owned(), "log".to_owned())]);
    for piece in BACKEND.split("this.call(\"").skip(1) {
        let mut parts = piece.split('"');
        let iface = parts.next().expect("an interface");
        parts.next();
        let function = parts.next().expect("a function");
        called.insert((iface.to_owned(), function.to_owned()));
    }
    assert!(BACKEND.contains("this.iface(\"log\").log(level, message)"));
    let missing: Vec<_> = wit.difference(&called).collect();
    assert!(
        missing.is_empty(),
        "host functions the SDK never calls: {missing:?}"
    );
    let unknown: Vec<_> = called.difference(&wit).collect();
    assert!(
        unknown.is_empty(),
        "the SDK calls what wit/ lacks: {unknown:?}"
    );
}

#[test]
fn the_export_objects_give_every_exported_function_and_field() {
    let resolve = crate::validate::reference();
    for iface in [
        "tool-exports",
        "hook-exports",
        "middleware-exports",
        "cron-exports",
        "provider-exports",
        "storage-exports",
        "module-exports",
    ] {
        let i = interface(&resolve, "plugin", iface);
        assert!(
            WORLDS.contains(&format!(
                "{}: \"{}\"",
                iface.split('-').next().unwrap(),
                camel(iface)
            )),
            "EXPORT_NAMES lacks {iface}"
        );
        for function in i.functions.keys() {
            let name = camel(function);
            assert!(
                WORLDS.contains(&format!("{name}:")) || WORLDS.contains(&format!("{name}(")),
                "worlds.js gives no {iface}.{name}"
            );
        }
        for (_, id) in i.types.iter() {
            if let TypeDefKind::Record(r) = &resolve.types[*id].kind {
                for field in &r.fields {
                    let name = camel(&field.name);
                    // `name: value`, or shorthand `{ name, ...` / `..., name }`.
                    let set = [
                        format!("{name}:"),
                        format!("{{ {name}"),
                        format!(", {name} }}"),
                    ];
                    assert!(
                        set.iter().any(|s| WORLDS.contains(s)),
                        "worlds.js never sets {iface} record field {name}"
                    );
                }
                assert!(matches!(resolve.types[*id].owner, TypeOwner::Interface(_)));
            }
        }
    }
}

#[test]
fn the_declared_records_have_the_fields_of_wit() {
    let resolve = crate::validate::reference();
    for (declared_name, package, iface, wit_record) in [
        ("ToolSpec", "plugin", "tool-exports", "tool-spec"),
        ("PluginResult", "plugin", "tool-exports", "plugin-result"),
        ("ChatMessage", "plugin", "provider-exports", "chat-message"),
        ("ToolCall", "plugin", "provider-exports", "tool-call"),
        (
            "ChatResponse",
            "plugin",
            "provider-exports",
            "chat-response",
        ),
        ("StoredMemory", "plugin", "storage-exports", "memory-entry"),
        ("MemoryEntry", "host", "memory", "memory-entry"),
    ] {
        assert_eq!(
            declared(declared_name),
            record(&resolve, package, iface, wit_record),
            "{declared_name} against {wit_record}"
        );
    }
    // The response adds helpers (text, json, header) to the WIT's fields.
    let http = record(&resolve, "host", "http-outbound", "http-response");
    assert!(declared("HttpResponse").is_superset(&http));
    assert_eq!(camel("parameters-schema"), "parametersSchema");
}
