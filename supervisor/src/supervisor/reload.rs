//! Hot reload: the plugins directory is watched (inotify through `notify`,
//! and a slow poll behind it); a changed plugin is read, checked against
//! the operator's policy and started beside the running version, which it
//! replaces once healthy. A new directory is loaded, a removed one
//! unloaded, a failed or quarantined plugin retried.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::manifest::{CapabilityType, Manifest, Permission};
use crate::plugin::{Fingerprint, Plugin};

use super::loading::{is_hidden, plugin_dirs, rpc_clash};
use super::{STOP_GRACE, Supervisor};

/// What a reload did with one plugin directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ReloadOutcome {
    /// Its files hold what is already serving.
    Unchanged { plugin: String },
    /// A plugin that was not running (new, failed or quarantined) loaded.
    Loaded { plugin: String, version: String },
    /// A new version took over from the running one.
    Reloaded {
        plugin: String,
        from_version: String,
        version: String,
        /// From reading the files to the new version serving.
        took_ms: u64,
    },
    /// Its directory is gone: the plugin was stopped.
    Removed { plugin: String },
    /// The new version was refused; the running one serves on.
    Refused { plugin: String, error: String },
    /// The plugin could not be loaded (and nothing of it is serving).
    Failed { dir: PathBuf, error: String },
}

impl std::fmt::Display for ReloadOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unchanged { plugin } => write!(f, "{plugin}: unchanged"),
            Self::Loaded { plugin, version } => write!(f, "{plugin}: loaded {version}"),
            Self::Reloaded {
                plugin,
                from_version,
                version,
                took_ms,
            } => write!(
                f,
                "{plugin}: reloaded {from_version} -> {version} in {took_ms} ms"
            ),
            Self::Removed { plugin } => write!(f, "{plugin}: removed"),
            Self::Refused { plugin, error } => {
                write!(
                    f,
                    "{plugin}: new version refused, the old one serves on: {error}"
                )
            }
            Self::Failed { dir, error } => write!(f, "{}: not loaded: {error}", dir.display()),
        }
    }
}

impl Supervisor {
    /// `prx reload`: with a plugin name, reloads that plugin from its
    /// files even if they did not change; without, looks at every plugin
    /// directory and applies what changed (new, changed, removed).
    pub async fn reload(&self, plugin: Option<&str>) -> Result<Vec<ReloadOutcome>, String> {
        match plugin {
            Some(name) => {
                let dir = self
                    .plugin_named(name)
                    .map(|p| p.dir.clone())
                    .or_else(|| {
                        self.failures()
                            .into_iter()
                            .map(|f| f.dir)
                            .find(|d| d.file_name().is_some_and(|n| n == name))
                    })
                    .ok_or_else(|| format!("no plugin named `{name}`"))?;
                Ok(self.reconcile(&dir, true).await.into_iter().collect())
            }
            None => {
                let mut outcomes = Vec::new();
                for dir in self.known_dirs() {
                    outcomes.extend(self.reconcile(&dir, false).await);
                }
                Ok(outcomes)
            }
        }
    }

    /// Compiles a plugin staged in a hidden directory of the plugins
    /// directory (as `prx-plugin install` stages one) and checks that it
    /// starts, without loading it: once it is renamed into place its load
    /// or reload finds it compiled. Returns its name, version and how long
    /// the compile check took.
    pub async fn prepare_staged(&self, dir: &Path) -> Result<(String, String, u64), String> {
        let root = self
            .inner
            .config
            .plugins_dir
            .canonicalize()
            .map_err(|e| e.to_string())?;
        let dir = dir
            .canonicalize()
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        if dir.parent() != Some(root.as_path()) || !is_hidden(&dir) {
            return Err(format!(
                "{} is not a staged plugin: stage it in a hidden directory directly under {}",
                dir.display(),
                root.display()
            ));
        }
        let plugin = self.read_plugin(&dir)?;
        let started = Instant::now();
        plugin.compile_check(&self.inner.runtime).await?;
        Ok((
            plugin.name.to_string(),
            plugin.manifest.plugin.version.clone(),
            started.elapsed().as_millis() as u64,
        ))
    }

    /// Every plugin directory there is now, and every one the supervisor
    /// knows of (which may be gone).
    fn known_dirs(&self) -> BTreeSet<PathBuf> {
        let mut dirs: BTreeSet<PathBuf> = plugin_dirs(&self.inner.config.plugins_dir)
            .unwrap_or_default()
            .into_iter()
            .collect();
        dirs.extend(
            self.inner
                .plugins
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .map(|p| p.dir.clone()),
        );
        dirs.extend(self.failures().into_iter().map(|f| f.dir));
        dirs
    }

    fn plugin_in(&self, dir: &Path) -> Option<Arc<Plugin>> {
        self.inner
            .plugins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .find(|p| p.dir == dir)
            .cloned()
    }

