//! An app: one tenant's module or component, compiled once and pre-linked,
//! with its limits and the count of its live processes.

mod log_limit;
mod metrics;
mod process_limit;

pub use log_limit::LogLimit;
pub use metrics::{AppMetrics, SPAWN_BUCKETS};
pub use process_limit::{Acquire, ProcessLimit};

use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use anyhow::{bail, Context as _};
use wasmtime::{Engine, ExternType, InstancePre, Linker, Module, ModuleExport};

use crate::component::{self, ComponentGuest, World};

use crate::config::Limits;
use crate::module_cache::{self, ModuleCache};
use crate::process::{AppHeap, ProcessState};

/// How an app's processes meet its connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The host accepts; each connection gets a new process (handle 0).
    #[default]
    Connection,
    /// One process, started with the listener as handle 0, accepts itself
    /// (and may spawn a process per connection). Restarted if it ends.
    Listener,
    /// The host speaks HTTP/1.1; each request gets a process, CGI-style.
    Http,
}

impl Mode {
    /// The name used in manifests and the start-up table.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Connection => "connection",
            Mode::Listener => "listener",
            Mode::Http => "http",
        }
    }
}

/// What an app is given besides its module: limits, environment and grants.
#[derive(Debug, Clone, Default)]
pub struct AppSettings {
    /// Limits for each process.
    pub limits: Limits,
    /// Extra environment for each process.
    pub env: Vec<(String, String)>,
    /// Arguments after the app name.
    pub args: Vec<String>,
    /// Guest stderr to the host's stderr instead of the log.
    pub terminal: bool,
    /// Addresses `connect` may reach.
    pub allow_outbound: Vec<SocketAddr>,
    /// How connections reach the processes.
    pub mode: Mode,
}

/// A loaded app, ready to start processes.
pub struct App {
    /// The file stem of its `.wasm`; names it in the table, the logs and `--listen`.
    pub name: Arc<str>,
    /// Where its module came from.
    pub path: PathBuf,
    /// The module or component, linked once; each process instantiates this.
    pub guest: Guest,
    /// Limits, environment, grants and mode, as loaded.
    pub settings: AppSettings,
    /// Live processes against `limits.max_processes`, and who waits for one
    /// to end; shared by every version of the app a reload makes.
    pub processes: Arc<ProcessLimit>,
    /// Bounds the log lines its guests can cause; shared with each process's
    /// stderr log.
    pub log_limit: Arc<LogLimit>,
    /// What its processes did, for `/metrics`; shared by every version.
    pub metrics: Arc<AppMetrics>,
    /// The micro-heap bytes of its live processes, against
    /// `max_app_memory`; shared by every version.
    pub heap: Arc<AppHeap>,
}

/// What an app's processes are instances of.
pub enum Guest {
    /// A `wasm32-wasip1` core module (layers 0 and 1), linked once.
    Module(ModuleGuest),
    /// A WASI 0.2 component (`wasi:http/proxy` or `wasi:cli/command`).
    Component(ComponentGuest),
}

/// A core module linked against the host's imports, with its `_start`
/// found once: looking the export up by name cost each process about 600
/// instructions (hashing the name, searching the module's exports).
#[derive(Clone)]
pub struct ModuleGuest {
    /// The module's pre-instance.
    pub pre: InstancePre<ProcessState>,
    /// Its `_start` export, checked at load to take and return nothing.
    pub start: ModuleExport,
    /// Its exported `memory`, if any: resolved once here, so that a
    /// process finds its micro-heap without a lookup by name (a hash of
    /// the name per process, which CGI pays per request).
    pub memory: Option<ModuleExport>,
}

impl App {
    /// Compiles (or loads from `cache`) and links the module or component
    /// at `path`. A `wasi:http/proxy` component is served over HTTP (its
    /// mode becomes `http` unless the settings chose another, which is an
    /// error but for `http`).
    ///
    /// # Errors
    /// When the file is missing or not Wasm, when it imports what the host
    /// does not provide, when a module has no `_start` command entry, or a
    /// component exports neither `wasi:http/incoming-handler` nor `wasi:cli/run`.
    pub fn load(
        engine: &Engine,
        linker: &Linker<ProcessState>,
        path: &Path,
        mut settings: AppSettings,
        cache: Option<&ModuleCache>,
    ) -> anyhow::Result<App> {
        let shown = path.display();
        let name: Arc<str> = app_name(path)?.into();
        let bytes = std::fs::read(path).with_context(|| format!("failed to read `{shown}`"))?;
        let started = Instant::now();
        let wasm = to_binary(path, &bytes)
            .with_context(|| format!("`{shown}` is not a valid WebAssembly module"))?;
        let guest = if wasm.starts_with(COMPONENT_HEADER) {
            let (guest, outcome) = component::load(engine, &wasm, cache)
                .with_context(|| format!("failed to load the component `{shown}`"))?;
            settings.mode = component_mode(guest.world(), settings.mode)
                .with_context(|| format!("cannot serve the component `{shown}`"))?;
            let ms = started.elapsed().as_secs_f64() * 1e3;
            tracing::info!(app = %name, ms = %format_args!("{ms:.1}"), cache = %outcome, world = guest.world().name(), "compiled component");
            Guest::Component(guest)
        } else {
            Guest::Module(link_module(
                engine, linker, &wasm, cache, &name, path, started,
            )?)
        };
        Ok(App {
            processes: Arc::new(ProcessLimit::new(
                Arc::clone(&name),
                settings.limits.max_processes,
            )),
            name,
            path: path.to_path_buf(),
            guest,
            log_limit: Arc::new(LogLimit::new(settings.limits.log_rate)),
            metrics: Arc::default(),
            heap: Arc::default(),
            settings,
        })
    }

