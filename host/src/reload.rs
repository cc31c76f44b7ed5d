//! Hot reload: on SIGHUP (or, with `--watch`, when an app's `.wasm` or
//! manifest changes) every app's module and manifest are read again. New
//! connections get the new version; processes already running finish on the
//! one they started with. A version that fails to compile, link or validate
//! is logged and the old one goes on serving.
//!
//! What a reload cannot change, because it was fixed when the host started,
//! is refused for that app with a reason: its kind (`connection`, `listener`,
//! `http`), a micro-heap cap above the pool's slots. Its listen address and
//! process share stay as they were. A listener-mode app's one process keeps
//! its version until it ends and is restarted.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::bail;
use wasmtime::{Engine, Linker};

use crate::app::{App, AppSettings, CurrentApp};
use crate::manifest::Manifest;
use crate::module_cache::ModuleCache;
use crate::process::ProcessState;

/// Reads the settings of the app at a `.wasm` path with a name.
pub type ReadSettings = dyn Fn(&Path, &str) -> anyhow::Result<AppSettings> + Send + Sync;

/// Reads an app's settings again: its manifest, with the command line's
/// overrides on top, as at start-up.
#[derive(Clone)]
pub struct Reread(pub Arc<ReadSettings>);

impl fmt::Debug for Reread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reread(..)")
    }
}

/// What a reload needs of the running host.
#[derive(Debug)]
pub struct Reloader<'a> {
    /// The engine every version must be compiled for.
    pub engine: &'a Engine,
    /// The host's imports.
    pub linker: &'a Linker<ProcessState>,
    /// The compiled-module cache, if on.
    pub cache: Option<&'a ModuleCache>,
    /// The largest micro-heap the pool's slots hold.
    pub max_memory: u64,
    /// How settings are read again.
    pub reread: &'a Reread,
}

impl Reloader<'_> {
    /// Reloads every app; each one that fails keeps its current version.
    pub fn reload_all(&self, apps: &[Arc<CurrentApp>]) {
        for current in apps {
            let old = current.get();
            match self.reload(&old) {
                Ok(new) => {
                    current.set(Arc::new(new));
                    tracing::info!(app = %old.name, "reloaded: new connections get the new version");
                }
                Err(err) => {
                    tracing::warn!(app = %old.name, "reload failed, the old version goes on serving: {err:#}");
                }
            }
        }
        crate::allocator::return_freed_memory();
    }

    /// The next version of `old`, read from its files.
    fn reload(&self, old: &App) -> anyhow::Result<App> {
        let mut settings = (self.reread.0)(&old.path, &old.name)?;
        if settings.limits.max_memory > self.max_memory {
            bail!(
                "max_memory {} is above the {} the host's process slots were made for: restart the host to apply that",
                crate::config::format_size(settings.limits.max_memory),
                crate::config::format_size(self.max_memory)
            );
        }
        // The share of the pool was fixed at start-up.
        settings.limits.max_processes = old.settings.limits.max_processes;
        let new = App::load(self.engine, self.linker, &old.path, settings, self.cache)?;
        // Compared as loaded: a proxy component's `connection` became `http`.
        if new.settings.mode != old.settings.mode {
            bail!(
                "its kind changed from `{}` to `{}`: restart the host to apply that",
                old.settings.mode.name(),
                new.settings.mode.name()
            );
        }
        Ok(new.succeeding(old))
    }
}

/// How often `--watch` looks at the files.
const WATCH_EVERY: Duration = Duration::from_millis(250);

/// With `--watch`: a thread that sends this process SIGHUP when any of the
/// apps' `.wasm` files or manifests changes (by modification time or size),
/// once the change has held still for one look, so a file still being
/// written is not read half-way.
pub fn watch(paths: Vec<PathBuf>) {
    let files: Vec<PathBuf> = paths
        .iter()
        .flat_map(|wasm| [wasm.clone(), Manifest::path_for(wasm)])
        .collect();
    let look = move || -> Vec<Option<(SystemTime, u64)>> {
        files
            .iter()
            .map(|file| {
                let meta = std::fs::metadata(file).ok()?;
                Some((meta.modified().ok()?, meta.len()))
            })
            .collect()
    };
    // Taken here, not on the thread: a change made once this returns is
    // seen however late the thread first runs.
    let mut loaded = look();
    std::thread::Builder::new()
        .name("mnvkd-watch".into())
        .spawn(move || {
            let mut seen = loaded.clone();
            loop {
                std::thread::sleep(WATCH_EVERY);
                let now = look();
                if now == seen && now != loaded {
                    loaded = now.clone();
                    // SAFETY: kill(2) sends SIGHUP to this very process,
                    // whose handler (signal-hook's) only records it.
                    unsafe { libc::kill(libc::getpid(), libc::SIGHUP) };
                }
                seen = now;
            }
        })
        .expect("the watch thread starts");
}
