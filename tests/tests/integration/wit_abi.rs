//! `wit/` is the PRX 0.1.0 ABI: it parses with standard tooling as it is,
//! and every world and function has exactly the signature plugins built for
//! PRX 0.1.0 were compiled against (docs/host-functions.md). A change here
//! would break binary compatibility, so this test spells the ABI out.

use std::collections::BTreeMap;
use std::path::Path;

use wit_parser::{Function, Resolve, Type, TypeDefKind, WorldItem, WorldKey};

fn resolve() -> (Resolve, wit_parser::PackageId) {
    let mut resolve = Resolve::default();
    let (pkg, _) = resolve
        .push_dir(Path::new(env!("PRX_ROOT")).join("wit"))
        .expect("wit/ parses with wit-parser as it is");
    (resolve, pkg)
}

/// A WIT-like rendering of a type, expanding records and enums.
fn ty(resolve: &Resolve, t: &Type) -> String {
    match t {
        Type::Bool => "bool".into(),
        Type::U8 => "u8".into(),
        Type::U16 => "u16".into(),
        Type::U32 => "u32".into(),
        Type::U64 => "u64".into(),
        Type::S64 => "s64".into(),
        Type::F64 => "f64".into(),
        Type::String => "string".into(),
        Type::Id(id) => {
            let def = &resolve.types[*id];
            match &def.kind {
                TypeDefKind::Record(r) => format!(
                    "record {} {{{}}}",
                    def.name.as_deref().unwrap_or("?"),
                    r.fields
                        .iter()
                        .map(|f| format!("{}: {}", f.name, ty(resolve, &f.ty)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                TypeDefKind::Enum(e) => format!(
                    "enum {} {{{}}}",
                    def.name.as_deref().unwrap_or("?"),
                    e.cases
                        .iter()
                        .map(|c| c.name.clone())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                TypeDefKind::List(t) => format!("list<{}>", ty(resolve, t)),
                TypeDefKind::Option(t) => format!("option<{}>", ty(resolve, t)),
                TypeDefKind::Tuple(t) => format!(
                    "tuple<{}>",
                    t.types
                        .iter()
                        .map(|t| ty(resolve, t))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                TypeDefKind::Result(r) => format!(
                    "result<{}, {}>",
                    r.ok.as_ref().map(|t| ty(resolve, t)).unwrap_or("_".into()),
                    r.err.as_ref().map(|t| ty(resolve, t)).unwrap_or("_".into())
                ),
                TypeDefKind::Type(t) => ty(resolve, t),
                other => panic!("unexpected type in the PRX ABI: {other:?}"),
            }
        }
        other => panic!("unexpected type in the PRX ABI: {other:?}"),
    }
}

fn signature(resolve: &Resolve, f: &Function) -> String {
    let params = f
        .params
        .iter()
        .map(|p| format!("{}: {}", p.name, ty(resolve, &p.ty)))
        .collect::<Vec<_>>()
        .join(", ");
    match &f.result {
        Some(r) => format!("{}({params}) -> {}", f.name, ty(resolve, r)),
        None => format!("{}({params})", f.name),
    }
}

/// Every function of an interface, by its qualified name.
fn interface(resolve: &Resolve, qualified: &str) -> Vec<String> {
    let id = resolve
        .interfaces
        .iter()
        .find(|(id, _)| resolve.id_of(*id).as_deref() == Some(qualified))
        .map(|(id, _)| id)
        .unwrap_or_else(|| panic!("interface {qualified} is missing"));
    resolve.interfaces[id]
        .functions
        .values()
        .map(|f| signature(resolve, f))
        .collect()
}

#[test]
fn host_interfaces_have_the_prx_signatures() {
    let (resolve, _) = resolve();
    let expected: BTreeMap<&str, Vec<&str>> = BTreeMap::from([
        (
            "prx:host/log@0.1.0",
            vec!["log(level: enum level {trace, debug, info, warn, error}, message: string)"],
        ),
        (
            "prx:host/config@0.1.0",
            vec![
                "get(key: string) -> option<string>",
                "get-all() -> list<tuple<string, string>>",
            ],
        ),
        (
            "prx:host/kv@0.1.0",
            vec![
                "get(key: string) -> option<list<u8>>",
                "set(key: string, value: list<u8>) -> result<_, string>",
                "delete(key: string) -> result<bool, string>",
                "list-keys(prefix: string) -> list<string>",
            ],
        ),
        (
            "prx:host/events@0.1.0",
            vec![
                "publish(topic: string, payload: string) -> result<_, string>",
                "subscribe(topic-pattern: string) -> result<u64, string>",
                "unsubscribe(subscription-id: u64) -> result<_, string>",
            ],
        ),
        (
            "prx:host/http-outbound@0.1.0",
            vec![
                "request(method: string, url: string, headers: list<tuple<string, string>>, body: option<list<u8>>) -> result<record http-response {status: u16, headers: list<tuple<string, string>>, body: list<u8>}, string>",
            ],
        ),
        (
            "prx:host/memory@0.1.0",
            vec![
                "store(text: string, category: string) -> result<string, string>",
                "recall(query: string, limit: u32) -> result<list<record memory-entry {id: string, text: string, category: string, importance: f64}>, string>",
            ],
        ),
    ]);
    for (name, functions) in expected {
        assert_eq!(interface(&resolve, name), functions, "{name}");
    }
}

#[test]
fn export_interfaces_have_the_prx_signatures() {
    let (resolve, _) = resolve();
    let spec = "record tool-spec {name: string, description: string, parameters-schema: string}";
    let result = "record plugin-result {success: bool, output: string, error: option<string>}";
    let message = "record chat-message {role: string, content: string}";
    let response = "record chat-response {text: option<string>, tool-calls: list<record tool-call {id: string, name: string, arguments: string}>}";
    let entry = "record memory-entry {id: string, key: string, content: string, category: string, timestamp: string, score: option<f64>}";
    let expected: BTreeMap<&str, Vec<String>> = BTreeMap::from([
        ("prx:plugin/tool-exports@0.1.0", vec![
            format!("get-spec() -> {spec}"),
            format!("execute(args: string) -> {result}"),
        ]),
        ("prx:plugin/hook-exports@0.1.0", vec![
            "on-event(event: string, payload-json: string) -> result<_, string>".into(),
        ]),
        ("prx:plugin/middleware-exports@0.1.0", vec![
            "process(stage: string, data-json: string) -> result<string, string>".into(),
        ]),
        ("prx:plugin/cron-exports@0.1.0", vec!["run() -> result<string, string>".into()]),
        ("prx:plugin/provider-exports@0.1.0", vec![
            "name() -> string".into(),
            format!("chat(messages: list<{message}>, model: string, temperature: f64) -> result<{response}, string>"),
        ]),
        ("prx:plugin/storage-exports@0.1.0", vec![
            "name() -> string".into(),
            "store-memory(key: string, content: string, category: string, session-id: option<string>) -> result<_, string>".into(),
            format!("recall-memory(query: string, limit: u32, session-id: option<string>) -> result<list<{entry}>, string>"),
            "forget-memory(key: string) -> result<bool, string>".into(),
            "count-memories() -> result<u32, string>".into(),
            "health-check() -> bool".into(),
        ]),
    ]);
    for (name, functions) in expected {
        assert_eq!(interface(&resolve, name), functions, "{name}");
    }
}

#[test]
fn worlds_import_and_export_what_prx_promises() {
    let (resolve, pkg) = resolve();
    let host = |names: &[&str]| -> Vec<String> {
        names
            .iter()
            .map(|n| format!("prx:host/{n}@0.1.0"))
            .collect()
    };
    let export = |n: &str| vec![format!("prx:plugin/{n}-exports@0.1.0")];
    let expected: Vec<(&str, Vec<String>, Vec<String>)> = vec![
        (
            "tool",
            host(&["log", "config", "kv", "http-outbound", "memory", "events"]),
            export("tool"),
        ),
        (
            "middleware",
            host(&["log", "config", "kv", "events"]),
            export("middleware"),
        ),
        (
            "hook",
            host(&["log", "config", "kv", "events"]),
            export("hook"),
        ),
        (
            "cron",
            host(&["log", "config", "kv", "events"]),
            export("cron"),
        ),
        (
            "provider",
            host(&["log", "config", "http-outbound", "events"]),
            export("provider"),
        ),
        (
            "storage",
            host(&["log", "config", "http-outbound", "events"]),
            export("storage"),
        ),
        ("base-plugin", host(&["log", "config", "kv"]), vec![]),
    ];
    for (world, imports, exports) in expected {
        let id = resolve
            .select_world(&[pkg], Some(world))
            .unwrap_or_else(|e| panic!("world {world}: {e}"));
        let w = &resolve.worlds[id];
        let list = |items: &mut dyn Iterator<Item = (&WorldKey, &WorldItem)>| -> Vec<String> {
            items
                .map(|(key, item)| match (key, item) {
                    (WorldKey::Interface(id), WorldItem::Interface { .. }) => {
                        resolve.id_of(*id).expect("named interface")
                    }
                    (key, _) => panic!("world {world} has a non-interface item {key:?}"),
                })
                .collect()
        };
        assert_eq!(list(&mut w.imports.iter()), imports, "imports of {world}");
        assert_eq!(list(&mut w.exports.iter()), exports, "exports of {world}");
    }
}
