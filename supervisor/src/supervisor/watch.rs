//! Noticing changes to the plugins directory: a file watcher (debounced),
//! backed by a poll of file sizes and times, each change handed to reload
//! as the plugin directories it touched.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::plugin::Fingerprint;

use super::loading::{is_hidden, plugin_dirs};
use super::{Inner, Supervisor};

impl Supervisor {
    /// Starts the watcher and the poll behind it, as configured.
    pub(super) fn watch_plugins_dir(&self) {
        let config = &self.inner.config;
        let (changed, dirs) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
        if config.watch {
            let root = config.plugins_dir.clone();
            let sender = changed.clone();
            let watcher =
                notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                    let Ok(event) = event else { return };
                    if let notify::EventKind::Access(access) = event.kind
                        && access
                            != notify::event::AccessKind::Close(notify::event::AccessMode::Write)
                    {
                        return;
                    }
                    for path in event.paths {
                        if let Some(dir) = plugin_dir_of(&root, &path) {
                            let _ = sender.send(dir);
                        }
                    }
                })
                .and_then(|mut w| {
                    use notify::Watcher;
                    w.watch(&config.plugins_dir, notify::RecursiveMode::Recursive)
                        .map(|()| w)
                });
            match watcher {
                Ok(watcher) => {
                    *self.inner.watcher.lock().unwrap_or_else(|p| p.into_inner()) = Some(watcher);
                    tracing::info!(dir = %config.plugins_dir.display(), "watching the plugins directory for changes");
                }
                Err(e) => tracing::warn!(dir = %config.plugins_dir.display(),
                    "cannot watch the plugins directory ({e}); changes are found by polling"),
            }
        }
        tokio::spawn(apply_changes(
            Arc::downgrade(&self.inner),
            dirs,
            config.reload_debounce,
        ));
        if !config.retry_poll.is_zero() {
            tokio::spawn(poll(
                Arc::downgrade(&self.inner),
                changed,
                config.retry_poll,
            ));
        }
    }

    /// Directories whose files differ from what was last seen there.
    fn changed_dirs(&self) -> Vec<PathBuf> {
        let mut seen: BTreeMap<PathBuf, Vec<Fingerprint>> = BTreeMap::new();
        for p in self
            .inner
            .plugins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            let entry = seen.entry(p.dir.clone()).or_default();
            entry.push(p.files());
            entry.extend(p.reload_error().map(|(f, _)| f));
        }
        for f in self.failures() {
            seen.entry(f.dir).or_default().push(f.files);
        }
        let present: BTreeSet<PathBuf> = plugin_dirs(&self.inner.config.plugins_dir)
            .unwrap_or_default()
            .into_iter()
            .collect();
        // A loaded plugin's component path is known: no manifest is parsed
        // for it (a change of that path changes the manifest anyway).
        let wasm_paths: BTreeMap<PathBuf, PathBuf> = self
            .inner
            .plugins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|p| (p.dir.clone(), p.manifest.wasm_path(&p.dir)))
            .collect();
        let mut changed: Vec<PathBuf> = present
            .iter()
            .filter(|d| !seen.contains_key(*d))
            .cloned()
            .collect();
        for (dir, fingerprints) in seen {
            let now = match wasm_paths.get(&dir) {
                Some(wasm) => Fingerprint::of_files(&dir, wasm),
                None => Fingerprint::of(&dir),
            };
            if !present.contains(&dir) || !fingerprints.contains(&now) {
                changed.push(dir);
            }
        }
        changed
    }
}

/// The plugin directory (a direct child of `root`) a changed path is in;
/// `None` for hidden directories and for files in `root` itself.
fn plugin_dir_of(root: &Path, path: &Path) -> Option<PathBuf> {
    let first = path.strip_prefix(root).ok()?.components().next()?;
    let dir = root.join(first);
    (!is_hidden(&dir)).then_some(dir)
}

/// Applies changed directories once each has been quiet for `debounce`.
async fn apply_changes(
    inner: std::sync::Weak<Inner>,
    mut changed: tokio::sync::mpsc::UnboundedReceiver<PathBuf>,
    debounce: Duration,
) {
    let mut due: BTreeMap<PathBuf, tokio::time::Instant> = BTreeMap::new();
    loop {
        let next = due.values().min().copied();
        tokio::select! {
            dir = changed.recv() => match dir {
                Some(dir) => {
                    due.insert(dir, tokio::time::Instant::now() + debounce);
                }
                None => return,
            },
            _ = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                let now = tokio::time::Instant::now();
                let ready: Vec<PathBuf> = due
                    .iter()
                    .filter(|(_, at)| **at <= now)
                    .map(|(d, _)| d.clone())
                    .collect();
                let Some(inner) = inner.upgrade() else { return };
                if inner.draining.load(Ordering::SeqCst) {
                    return;
                }
                let supervisor = Supervisor { inner };
                for dir in ready {
                    due.remove(&dir);
                    if let Some(outcome) = supervisor.reconcile(&dir, false).await {
                        tracing::debug!("{outcome}");
                    }
                }
            }
        }
    }
}

/// The backstop check waits at least this many times as long as its last
/// round took: with a thousand plugins a round stats a few thousand files,
/// and the check never takes more than 0.2 % of a core however many
/// plugins there are (with ten, it runs every `every`).
const POLL_COST_FACTOR: u32 = 500;

/// Looks at every plugin's files every `every` (or less often, see
/// [`POLL_COST_FACTOR`]), for what the watcher missed (or where there is
/// none).
pub(super) async fn poll(
    inner: std::sync::Weak<Inner>,
    changed: tokio::sync::mpsc::UnboundedSender<PathBuf>,
    every: Duration,
) {
    let mut wait = every;
    loop {
        tokio::time::sleep(wait).await;
        let Some(inner) = inner.upgrade() else { return };
        if inner.draining.load(Ordering::SeqCst) {
            return;
        }
        let started = std::time::Instant::now();
        let dirs = (Supervisor { inner }).changed_dirs();
        wait = every.max(started.elapsed() * POLL_COST_FACTOR);
        for dir in dirs {
            if changed.send(dir).is_err() {
                return;
            }
        }
    }
}