    /// Brings what serves from `dir` in line with its files. `force`
    /// reloads a running plugin whose files did not change. `None` when
    /// there is nothing there and nothing was.
    pub(super) async fn reconcile(&self, dir: &Path, force: bool) -> Option<ReloadOutcome> {
        let _one_at_a_time = self.inner.reloading.lock().await;
        if self.inner.draining.load(Ordering::SeqCst) {
            return None;
        }
        let current = self.plugin_in(dir);
        if !dir.join("plugin.toml").is_file() {
            self.inner
                .failures
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|f| f.dir != dir);
            let plugin = current?;
            self.unload(&plugin).await;
            return Some(ReloadOutcome::Removed {
                plugin: plugin.name.to_string(),
            });
        }
        match current {
            Some(running) if !running.is_parked() => self.replace(&running, force).await,
            _ => Some(self.load_again(dir).await),
        }
    }

    /// Loads a plugin that is not serving (new, failed, quarantined).
    async fn load_again(&self, dir: &Path) -> ReloadOutcome {
        self.retry(dir).await;
        match self.plugin_in(dir) {
            Some(p) if !p.is_parked() => ReloadOutcome::Loaded {
                plugin: p.name.to_string(),
                version: p.manifest.plugin.version.clone(),
            },
            found => ReloadOutcome::Failed {
                dir: dir.to_owned(),
                error: found
                    .and_then(|p| p.status().error)
                    .or_else(|| {
                        self.failures()
                            .into_iter()
                            .find(|f| f.dir == dir)
                            .map(|f| f.error)
                    })
                    .unwrap_or_else(|| "not loaded".into()),
            },
        }
    }

    /// Replaces a running plugin with the version in its files.
    async fn replace(&self, old: &Arc<Plugin>, force: bool) -> Option<ReloadOutcome> {
        let files = Fingerprint::of(&old.dir);
        if !force {
            if let Some((refused, error)) = old.reload_error()
                && refused == files
            {
                return Some(ReloadOutcome::Refused {
                    plugin: old.name.to_string(),
                    error,
                });
            }
            if files == old.files() {
                return None;
            }
        }
        let started = Instant::now();
        let new = match self.read_plugin(&old.dir) {
            Ok(new) => new,
            Err(e) => return Some(self.refuse(old, files, e)),
        };
        if !force && new.digest == old.digest {
            old.set_files(files);
            return Some(ReloadOutcome::Unchanged {
                plugin: old.name.to_string(),
            });
        }
        if new.name != old.name {
            tracing::info!(plugin = %old.name, new_name = %new.name, dir = %old.dir.display(),
                "the plugin was renamed: unloading it and loading the new one");
            self.unload(old).await;
            return Some(self.load_again(&old.dir).await);
        }
        let diff = permission_diff(&old.manifest, &new.manifest);
        let policy = &self.inner.config.permissions;
        let escalation: Vec<String> = diff
            .added
            .iter()
            .filter(|p| !policy.allows(&new.name, **p))
            .map(|p| p.to_string())
            .collect();
        if !escalation.is_empty() {
            return Some(self.refuse(
                old,
                files,
                format!(
                    "the new version asks for {} which the operator's policy does not grant ({diff}); allow it in [permissions] of the supervisor's config, or drop it from the plugin",
                    escalation.join(", ")
                ),
            ));
        }
        if !diff.is_empty() {
            tracing::info!(plugin = %old.name, "permissions of the new version: {diff}");
        }
        let old_instance_subs = self.inner.services.bus.runtime_subscriptions(&old.name);
        let worker = match new.start_standby(&self.inner.runtime).await {
            Ok(worker) => worker,
            Err(e) => {
                self.drop_new_subscriptions(&new.name, &old_instance_subs);
                return Some(self.refuse(
                    old,
                    files,
                    format!("the new version did not start: {e} (a file still being written is ignored until it is complete)"),
                ));
            }
        };
        let clash = rpc_clash(
            &self.inner.rpcs.read().unwrap_or_else(|p| p.into_inner()),
            &new,
        );
        if let Err(e) = clash {
            worker.kill();
            self.drop_new_subscriptions(&new.name, &old_instance_subs);
            return Some(self.refuse(old, files, format!("the new version {e}")));
        }
        // What it wrote while readied becomes the plugin's now.
        if let Err(e) = new.broker().commit_staged().await {
            worker.kill();
            self.drop_new_subscriptions(&new.name, &old_instance_subs);
            return Some(self.refuse(old, files, format!("the new version {e}")));
        }
        // The switch: the new version serves, then every table points at it.
        new.go_live(&self.inner.runtime, worker, old);
        self.switch_routes(old, &new);
        let bus = &self.inner.services.bus;
        let patterns: Vec<&str> = new
            .manifest
            .capabilities_of(CapabilityType::Hook)
            .flat_map(|c| c.events.iter().map(|p| p.pattern()))
            .collect();
        if let Err(e) = bus.replace_fixed(&new.name, &patterns) {
            tracing::error!(plugin = %new.name, "manifest subscriptions of the new version: {e}");
        }
        for id in old_instance_subs {
            let _ = bus.unsubscribe_plugin(&new.name, id);
        }
        self.spawn_delivery(&new);
        self.spawn_schedules(&new);
        let took_ms = started.elapsed().as_millis() as u64;
        let version = new.manifest.plugin.version.clone();
        tracing::info!(plugin = %new.name, from = %old.manifest.plugin.version, to = %new.manifest.plugin.version,
            digest = %new.digest_hex(), took_ms, event = "prx.lifecycle.reloaded", "new version serving");
        let retiring = old.clone();
        let drain = old.deadline(&self.inner.runtime);
        tokio::spawn(async move { retiring.retire(new, drain).await });
        Some(ReloadOutcome::Reloaded {
            plugin: old.name.to_string(),
            from_version: old.manifest.plugin.version.clone(),
            version,
            took_ms,
        })
    }

    /// A new version was refused: the running one serves on, and says why.
    /// Subscriptions a refused version made while it was readied (its
    /// `on-load` runs under the plugin's name, like the live version's):
    /// every one that is not the live version's own, `live`, goes, so no
    /// event reaches the live version for a subscription it never made.
    fn drop_new_subscriptions(&self, plugin: &str, live: &[u64]) {
        let bus = &self.inner.services.bus;
        for id in bus.runtime_subscriptions(plugin) {
            if !live.contains(&id) {
                let _ = bus.unsubscribe_plugin(plugin, id);
            }
        }
    }

    fn refuse(&self, old: &Plugin, files: Fingerprint, error: String) -> ReloadOutcome {
        tracing::error!(plugin = %old.name, event = "prx.lifecycle.reload_failed",
            "new version refused; version {} serves on: {error}", old.manifest.plugin.version);
        old.set_reload_error(files, error.clone());
        old.announce(
            "prx.lifecycle.reload_failed",
            serde_json::json!({ "reason": error }),
        );
        ReloadOutcome::Refused {
            plugin: old.name.to_string(),
            error,
        }
    }

    /// Points the plugins table and every route of `old`'s name at `new`.
    fn switch_routes(&self, old: &Plugin, new: &Arc<Plugin>) {
        self.write_plugins()
            .insert(new.name.to_string(), new.clone());
        for table in [&self.inner.tools, &self.inner.providers, &self.inner.rpcs] {
            table
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|_, p| p.name != old.name);
        }
        self.register_tools(new);
        self.register_providers(new);
        // Checked before the switch; reloads and loads take turns, so no
        // other plugin can have claimed a name since.
        if let Err(e) = self.register_rpcs(new) {
            tracing::error!(plugin = %new.name, "RPCs of the new version not routed: {e}");
        }
        self.route_storage(new);
    }

    /// Stops a plugin whose directory is gone and forgets it.
    async fn unload(&self, plugin: &Arc<Plugin>) {
        tracing::info!(plugin = %plugin.name, dir = %plugin.dir.display(), "plugin directory removed or renamed; unloading the plugin");
        self.write_plugins().retain(|_, p| !Arc::ptr_eq(p, plugin));
        for table in [&self.inner.tools, &self.inner.providers, &self.inner.rpcs] {
            table
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|_, p| !Arc::ptr_eq(p, plugin));
        }
        if let Some(route) = &self.inner.storage {
            route.detach(&plugin.name);
        }
        plugin.stop(STOP_GRACE).await;
    }
}