    /// Its core module's pre-instance; `None` for a component.
    pub fn module(&self) -> Option<&InstancePre<ProcessState>> {
        match &self.guest {
            Guest::Module(guest) => Some(&guest.pre),
            Guest::Component(_) => None,
        }
    }

    /// The engine its guest was compiled for.
    pub fn engine(&self) -> &Engine {
        match &self.guest {
            Guest::Module(guest) => guest.pre.module().engine(),
            Guest::Component(guest) => guest.engine(),
        }
    }
}

/// The mode a component of `world` is served in when the settings asked
/// for `asked`: a proxy speaks HTTP (the default `connection` becomes
/// `http`); a command reads its connection as stdin and stdout (inetd) or a
/// request CGI-style (`http`); neither has a listener-mode process.
fn component_mode(world: World, asked: Mode) -> anyhow::Result<Mode> {
    match (world, asked) {
        (_, Mode::Listener) => bail!(
            "a component has no listener mode (kind = \"listener\" needs the mnvkd imports of a core module)"
        ),
        (World::Proxy, Mode::Connection | Mode::Http) => Ok(Mode::Http),
        (World::Command, mode) => Ok(mode),
    }
}

/// Compiles (or loads from `cache`) and links the core module `wasm`,
/// checking its `_start`.
fn link_module(
    engine: &Engine,
    linker: &Linker<ProcessState>,
    wasm: &[u8],
    cache: Option<&ModuleCache>,
    name: &str,
    path: &Path,
    started: Instant,
) -> anyhow::Result<ModuleGuest> {
    let shown = path.display();
    {
        let (module, outcome) = module_cache::load::<Module>(engine, wasm, cache)
            .with_context(|| format!("`{shown}` is not a valid WebAssembly module"))?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        let start = match (module.get_export("_start"), module.get_export_index("_start")) {
            (Some(ExternType::Func(func)), Some(start)) if func.params().len() == 0 && func.results().len() == 0 => start,
            (Some(_), _) => bail!("`{shown}` exports `_start` with the wrong type (want a func with no params or results)"),
            _ => bail!("`{shown}` has no `_start` export: build it as a wasm32-wasip1 command (a bin crate)"),
        };
        let pre = linker
            .instantiate_pre(&module)
            .map_err(anyhow::Error::from)
            // wasmtime names the missing import: "unknown import: `env::f` has not been defined".
            .with_context(|| format!("failed to link `{shown}` against the host's imports"))?;
        // Logged once the app is good, so a bad module's one line is its error.
        tracing::info!(app = %name, ms = %format_args!("{ms:.1}"), cache = %outcome, "compiled module");
        let memory = match module.get_export("memory") {
            Some(ExternType::Memory(_)) => module.get_export_index("memory"),
            _ => None,
        };
        Ok(ModuleGuest { pre, start, memory })
    }
}

impl App {
    /// This app as a new version of `old` (after a reload): it shares the
    /// old one's process count, log budget and metrics, so processes of
    /// both versions count against one limit and in one set of counters.
    pub fn succeeding(mut self, old: &App) -> App {
        self.processes = Arc::clone(&old.processes);
        self.log_limit = Arc::clone(&old.log_limit);
        self.metrics = Arc::clone(&old.metrics);
        self.heap = Arc::clone(&old.heap);
        self
    }
}

/// The version of an app that new connections get; a reload replaces it,
/// while processes already running keep the `Arc<App>` they started with.
#[derive(Debug)]
pub struct CurrentApp {
    app: RwLock<Arc<App>>,
}

impl CurrentApp {
    /// `app` as the current version.
    pub fn new(app: Arc<App>) -> CurrentApp {
        CurrentApp {
            app: RwLock::new(app),
        }
    }

    /// The version new connections get now.
    pub fn get(&self) -> Arc<App> {
        Arc::clone(&self.app.read().unwrap())
    }

    /// Makes `app` the version new connections get.
    pub fn set(&self, app: Arc<App>) {
        *self.app.write().unwrap() = app;
    }
}

/// How a component binary starts: the magic, then version 13 of layer 1
/// (a core module has version 1 of layer 0).
pub const COMPONENT_HEADER: &[u8] = b"\0asm\x0d\x00\x01\x00";

/// The module or component binary in `bytes`: as is, or from text when the
/// file ends in `.wat`.
fn to_binary<'a>(path: &Path, bytes: &'a [u8]) -> anyhow::Result<Cow<'a, [u8]>> {
    if path.extension().is_some_and(|ext| ext == "wat") {
        // The first line of a wat error says what and where; the rest is a picture.
        let text = std::str::from_utf8(bytes).context("the text is not UTF-8")?;
        Ok(Cow::Owned(wat::parse_str(text).map_err(|err| {
            let message = err.to_string();
            anyhow::anyhow!("{}", message.lines().next().unwrap_or_default().to_owned())
        })?))
    } else if bytes.starts_with(b"\0asm") {
        Ok(Cow::Borrowed(bytes))
    } else {
        bail!("it does not start with the `\\0asm` magic (text modules must end in `.wat`)");
    }
}

/// The app name for `path`: its file stem.
///
/// # Errors
/// When the path has no UTF-8 file stem.
pub fn app_name(path: &Path) -> anyhow::Result<String> {
    path.file_stem()
        .and_then(|stem| stem.to_str())
        .map(str::to_owned)
        .with_context(|| format!("cannot name an app after `{}`", path.display()))
}

impl std::fmt::Debug for ModuleGuest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleGuest").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Guest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Guest::Module(_) => f.write_str("Module"),
            Guest::Component(guest) => write!(f, "Component({})", guest.world().name()),
        }
    }
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("guest", &self.guest)
            .field("settings", &self.settings)
            .field("processes", &self.processes)
            .finish_non_exhaustive()
    }
}
