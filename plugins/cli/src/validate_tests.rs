//! Components with chosen faults, built from WIT with wit-component (a
//! dummy core module behind the chosen world), against real manifests.

use super::*;

/// A component for `world` of the WIT package `main`, which may use the
/// PRX packages; `abi: false` leaves them out (for a fake `prx:plugin`).
fn component(main: &str, world: &str, abi: bool) -> Vec<u8> {
    let module = core_module(main, world, abi);
    wit_component::ComponentEncoder::default()
        .module(&module)
        .expect("module")
        .validate(true)
        .encode()
        .expect("component")
}

fn core_module(main: &str, world: &str, abi: bool) -> Vec<u8> {
    let parse = |files: &[(&str, &str)]| {
        let mut map = wit_parser::SourceMap::new();
        for (name, text) in files {
            map.push_str(name, *text);
        }
        map.parse().map_err(|(_, e)| e).expect("test WIT parses")
    };
    let mut resolve = Resolve::default();
    let deps = if abi {
        vec![parse(HOST_WIT), parse(WIT)]
    } else {
        Vec::new()
    };
    let pkg = resolve
        .push_groups(parse(&[("main.wit", main)]), deps)
        .expect("test WIT resolves");
    let world = resolve.select_world(&[pkg], Some(world)).expect("world");
    let mut module =
        wit_component::dummy_module(&resolve, world, wit_parser::ManglingAndAbi::Standard32);
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .expect("metadata");
    module
}

fn manifest(kind: &str, permissions: &str) -> String {
    let events = if kind == "hook" {
        "events = [\"a.*\"]\n"
    } else {
        ""
    };
    format!(
        "[plugin]\nname = \"t\"\nversion = \"0.1.0\"\nwasm = \"plugin.wasm\"\n\n[[capabilities]]\ntype = \"{kind}\"\nname = \"t\"\n{events}\n[permissions]\nrequired = [{permissions}]\n"
    )
}

fn check(wasm: &[u8], manifest: &str) -> Report {
    validate_with(wasm, Path::new("plugin.toml"), manifest)
}

fn errors(report: &Report) -> Vec<&str> {
    report
        .findings
        .iter()
        .filter(|(l, _)| *l == Level::Error)
        .map(|(_, m)| m.as_str())
        .collect()
}

const TOOL: &str = "package test:t;\nworld w {\n  import prx:host/kv@0.1.0;\n  import prx:host/log@0.1.0;\n  export prx:plugin/tool-exports@0.1.0;\n}\n";

#[test]
fn a_tool_that_matches_its_manifest_is_valid() {
    let report = check(&component(TOOL, "w", true), &manifest("tool", "\"kv\""));
    assert_eq!(report.errors(), 0, "{}", report.render());
    let text = report.render();
    assert!(
        text.contains("exports prx:plugin/tool-exports@0.1.0 as the `tool` capability needs"),
        "{text}"
    );
    assert!(
        text.contains("imports host interfaces it may use: kv, log"),
        "{text}"
    );
    assert!(text.ends_with("valid (0 warning(s))\n"), "{text}");
}

#[test]
fn a_core_module_is_refused() {
    let report = check(&core_module(TOOL, "w", true), &manifest("tool", "\"kv\""));
    assert_eq!(errors(&report).len(), 1, "{}", report.render());
    assert!(errors(&report)[0].contains("a core WebAssembly module, not a component"));
}

#[test]
fn a_missing_export_is_named_with_what_there_is() {
    let report = check(&component(TOOL, "w", true), &manifest("hook", "\"kv\""));
    let errors = errors(&report);
    assert!(
        errors.iter().any(|e| e.contains(
            "declares a `hook` capability but the component does not export prx:plugin/hook-exports@0.1.0 (it exports prx:plugin/tool-exports@0.1.0)"
        )),
        "{}",
        report.render()
    );
    assert!(
        report
            .render()
            .contains("warning exports prx:plugin/tool-exports@0.1.0, which no capability")
    );
}

