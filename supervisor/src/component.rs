//! The first eight bytes of a plugin's component, compared with constants
//! before a worker is started for it. The supervisor goes no further into
//! untrusted wasm (docs/security-model.md): whether the rest is whole and
//! valid is for the worker's compiler, inside the sandbox, to find.

/// `\0asm`, then the version and layer of a component.
const COMPONENT_HEADER: [u8; 8] = *b"\0asm\x0d\0\x01\0";
/// `\0asm`, then version 1 of a core module.
const MODULE_HEADER: [u8; 8] = *b"\0asm\x01\0\0\0";

/// Refuses what is plainly not a component: an empty file (still being
/// written), a core module, anything else.
pub fn check_header(wasm: &[u8]) -> Result<(), String> {
    match wasm.get(..8) {
        Some(header) if header == COMPONENT_HEADER => Ok(()),
        Some(header) if header == MODULE_HEADER => Err(
            "is a core WebAssembly module, not a component; build it for wasm32-wasip2 (which emits components) or wrap it with `wasm-tools component new`".into(),
        ),
        _ if wasm.len() < 8 && COMPONENT_HEADER.starts_with(wasm) => Err(
            "is empty or cut short (still being written?); write the new file beside it and rename it into place".into(),
        ),
        _ => Err("is not a WebAssembly component (no component header); build the plugin for wasm32-wasip2".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_pass_and_everything_else_is_named() {
        check_header(b"\0asm\x0d\0\x01\0 and the rest").unwrap();
        for (wasm, expected) in [
            (&b"\0asm\x01\0\0\0"[..], "core WebAssembly module"),
            (b"", "empty or cut short"),
            (b"\0as", "empty or cut short"),
            (b"#!/bin/sh\necho hi\n", "no component header"),
            (b"\0asm\x0e\0\x01\0", "no component header"),
        ] {
            let e = check_header(wasm).unwrap_err();
            assert!(e.contains(expected), "{wasm:?}: {e}");
        }
    }
}
