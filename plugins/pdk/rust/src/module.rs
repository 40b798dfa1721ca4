//! Bus modules: a plugin that registers named RPC handlers and event
//! handlers when it loads, publishes events, keeps a namespaced cache and
//! describes itself to operators. Not part of PRX 0.1.0.
//!
//! ```no_run
//! use prx_pdk::prelude::*;
//!
//! struct Stats;
//!
//! impl Module for Stats {
//!     fn on_load(host: &mut ModuleHost) -> Result<(), String> {
//!         host.register_rpc("stats.mean", mean)?;
//!         host.register_event_handler("prices.*", on_price)?;
//!         Ok(())
//!     }
//! }
//!
//! fn mean(payload: &str) -> Result<String, String> { Ok(payload.into()) }
//! fn on_price(_topic: &str, _payload: &str) -> Result<(), String> { Ok(()) }
//!
//! export_module!(Stats);
//! ```

use std::cell::RefCell;
use std::collections::BTreeMap;

/// An RPC handler: JSON payload in, JSON reply out.
pub type RpcHandler = fn(&str) -> Result<String, String>;
/// An event handler: topic and JSON payload.
pub type EventHandler = fn(&str, &str) -> Result<(), String>;

/// What the console shows of a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleInfo {
    pub status: String,
    pub stats: Vec<(String, String)>,
}

impl ModuleInfo {
    pub fn new(status: impl Into<String>) -> Self {
        Self {
            status: status.into(),
            stats: Vec::new(),
        }
    }

    pub fn stat(mut self, name: impl Into<String>, value: impl ToString) -> Self {
        self.stats.push((name.into(), value.to_string()));
        self
    }
}

/// A bus module. Export it with [`crate::export_module!`].
pub trait Module {
    /// Called once per instance before anything else: register handlers
    /// here (registrations are refused later).
    fn on_load(host: &mut ModuleHost) -> Result<(), String>;

    /// Status and named stats for operators; `LOADED` and none by default.
    fn describe() -> ModuleInfo {
        ModuleInfo::new("LOADED")
    }
}

#[derive(Default)]
struct Registry {
    rpcs: BTreeMap<String, RpcHandler>,
    events: Vec<(String, EventHandler)>,
}

thread_local! {
    static REGISTRY: RefCell<Registry> = RefCell::new(Registry::default());
}

/// The host as a module sees it during `on_load`.
pub struct ModuleHost {
    _private: (),
}

impl ModuleHost {
    /// Routes the RPC `name` to `handler`. Names are unique across plugins:
    /// the host refuses one another plugin serves.
    pub fn register_rpc(&mut self, name: &str, handler: RpcHandler) -> Result<(), String> {
        host_call!(
            wasm: crate::bindings::host::prx::host::rpc::register(name)?,
            native: crate::testing::rpc_register(name)?,
        );
        REGISTRY.with(|r| r.borrow_mut().rpcs.insert(name.to_owned(), handler));
        Ok(())
    }

    /// Calls `handler` for events matching `pattern` (`*`, `a.*` or an
    /// exact topic); needs the `events` permission.
    pub fn register_event_handler(
        &mut self,
        pattern: &str,
        handler: EventHandler,
    ) -> Result<u64, String> {
        let id = crate::events::subscribe(pattern)?;
        REGISTRY.with(|r| r.borrow_mut().events.push((pattern.to_owned(), handler)));
        Ok(id)
    }
}

fn matches(pattern: &str, topic: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some("") => true,
        Some(prefix) => topic.starts_with(prefix),
        None => pattern == topic,
    }
}

#[doc(hidden)]
pub fn __load<M: Module>() -> Result<(), String> {
    REGISTRY.with(|r| *r.borrow_mut() = Registry::default());
    M::on_load(&mut ModuleHost { _private: () })
}

#[doc(hidden)]
pub fn __rpc(name: &str, payload: &str) -> Result<String, String> {
    let handler = REGISTRY.with(|r| r.borrow().rpcs.get(name).copied());
    match handler {
        Some(handler) => handler(payload),
        None => Err(format!("no RPC handler named `{name}` in this module")),
    }
}

#[doc(hidden)]
pub fn __event(topic: &str, payload: &str) -> Result<(), String> {
    let handlers: Vec<EventHandler> = REGISTRY.with(|r| {
        r.borrow()
            .events
            .iter()
            .filter(|(pattern, _)| matches(pattern, topic))
            .map(|(_, handler)| *handler)
            .collect()
    });
    for handler in handlers {
        handler(topic, payload)?;
    }
    Ok(())
}

/// Exports a [`Module`] as the plugin's `prx:plugin/module-exports`. In a
/// native build it defines hidden `__prx_module_load` and
/// `__prx_module_rpc` for tests.
#[macro_export]
macro_rules! export_module {
    ($module:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::bindings::module::exports::prx::plugin::module_exports as __wit;

            struct __PrxModule;

            impl __wit::Guest for __PrxModule {
                fn on_load() -> ::std::result::Result<(), ::std::string::String> {
                    $crate::module::__load::<$module>()
                }

                fn on_rpc(
                    name: ::std::string::String,
                    payload_json: ::std::string::String,
                ) -> ::std::result::Result<::std::string::String, ::std::string::String> {
                    $crate::module::__rpc(&name, &payload_json)
                }

                fn on_event(
                    topic: ::std::string::String,
                    payload_json: ::std::string::String,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::module::__event(&topic, &payload_json)
                }

                fn describe() -> __wit::ModuleInfo {
                    let info = <$module as $crate::module::Module>::describe();
                    __wit::ModuleInfo {
                        status: info.status,
                        stats: info
                            .stats
                            .into_iter()
                            .map(|(name, value)| __wit::Stat { name, value })
                            .collect(),
                    }
                }
            }

            $crate::bindings::module::__export_module_world!(
                __PrxModule with_types_in $crate::bindings::module
            );
        };

        #[cfg(not(target_arch = "wasm32"))]
        #[doc(hidden)]
        pub fn __prx_module_load() -> ::std::result::Result<(), ::std::string::String> {
            $crate::module::__load::<$module>()
        }

        #[cfg(not(target_arch = "wasm32"))]
        #[doc(hidden)]
        pub fn __prx_module_rpc(
            name: &str,
            payload: &str,
        ) -> ::std::result::Result<::std::string::String, ::std::string::String> {
            $crate::module::__rpc(name, payload)
        }
    };
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn patterns_match_like_the_host() {
        assert!(matches("*", "a.b"));
        assert!(matches("a.*", "a.b"));
        assert!(!matches("a.*", "ab.c"));
        assert!(matches("a.b", "a.b"));
        assert!(!matches("a.b", "a.bc"));
    }
}
