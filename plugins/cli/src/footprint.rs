//! The memory a component starts with, against `max_memory_mb`. A
//! language runtime snapshotted into the component (componentize-js's
//! JavaScript engine, componentize-py's interpreter) begins with its
//! linear memory already several MiB large; a manifest asking for less
//! could never be instantiated, and says so here instead of at load.

use prx_supervisor::manifest::Manifest;
use wasmparser::{Parser, Payload};

use crate::validate::Report;

const MIB: u64 = 1024 * 1024;
const PAGE: u64 = 64 * 1024;

/// The largest initial size, in bytes, of a memory any core module of
/// `wasm` defines (what instantiating it allocates at once).
pub fn initial_memory(wasm: &[u8]) -> u64 {
    let mut largest = 0;
    for payload in Parser::new(0).parse_all(wasm).flatten() {
        if let Payload::MemorySection(memories) = payload {
            for memory in memories.into_iter().flatten() {
                let page = memory.page_size_log2.map_or(PAGE, |log2| 1u64 << log2);
                largest = largest.max(memory.initial.saturating_mul(page));
            }
        }
    }
    largest
}

pub fn check(wasm: &[u8], manifest: &Manifest, report: &mut Report) {
    let initial = initial_memory(wasm);
    let limit = manifest.resources.max_memory_mb.saturating_mul(MIB);
    let mib = |bytes: u64| bytes as f64 / MIB as f64;
    if initial > limit {
        report.error(format!(
            "its memory starts at {:.1} MiB (what the component was built with, a language runtime's snapshot included), more than [resources].max_memory_mb = {}: it could never start; raise max_memory_mb to at least {}",
            mib(initial),
            manifest.resources.max_memory_mb,
            (initial.div_ceil(MIB) + 4).next_power_of_two()
        ));
    } else {
        report.ok(format!(
            "its memory starts at {:.1} MiB, within max_memory_mb = {}",
            mib(initial),
            manifest.resources.max_memory_mb
        ));
    }
}