/// How a new version's permissions differ from the running one's.
#[derive(Debug, Default)]
struct PermissionDiff {
    added: Vec<Permission>,
    removed: Vec<Permission>,
    hosts_added: Vec<String>,
    hosts_removed: Vec<String>,
}

impl PermissionDiff {
    fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.hosts_added.is_empty()
            && self.hosts_removed.is_empty()
    }
}

impl std::fmt::Display for PermissionDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .added
            .iter()
            .map(|p| format!("+{p}"))
            .chain(self.removed.iter().map(|p| format!("-{p}")))
            .chain(self.hosts_added.iter().map(|h| format!("+http {h}")))
            .chain(self.hosts_removed.iter().map(|h| format!("-http {h}")))
            .collect();
        if parts.is_empty() {
            f.write_str("permissions unchanged")
        } else {
            write!(f, "permissions {}", parts.join(", "))
        }
    }
}

fn permission_diff(old: &Manifest, new: &Manifest) -> PermissionDiff {
    let declared = |m: &Manifest| -> BTreeSet<Permission> {
        let p = &m.permissions;
        p.required.iter().chain(&p.optional).copied().collect()
    };
    let hosts = |m: &Manifest| -> BTreeSet<String> {
        m.permissions.http_allowlist.iter().cloned().collect()
    };
    let (old_p, new_p) = (declared(old), declared(new));
    let (old_h, new_h) = (hosts(old), hosts(new));
    PermissionDiff {
        added: new_p.difference(&old_p).copied().collect(),
        removed: old_p.difference(&new_p).copied().collect(),
        hosts_added: new_h.difference(&old_h).cloned().collect(),
        hosts_removed: old_h.difference(&new_h).cloned().collect(),
    }
}
