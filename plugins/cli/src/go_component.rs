//! From the core module standard Go builds to a component: the world's
//! type information embedded, then wit-component wraps the module with the
//! WASI preview-1 reactor adapter of the wasmtime the worker runs.
//!
//! One thing first. The adapter allocates its state and its stack on the
//! first WASI call, which the Go runtime makes during its own start
//! (`_initialize`): through a Go `cabi_realloc`, Go code would run before
//! the runtime can run it (the component traps), and in pages the adapter
//! grows itself, the Go heap (which grows from the end of its static data)
//! overwrites them. So the Go SDK reserves an array in its static data,
//! starting with [`MARKER`], and this module adds a small allocator over
//! it to the module, exported as `cabi_realloc_adapter`, the name
//! wit-component gives the adapter. The SDK's own allocators are
//! `cabi_export_realloc` and `cabi_import_realloc`.

use std::path::Path;

use anyhow::{Context, Result, bail};
use wasm_encoder::reencode::{Error as ReencodeError, Reencode, utils};
use wasm_encoder::{
    BlockType, CodeSection, ConstExpr, ExportKind, ExportSection, Function, FunctionSection,
    GlobalSection, GlobalType, Instruction, TypeSection, ValType,
};
use wasmparser::{DataKind, Operator, Parser, Payload, TypeRef};

/// The first bytes of the SDK's arena (plugins/pdk/go/abi_wasm.go).
pub const MARKER: &[u8] = b"prx:wasi-adapter-arena:";
/// Its size, as the SDK declares it.
pub const ARENA: u32 = 256 << 10;

/// What the allocator needs to know of the module.
struct Layout {
    types: u32,
    functions: u32,
    globals: u32,
    arena: u32,
}

fn layout(core: &[u8]) -> Result<Layout> {
    let mut at = Layout {
        types: 0,
        functions: 0,
        globals: 0,
        arena: 0,
    };
    for payload in Parser::new(0).parse_all(core) {
        match payload? {
            Payload::TypeSection(s) => at.types = s.count(),
            Payload::ImportSection(s) => {
                for import in s.into_imports() {
                    match import?.ty {
                        TypeRef::Func(_) => at.functions += 1,
                        TypeRef::Global(_) => at.globals += 1,
                        _ => {}
                    }
                }
            }
            Payload::FunctionSection(s) => at.functions += s.count(),
            Payload::GlobalSection(s) => at.globals += s.count(),
            Payload::DataSection(s) => {
                for data in s {
                    let data = data?;
                    let DataKind::Active { offset_expr, .. } = data.kind else {
                        continue;
                    };
                    let Some(found) = data.data.windows(MARKER.len()).position(|w| w == MARKER)
                    else {
                        continue;
                    };
                    let Operator::I32Const { value } = offset_expr.get_operators_reader().read()?
                    else {
                        bail!("the Go SDK's arena is in a data segment at a computed offset");
                    };
                    at.arena = (value as u32).saturating_add(found as u32);
                }
            }
            _ => {}
        }
    }
    if at.arena == 0 {
        bail!(
            "the module has no WASI adapter arena: build it with the Go SDK prx-plugin carries (import prx.local/pdk)"
        );
    }
    Ok(at)
}

/// Re-encodes the module with the allocator appended: a type, a mutable
/// global (the next free byte), a function and its export.
struct AddAllocator(Layout);

type Reencoded = Result<(), ReencodeError<std::convert::Infallible>>;

impl Reencode for AddAllocator {
    type Error = std::convert::Infallible;

    fn parse_type_section(
        &mut self,
        types: &mut TypeSection,
        section: wasmparser::TypeSectionReader<'_>,
    ) -> Reencoded {
        utils::parse_type_section(self, types, section)?;
        types.ty().function([ValType::I32; 4], [ValType::I32]);
        Ok(())
    }

    fn parse_function_section(
        &mut self,
        functions: &mut FunctionSection,
        section: wasmparser::FunctionSectionReader<'_>,
    ) -> Reencoded {
        utils::parse_function_section(self, functions, section)?;
        functions.function(self.0.types);
        Ok(())
    }

    fn parse_global_section(
        &mut self,
        globals: &mut GlobalSection,
        section: wasmparser::GlobalSectionReader<'_>,
    ) -> Reencoded {
        utils::parse_global_section(self, globals, section)?;
        let next = GlobalType {
            val_type: ValType::I32,
            mutable: true,
            shared: false,
        };
        globals.global(next, &ConstExpr::i32_const(self.0.arena as i32));
        Ok(())
    }

    fn parse_export_section(
        &mut self,
        exports: &mut ExportSection,
        section: wasmparser::ExportSectionReader<'_>,
    ) -> Reencoded {
        utils::parse_export_section(self, exports, section)?;
        exports.export("cabi_realloc_adapter", ExportKind::Func, self.0.functions);
        Ok(())
    }

    fn parse_code_section(
        &mut self,
        code: &mut CodeSection,
        section: wasmparser::CodeSectionReader<'_>,
    ) -> Reencoded {
        utils::parse_code_section(self, code, section)?;
        code.function(&allocator(self.0.globals, self.0.arena + ARENA));
        Ok(())
    }
}

/// `(old, old_size, align, new_size) -> ptr`: the next `new_size` bytes of
/// the arena at `align`; a reallocation (never asked by the adapter) or an
/// arena used up traps.
fn allocator(next: u32, end: u32) -> Function {
    use Instruction as I;
    let p = 4;
    let mut f = Function::new([(1, ValType::I32)]);
    for instruction in [
        I::LocalGet(0),
        I::If(BlockType::Empty),
        I::Unreachable,
        I::End,
        // p = (next + align - 1) & -align
        I::GlobalGet(next),
        I::LocalGet(2),
        I::I32Add,
        I::I32Const(1),
        I::I32Sub,
        I::I32Const(0),
        I::LocalGet(2),
        I::I32Sub,
        I::I32And,
        I::LocalSet(p),
        // p + new_size past the end: out of arena
        I::LocalGet(p),
        I::LocalGet(3),
        I::I32Add,
        I::I32Const(end as i32),
        I::I32GtU,
        I::If(BlockType::Empty),
        I::Unreachable,
        I::End,
        I::LocalGet(p),
        I::LocalGet(3),
        I::I32Add,
        I::GlobalSet(next),
        I::LocalGet(p),
        I::End,
    ] {
        f.instruction(&instruction);
    }
    f
}

/// The component of the Go core module `core`, for the world `wit`
/// (a directory written by `crate::world::write`).
pub fn componentize(core: &[u8], wit: &Path) -> Result<Vec<u8>> {
    let mut module = wasm_encoder::Module::new();
    AddAllocator(layout(core)?)
        .parse_core_module(&mut module, Parser::new(0), core)
        .map_err(|e| anyhow::anyhow!("{e:?}"))
        .context("adding the WASI adapter's allocator to the module")?;
    let mut module = module.finish();
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve.push_dir(wit)?;
    let world = resolve.select_world(&[package], Some("plugin"))?;
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )?;
    let adapter = wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER;
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&module)?
        .adapter("wasi_snapshot_preview1", adapter)?
        .encode()
        .context("wit-component could not make a component of the module (an import its world lacks is a permission plugin.toml does not declare)")
}
