//! Loading the plugins directory: each plugin directory read and checked,
//! prepared (its worker started), registered under its tools, providers,
//! RPCs and storage name, or recorded as a failure and retried later.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use prx_ipc::ToolSpec;

use crate::manifest::{CapabilityType, Manifest};
use crate::plugin::{Fingerprint, Plugin};

use super::{LoadFailure, Supervisor};

impl Supervisor {
    /// Reads a plugin's manifest and component and checks them against
    /// the operator's policy, without registering anything.
    pub(super) fn read_plugin(&self, dir: &Path) -> Result<Arc<Plugin>, String> {
        let files = Fingerprint::of(dir);
        let manifest_path = dir.join("plugin.toml");
        let manifest_text = std::fs::read_to_string(&manifest_path)
            .map_err(|e| format!("{}: {e}", manifest_path.display()))?;
        let manifest =
            Manifest::parse(&manifest_path, &manifest_text).map_err(|e| e.to_string())?;
        let wasm_path = manifest.wasm_path(dir);
        let wasm = read_inside(dir, &wasm_path)
            .and_then(|wasm| crate::component::check_header(&wasm).map(|()| wasm))
            .map_err(|e| {
                format!(
                    "{}: [plugin].wasm = {:?}: {e}",
                    manifest_path.display(),
                    manifest.plugin.wasm
                )
            })?;
        let digest = content_digest(manifest_text.as_bytes(), &wasm);
        self.inner
            .config
            .resource_caps
            .check(&manifest.plugin.name, &manifest.resources)
            .map_err(|e| format!("{}: {e}", manifest_path.display()))?;
        Plugin::new(
            dir.to_owned(),
            manifest,
            wasm,
            files,
            digest,
            &self.inner.config.permissions,
            &self.inner.services,
        )
        .map_err(|e| format!("{}: {e}", manifest_path.display()))
    }

    /// Reads a plugin's manifest and wasm; refuses duplicates.
    pub(super) fn prepare(&self, dir: &Path) -> Result<Arc<Plugin>, String> {
        let plugin = self.read_plugin(dir)?;
        let manifest_path = dir.join("plugin.toml");
        let mut plugins = self.write_plugins();
        if let Some(existing) = plugins.get(&*plugin.name) {
            return Err(format!(
                "{}: plugin name `{}` is already used by {}; names must be unique",
                manifest_path.display(),
                plugin.name,
                existing.dir.display()
            ));
        }
        plugins.insert(plugin.name.to_string(), plugin.clone());
        drop(plugins);
        // After the name check: a second directory claiming a loaded
        // plugin's name must not add subscriptions to that plugin's queue.
        if let Err(e) = plugin.subscribe_manifest_patterns() {
            self.write_plugins().remove(&*plugin.name);
            return Err(e);
        }
        Ok(plugin)
    }

    /// Remembers a plugin directory that did not load. Its log line names
    /// the plugin by its directory, since its manifest may be unreadable.
    pub(super) fn record_failure(&self, dir: PathBuf, error: String) {
        tracing::error!(plugin = %dir_name(&dir), dir = %dir.display(), "plugin not loaded: {error}");
        self.inner
            .failures
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(LoadFailure {
                files: Fingerprint::of(&dir),
                dir,
                error,
            });
    }

