//! `mnvkd-host serve`: flags → [`ServeConfig`].

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;

use super::{CacheArgs, LimitArgs};
use crate::app::{app_name, AppSettings, Mode};
use crate::manifest::Manifest;
use crate::reload::Reread;
use crate::serve::{AppSpec, ServeConfig};

/// First port of the default addresses: app N (in argument order) gets 8000 + N.
const FIRST_DEFAULT_PORT: u16 = 8000;

#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// The apps: wasm32-wasip1 commands (`.wasm`, or `.wat` text); an optional
    /// manifest `<name>.toml` beside each sets its address and limits
    #[arg(value_name = "WASM", required = true)]
    wasm: Vec<PathBuf>,
    /// Listen address, as ADDR for the only app or APP=ADDR (APP is the file
    /// stem); repeatable. Port 0 picks a free port [default: 127.0.0.1:8000,
    /// 8001, … in argument order]
    #[arg(long, value_name = "[APP=]ADDR")]
    listen: Vec<String>,
    /// Worker threads running processes [default: number of cores]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// Processes of each app alive at once; more connections wait to be accepted [default: 10000, fitted to vm.max_map_count]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_processes: Option<u32>,
    /// Serve APP over HTTP/1.1 with a process per request, CGI-style (as
    /// manifest `kind = "http"`); repeatable
    #[arg(long, value_name = "APP")]
    http: Vec<String>,
    /// On SIGTERM or SIGINT the host stops accepting at once and gives live
    /// processes this long to finish before it ends them and exits, e.g. 30s
    /// (a second signal ends them at once)
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = super::duration_arg)]
    drain_timeout: std::time::Duration,
    /// Bind listeners with SO_REUSEPORT: a second host started on the same
    /// addresses shares them, and this one, on SIGTERM, hands new
    /// connections to it before closing (zero-downtime upgrade)
    #[arg(long)]
    reuse_port: bool,
    /// Reload an app when its `.wasm` or manifest changes, as SIGHUP does:
    /// new connections get the new version, live processes finish on theirs
    #[arg(long)]
    watch: bool,
    /// Serve the admin endpoint on ADDR (port 0 picks one): /healthz,
    /// /readyz (503 once draining), /metrics (Prometheus), /processes
    /// (JSON) and / (a live page); off by default. Bind it where only
    /// operators reach: it names every client
    #[arg(long, value_name = "ADDR")]
    admin: Option<String>,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    cache: CacheArgs,
}

/// What the command line says of every app's settings, over its manifest;
/// kept so that a reload applies it again.
#[derive(Debug)]
struct Overrides {
    limits: LimitArgs,
    max_processes: Option<u32>,
    http: Vec<String>,
}

impl Overrides {
    /// The settings of the app `name` at `path`, whose manifest is `manifest`.
    fn settings(
        &self,
        path: &Path,
        name: &str,
        manifest: &Manifest,
    ) -> anyhow::Result<AppSettings> {
        let mut settings = manifest
            .settings()
            .with_context(|| format!("in `{}`", Manifest::path_for(path).display()))?;
        let mut limits = self.limits.apply(settings.limits);
        if let Some(max) = self.max_processes {
            limits.max_processes = max as usize;
        }
        settings.limits = limits
            .validated()
            .with_context(|| format!("invalid limits for app `{name}`"))?;
        if self.http.iter().any(|app| app == name) {
            settings.mode = Mode::Http;
        }
        Ok(settings)
    }
}

impl ServeArgs {
    pub(super) fn into_config(self) -> anyhow::Result<ServeConfig> {
        let names = self
            .wasm
            .iter()
            .map(|path| app_name(path))
            .collect::<anyhow::Result<Vec<_>>>()?;
        for (i, name) in names.iter().enumerate() {
            if names[..i].contains(name) {
                bail!("two apps are named `{name}`: app names (file stems) must be unique");
            }
        }
        for app in &self.http {
            if !names.contains(app) {
                bail!("--http `{app}`: no app is named `{app}`");
            }
        }
        let mut listen: Vec<Option<SocketAddr>> = vec![None; names.len()];
        for flag in &self.listen {
            let (index, addr) = match flag.split_once('=') {
                Some((app, addr)) => {
                    let index = names
                        .iter()
                        .position(|n| n == app)
                        .with_context(|| format!("--listen `{flag}`: no app is named `{app}`"))?;
                    (index, addr)
                }
                None if names.len() == 1 => (0, flag.as_str()),
                None => {
                    bail!("--listen `{flag}`: with several apps, name one: --listen APP={flag}")
                }
            };
            listen[index] = Some(resolve(addr)?);
        }
        let overrides = Overrides {
            limits: self.limits,
            max_processes: self.max_processes,
            http: self.http,
        };
        let mut apps = Vec::with_capacity(names.len());
        for (index, (path, name)) in self.wasm.into_iter().zip(names).enumerate() {
            let manifest = Manifest::load_for(&path)?;
            let settings = overrides.settings(&path, &name, &manifest)?;
            let addr = match (listen[index], &manifest.listen) {
                (Some(addr), _) => addr,
                (None, Some(addr)) => resolve(addr)
                    .with_context(|| format!("in `{}`", Manifest::path_for(&path).display()))?,
                (None, None) => default_addr(index)?,
            };
            apps.push(AppSpec {
                name,
                path,
                settings,
                listen: addr,
            });
        }
        let admin = self
            .admin
            .as_deref()
            .map(|addr| resolve(addr).context("--admin"))
            .transpose()?;
        let threads = match self.threads {
            Some(n) => n as usize,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        Ok(ServeConfig {
            apps,
            threads,
            watch: self.watch,
            reread: Reread(Arc::new(move |path: &Path, name: &str| {
                overrides.settings(path, name, &Manifest::load_for(path)?)
            })),
            drain_timeout: self.drain_timeout,
            reuse_port: self.reuse_port,
            cache: self.cache.to_cache(),
            admin,
        })
    }
}

fn resolve(addr: &str) -> anyhow::Result<SocketAddr> {
    addr.to_socket_addrs()
        .with_context(|| format!("invalid listen address `{addr}` (expected e.g. 127.0.0.1:8080)"))?
        .next()
        .with_context(|| format!("listen address `{addr}` resolves to nothing"))
}

fn default_addr(index: usize) -> anyhow::Result<SocketAddr> {
    let port = u16::try_from(index)
        .ok()
        .and_then(|i| FIRST_DEFAULT_PORT.checked_add(i))
        .context("too many apps for default ports: give --listen")?;
    Ok(SocketAddr::from(([127, 0, 0, 1], port)))
}
