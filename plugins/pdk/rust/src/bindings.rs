//! Raw bindings generated from the PRX 0.1.0 WIT in the repository's `wit/`.
//!
//! `host` holds the imports, shared by every world's bindings (so a type
//! such as `log::Level` is one type whichever world a plugin is built for).
//! Each world module holds its exports and an export macro; the macro of a
//! world a plugin does not use is never expanded and adds nothing to it.

/// All six host interfaces.
pub mod host {
    wit_bindgen::generate!({
        path: "../../../wit",
        inline: "
            package prx:pdk;

            world imports {
                import prx:host/log@0.1.0;
                import prx:host/config@0.1.0;
                import prx:host/kv@0.1.0;
                import prx:host/events@0.1.0;
                import prx:host/http-outbound@0.1.0;
                import prx:host/memory@0.1.0;
                import prx:host/kv-atomic@0.1.0;
            }
        ",
        world: "prx:pdk/imports",
        generate_all,
        runtime_path: "::prx_pdk::__rt::wit_bindgen::rt",
    });
}

/// The `tool` world.
pub mod tool {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "prx:plugin/tool",
        with: {
            "prx:host/log@0.1.0": crate::bindings::host::prx::host::log,
            "prx:host/config@0.1.0": crate::bindings::host::prx::host::config,
            "prx:host/kv@0.1.0": crate::bindings::host::prx::host::kv,
            "prx:host/events@0.1.0": crate::bindings::host::prx::host::events,
            "prx:host/http-outbound@0.1.0": crate::bindings::host::prx::host::http_outbound,
            "prx:host/memory@0.1.0": crate::bindings::host::prx::host::memory,
        },
        pub_export_macro: true,
        export_macro_name: "__export_tool_world",
        default_bindings_module: "::prx_pdk::bindings::tool",
        runtime_path: "::prx_pdk::__rt::wit_bindgen::rt",
    });
}
