//! Raw bindings generated from the PRX 0.1.0 WIT in the repository's `wit/`.
//!
//! `host` holds the imports, shared by every world's bindings (so a type
//! such as `log::Level` is one type whichever world a plugin is built for).
//! Each world module holds its exports and an export macro; the macro of a
//! world a plugin does not use is never expanded and adds nothing to it.

/// Every host interface: the six of PRX 0.1.0 and this host's own
/// (`kv-atomic`, `cache`, `rpc`).
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
                import prx:host/cache@0.1.0;
                import prx:host/rpc@0.1.0;
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

/// The `hook` world.
pub mod hook {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "prx:plugin/hook",
        with: {
            "prx:host/log@0.1.0": crate::bindings::host::prx::host::log,
            "prx:host/config@0.1.0": crate::bindings::host::prx::host::config,
            "prx:host/kv@0.1.0": crate::bindings::host::prx::host::kv,
            "prx:host/events@0.1.0": crate::bindings::host::prx::host::events,
        },
        pub_export_macro: true,
        export_macro_name: "__export_hook_world",
        default_bindings_module: "::prx_pdk::bindings::hook",
        runtime_path: "::prx_pdk::__rt::wit_bindgen::rt",
    });
}

/// The `middleware` world.
pub mod middleware {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "prx:plugin/middleware",
        with: {
            "prx:host/log@0.1.0": crate::bindings::host::prx::host::log,
            "prx:host/config@0.1.0": crate::bindings::host::prx::host::config,
            "prx:host/kv@0.1.0": crate::bindings::host::prx::host::kv,
            "prx:host/events@0.1.0": crate::bindings::host::prx::host::events,
        },
        pub_export_macro: true,
        export_macro_name: "__export_middleware_world",
        default_bindings_module: "::prx_pdk::bindings::middleware",
        runtime_path: "::prx_pdk::__rt::wit_bindgen::rt",
    });
}

/// The `cron` world.
pub mod cron {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "prx:plugin/cron",
        with: {
            "prx:host/log@0.1.0": crate::bindings::host::prx::host::log,
            "prx:host/config@0.1.0": crate::bindings::host::prx::host::config,
            "prx:host/kv@0.1.0": crate::bindings::host::prx::host::kv,
            "prx:host/events@0.1.0": crate::bindings::host::prx::host::events,
        },
        pub_export_macro: true,
        export_macro_name: "__export_cron_world",
        default_bindings_module: "::prx_pdk::bindings::cron",
        runtime_path: "::prx_pdk::__rt::wit_bindgen::rt",
    });
}

/// The `provider` world.
pub mod provider {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "prx:plugin/provider",
        with: {
            "prx:host/log@0.1.0": crate::bindings::host::prx::host::log,
            "prx:host/config@0.1.0": crate::bindings::host::prx::host::config,
            "prx:host/http-outbound@0.1.0": crate::bindings::host::prx::host::http_outbound,
            "prx:host/events@0.1.0": crate::bindings::host::prx::host::events,
        },
        pub_export_macro: true,
        export_macro_name: "__export_provider_world",
        default_bindings_module: "::prx_pdk::bindings::provider",
        runtime_path: "::prx_pdk::__rt::wit_bindgen::rt",
    });
}

/// The `storage` world.
pub mod storage {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "prx:plugin/storage",
        with: {
            "prx:host/log@0.1.0": crate::bindings::host::prx::host::log,
            "prx:host/config@0.1.0": crate::bindings::host::prx::host::config,
            "prx:host/http-outbound@0.1.0": crate::bindings::host::prx::host::http_outbound,
            "prx:host/events@0.1.0": crate::bindings::host::prx::host::events,
        },
        pub_export_macro: true,
        export_macro_name: "__export_storage_world",
        default_bindings_module: "::prx_pdk::bindings::storage",
        runtime_path: "::prx_pdk::__rt::wit_bindgen::rt",
    });
}

/// The `module` world.
pub mod module {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "prx:plugin/module",
        with: {
            "prx:host/log@0.1.0": crate::bindings::host::prx::host::log,
            "prx:host/config@0.1.0": crate::bindings::host::prx::host::config,
            "prx:host/events@0.1.0": crate::bindings::host::prx::host::events,
            "prx:host/cache@0.1.0": crate::bindings::host::prx::host::cache,
            "prx:host/rpc@0.1.0": crate::bindings::host::prx::host::rpc,
        },
        pub_export_macro: true,
        export_macro_name: "__export_module_world",
        default_bindings_module: "::prx_pdk::bindings::module",
        runtime_path: "::prx_pdk::__rt::wit_bindgen::rt",
    });
}