    /// Loads the plugin in `dir` again, replacing what was there: the way
    /// out of `failed` and `quarantined` once its files change. Until the
    /// new version is routed, calls still reach the old one's routes and
    /// hear why it is out (a tool never goes missing while it loads); if
    /// the new version does not load, those routes go.
    pub(super) async fn retry(&self, dir: &Path) {
        tracing::info!(plugin = %dir_name(dir), dir = %dir.display(), "plugin files changed; loading the plugin again");
        self.write_plugins().retain(|_, p| {
            if p.dir == dir {
                p.discard();
                p.broker().plugin_removed();
            }
            p.dir != dir
        });
        self.inner
            .failures
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|f| f.dir != dir);
        let switch = |p: &Arc<Plugin>| {
            self.unroute(dir);
            self.route(p)
        };
        let loaded = match self.prepare(dir) {
            Ok(plugin) => plugin
                .load(&self.inner.runtime, switch)
                .await
                .map(|()| plugin),
            Err(error) => Err(error),
        };
        match loaded {
            Ok(plugin) => self.register(&plugin),
            Err(error) => {
                self.unroute(dir);
                self.record_failure(dir.to_owned(), error);
            }
        }
    }

    /// Removes every route to the plugin in `dir`.
    fn unroute(&self, dir: &Path) {
        for table in [&self.inner.tools, &self.inner.providers, &self.inner.rpcs] {
            table
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|_, p| p.dir != dir);
        }
    }

    /// Routes a ready plugin's tools, providers and RPCs to it. RPC names
    /// that clash with another plugin's are an error, and nothing is
    /// routed.
    pub(super) fn route(&self, plugin: &Arc<Plugin>) -> Result<(), String> {
        self.register_rpcs(plugin)?;
        self.register_tools(plugin);
        self.register_providers(plugin);
        Ok(())
    }

    /// Starts what a routed, running plugin needs: its storage route, its
    /// event deliveries and its schedules.
    pub(super) fn register(&self, plugin: &Arc<Plugin>) {
        tracing::info!(plugin = %plugin.name, pid = plugin.worker().map(|w| w.pid()), "plugin loaded");
        self.route_storage(plugin);
        self.spawn_delivery(plugin);
        self.spawn_schedules(plugin);
        self.inner.routes_changed.notify_one();
    }

    /// Makes the storage route use `plugin` when it serves the configured
    /// backend, and stop using a plugin of that name when it no longer does.
    pub(super) fn route_storage(&self, plugin: &Arc<Plugin>) {
        let Some(route) = &self.inner.storage else {
            return;
        };
        let serves = plugin
            .manifest
            .capabilities_of(CapabilityType::Storage)
            .any(|c| c.name.as_deref() == Some(route.name()));
        if serves {
            route.attach(plugin.clone(), self.inner.runtime.clone());
            tracing::info!(plugin = %plugin.name, backend = route.name(), "memory is served by this storage plugin");
        } else {
            route.detach(&plugin.name);
        }
    }

    pub(super) fn register_rpcs(&self, plugin: &Arc<Plugin>) -> Result<(), String> {
        let mut rpcs = self.inner.rpcs.write().unwrap_or_else(|p| p.into_inner());
        rpc_clash(&rpcs, plugin)?;
        for name in plugin.rpcs() {
            rpcs.insert(name, plugin.clone());
        }
        Ok(())
    }

    pub(super) fn register_providers(&self, plugin: &Arc<Plugin>) {
        let mut providers = self
            .inner
            .providers
            .write()
            .unwrap_or_else(|p| p.into_inner());
        for cap in plugin.manifest.capabilities_of(CapabilityType::Provider) {
            let Some(name) = &cap.name else { continue };
            if let Some(other) = providers.get(name) {
                tracing::error!(plugin = %plugin.name, provider = %name, other = %other.name,
                    "provider name already served by another plugin; keeping the first");
                continue;
            }
            providers.insert(name.clone(), plugin.clone());
        }
    }

    pub(super) fn register_tools(&self, plugin: &Arc<Plugin>) {
        let spec = plugin.tool_spec();
        let mut tools = self.inner.tools.write().unwrap_or_else(|p| p.into_inner());
        for cap in plugin.manifest.capabilities_of(CapabilityType::Tool) {
            let Some(name) = cap
                .name
                .clone()
                .or_else(|| spec_route(plugin, spec.as_ref()))
            else {
                continue;
            };
            let name = &name;
            if let Some(spec) = &spec
                && spec.name.escaped() != *name
            {
                tracing::warn!(plugin = %plugin.name, manifest = %name, spec = %spec.name,
                    "the tool's get-spec name differs from its manifest name; routing by the manifest name");
            }
            if let Some(other) = tools.get(name) {
                tracing::error!(plugin = %plugin.name, tool = %name, other = %other.name,
                    "tool name already served by another plugin; keeping the first");
                continue;
            }
            tools.insert(name.clone(), plugin.clone());
        }
    }

    pub(super) fn write_plugins(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Plugin>>> {
        self.inner
            .plugins
            .write()
            .unwrap_or_else(|p| p.into_inner())
    }
}

/// Refuses RPC names of `plugin` that another plugin already serves.
pub(super) fn rpc_clash(
    rpcs: &BTreeMap<String, Arc<Plugin>>,
    plugin: &Plugin,
) -> Result<(), String> {
    for name in plugin.rpcs() {
        if let Some(other) = rpcs.get(&name).filter(|o| o.name != plugin.name) {
            return Err(format!(
                "registers the RPC `{name}`, which plugin `{}` already serves; RPC names are unique across plugins: rename it in one of them or remove one plugin",
                other.name
            ));
        }
    }
    Ok(())
}

/// SHA-256 of a plugin's manifest and component.
fn content_digest(manifest: &[u8], wasm: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    hasher.update((manifest.len() as u64).to_le_bytes());
    hasher.update(manifest);
    hasher.update(wasm);
    hasher.finalize().into()
}

/// True for a directory name the supervisor leaves alone: hidden ones are
/// where installs and editors stage files before renaming them in.
pub(super) fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

/// Subdirectories holding a `plugin.toml`, in name order; hidden ones are
/// skipped.
pub(super) fn plugin_dirs(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(root)? {
        let path = entry?.path();
        if path.is_dir() && !is_hidden(&path) && path.join("plugin.toml").is_file() {
            dirs.push(path);
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// Reads a file that must resolve (symlinks included) inside `dir`.
fn read_inside(dir: &Path, path: &Path) -> Result<Vec<u8>, String> {
    let real_dir = dir.canonicalize().map_err(|e| e.to_string())?;
    let real = path.canonicalize().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("not found at {}", path.display()),
        _ => e.to_string(),
    })?;
    if !real.starts_with(&real_dir) {
        return Err(format!(
            "resolves to {}, outside the plugin's directory",
            real.display()
        ));
    }
    std::fs::read(&real).map_err(|e| e.to_string())
}

/// A plugin directory's name: the plugin's name when its manifest cannot
/// be read.
pub(super) fn dir_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The route of a tool whose manifest names none (PRX's short form,
/// `[plugin] capability = "tool"`): the name its get-spec gave, when it
/// is a valid tool name. The plugin chose it, as it chose its manifest;
/// a name already served stays with the plugin that had it first.
fn spec_route(plugin: &Plugin, spec: Option<&ToolSpec>) -> Option<String> {
    let name = spec?.name.escaped();
    match crate::manifest::check_capability_name("the tool's get-spec name", &name) {
        Ok(()) => {
            tracing::info!(plugin = %plugin.name, tool = %name,
                "the manifest names no tool (PRX's short form): routed by its get-spec name");
            Some(name)
        }
        Err(e) => {
            tracing::error!(plugin = %plugin.name, "{e}; the tool is not routed");
            None
        }
    }
}
