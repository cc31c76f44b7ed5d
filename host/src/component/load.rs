//! Loading a component: compiled once (through the module cache), its world
//! recognised from its exports, linked once against WASI 0.2 and wasi:http,
//! and pre-instantiated, so that each process is a pooled instantiation.

use anyhow::{bail, Context as _};
use wasmtime::component::{Component, Linker};
use wasmtime::Engine;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use super::outbound;
use super::state::ComponentState;
use crate::module_cache::{self, ModuleCache, Outcome};

/// The WASI 0.2 world a component targets, as far as the host serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    /// Exports `wasi:http/incoming-handler`: one instance per HTTP request.
    Proxy,
    /// Exports `wasi:cli/run`: one instance per connection (or request).
    Command,
}

impl World {
    /// The world's WIT name, for the start-up log and messages.
    pub fn name(self) -> &'static str {
        match self {
            World::Proxy => "wasi:http/proxy",
            World::Command => "wasi:cli/command",
        }
    }
}

/// A loaded component, linked and pre-instantiated for its world.
pub struct ComponentGuest {
    pre: Pre,
}

enum Pre {
    Proxy(ProxyPre<ComponentState>),
    Command(CommandPre<ComponentState>),
}

impl ComponentGuest {
    /// The world it is served as.
    pub fn world(&self) -> World {
        match self.pre {
            Pre::Proxy(_) => World::Proxy,
            Pre::Command(_) => World::Command,
        }
    }

    /// The engine it was compiled for.
    pub fn engine(&self) -> &Engine {
        match &self.pre {
            Pre::Proxy(pre) => pre.engine(),
            Pre::Command(pre) => pre.engine(),
        }
    }

    /// Its `wasi:http/proxy` pre-instance, if it is a proxy.
    pub fn proxy(&self) -> Option<&ProxyPre<ComponentState>> {
        match &self.pre {
            Pre::Proxy(pre) => Some(pre),
            Pre::Command(_) => None,
        }
    }

    /// Its `wasi:cli/command` pre-instance, if it is a command.
    pub fn command(&self) -> Option<&CommandPre<ComponentState>> {
        match &self.pre {
            Pre::Command(pre) => Some(pre),
            Pre::Proxy(_) => None,
        }
    }
}

/// Compiles (or loads from `cache`) the component `wasm`, finds its world
/// and links it.
///
/// # Errors
/// When it is not a valid component, exports neither
/// `wasi:http/incoming-handler` nor `wasi:cli/run`, or imports what the host
/// does not provide.
pub fn load(
    engine: &Engine,
    wasm: &[u8],
    cache: Option<&ModuleCache>,
) -> anyhow::Result<(ComponentGuest, Outcome)> {
    let (component, outcome) = module_cache::load::<Component>(engine, wasm, cache)
        .context("it is not a valid WebAssembly component")?;
    let world = world_of(&component, engine)?;
    let linker = linker(engine).context("failed to build the WASI 0.2 linker")?;
    let pre = linker
        .instantiate_pre(&component)
        .map_err(anyhow::Error::from)
        // wasmtime names the missing import.
        .context("failed to link it against the host's WASI 0.2 imports")?;
    let pre = match world {
        World::Proxy => Pre::Proxy(ProxyPre::new(pre).map_err(anyhow::Error::from)?),
        World::Command => Pre::Command(CommandPre::new(pre).map_err(anyhow::Error::from)?),
    };
    Ok((ComponentGuest { pre }, outcome))
}

/// The world of `component`, from its exports (any WASI 0.2.x version).
fn world_of(component: &Component, engine: &Engine) -> anyhow::Result<World> {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    let has = |interface: &str| {
        exports
            .iter()
            .any(|name| name.starts_with(&format!("{interface}@0.2")))
    };
    if has("wasi:http/incoming-handler") {
        Ok(World::Proxy)
    } else if has("wasi:cli/run") {
        Ok(World::Command)
    } else {
        let exports = if exports.is_empty() {
            "nothing".to_owned()
        } else {
            exports
                .iter()
                .map(|name| format!("`{name}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        bail!(
            "it exports neither `wasi:http/incoming-handler` (a wasi:http/proxy component) \
             nor `wasi:cli/run` (a wasi:cli/command component): it exports {exports}"
        )
    }
}

/// WASI 0.2 (the async bindings: a blocking call suspends the fiber, never
/// the worker thread) and wasi:http, with the host's outgoing handler.
fn linker(engine: &Engine) -> anyhow::Result<Linker<ComponentState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::bindings::http::types::add_to_linker::<_, wasmtime_wasi_http::WasiHttp>(
        &mut linker,
        &Default::default(),
        |state: &mut ComponentState| wasmtime_wasi_http::WasiHttpView::http(state),
    )?;
    outbound::add_to_linker(&mut linker)?;
    Ok(linker)
}

impl std::fmt::Debug for ComponentGuest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentGuest")
            .field("world", &self.world())
            .finish_non_exhaustive()
    }
}