#[test]
fn a_wrong_signature_is_shown_beside_the_right_one() {
    // A component built against a different `prx:plugin` WIT.
    let fake = "package prx:plugin@0.1.0;\ninterface tool-exports {\n  record tool-spec { name: string, description: string, parameters-schema: string }\n  record plugin-result { success: bool, output: string, error: option<string> }\n  get-spec: func() -> tool-spec;\n  execute: func(args: list<u8>) -> plugin-result;\n}\nworld w {\n  export tool-exports;\n}\n";
    let report = check(&component(fake, "w", false), &manifest("tool", ""));
    let errors = errors(&report);
    assert_eq!(errors.len(), 1, "{}", report.render());
    assert!(
        errors[0].contains("`execute` has the wrong signature: the ABI says `func(args: string) -> record plugin-result")
            && errors[0].contains("the component has `func(args: list<u8>) -> record plugin-result"),
        "{}",
        errors[0]
    );
}

#[test]
fn imports_outside_the_world_or_without_their_permission_are_errors() {
    // http-outbound is not in the PRX hook world: this host links it, so
    // it is a portability warning, not an error.
    let hook = "package test:t;\nworld w {\n  import prx:host/http-outbound@0.1.0;\n  export prx:plugin/hook-exports@0.1.0;\n}\n";
    let with_http = format!(
        "{}http_allowlist = [\"https://api.example.com\"]\n",
        manifest("hook", "\"http-outbound\"")
    );
    let report = check(&component(hook, "w", true), &with_http);
    assert_eq!(report.errors(), 0, "{}", report.render());
    assert!(
        report.render().contains("warning imports prx:host/http-outbound@0.1.0, which the PRX 0.1.0 hook world does not offer (it offers cache, config, events, kv, kv-atomic, log)"),
        "{}",
        report.render()
    );

    // A prx:host interface that does not exist.
    let unknown = "package prx:host@0.1.0;\ninterface shell { run: func(cmd: string) -> string; }\nworld w {\n  import shell;\n}\n";
    let report = check(&component(unknown, "w", false), &manifest("hook", ""));
    assert!(
        errors_of(&report)
            .iter()
            .any(|e| e.contains("prx:host/shell@0.1.0 is not part of the PRX ABI")),
        "{}",
        report.render()
    );

    // An interface no host provides.
    let rogue = "package test:t;\ninterface backdoor { open: func() -> u32; }\nworld w {\n  import backdoor;\n  export prx:plugin/tool-exports@0.1.0;\n}\n";
    let report = check(&component(rogue, "w", true), &manifest("tool", ""));
    assert!(
        errors_of(&report)
            .iter()
            .any(|e| e.contains("imports test:t/backdoor, which is outside every PRX world")),
        "{}",
        report.render()
    );

    // kv used without declaring it.
    let report = check(&component(TOOL, "w", true), &manifest("tool", ""));
    assert!(
        errors_of(&report).iter().any(|e| e.contains(
            "imports prx:host/kv@0.1.0 but plugin.toml does not declare the `kv` permission"
        )),
        "{}",
        report.render()
    );
}

fn errors_of(report: &Report) -> Vec<String> {
    errors(report).into_iter().map(str::to_owned).collect()
}

#[test]
fn truncated_files_and_bad_manifests_are_reported() {
    let wasm = component(TOOL, "w", true);
    let report = check(&wasm[..wasm.len() / 2], &manifest("tool", "\"kv\""));
    assert!(
        errors(&report)
            .iter()
            .any(|e| e.contains("not valid WebAssembly")),
        "{}",
        report.render()
    );
    let report = check(b"hello", &manifest("tool", "\"kv\""));
    assert!(errors(&report)[0].contains("no \\0asm magic"));
    let report = check(&wasm, "[plugin]\nname = 3\n");
    assert!(
        errors(&report)[0].starts_with("plugin.toml: line 2"),
        "{}",
        report.render()
    );
}
