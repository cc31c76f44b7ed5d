//! `guests/<name>.toml`, the optional manifest beside an app's `.wasm`.
//!
//! ```toml
//! listen = "127.0.0.1:8080"   # where the app's listener binds
//! max_memory = "16MiB"        # micro-heap cap per process
//! cpu_budget = "5s"           # compute time without blocking before a kill
//! max_processes = 1000        # processes of this app alive at once
//! max_handles = 1024          # handles one process may have open
//! pipe_buffer = "64KiB"       # bytes a pipe holds before its writer blocks
//! allow_outbound = ["127.0.0.1:6379"]  # the only addresses `connect` reaches
//! kind = "connection"         # or "listener": one process accepts itself,
//!                             # or "http": the host speaks HTTP, a process per request (CGI)
//! max_body = "1MiB"           # http: largest request body
//! head_timeout = "10s"        # http: a begun request head must arrive in this time
//! idle_timeout = "30s"        # http: keep-alive connections idle this long are closed
//! body_timeout = "10s"        # http: longest wait for request body bytes (408)
//! request_timeout = "60s"     # http: one request, head to response end (504; docs/cgi.md)
//! max_cpu = "5m"              # CPU time one process may use in all ("off": none)
//! max_wall = "off"            # time one process may live ("off": no limit)
//! max_children = 64           # live processes one connection's tree may spawn
//! max_host_memory = "1MiB"    # pipe and stdio buffers one process may hold
//! max_app_memory = "2GiB"     # micro-heaps of all live processes together ("off": none)
//! log_rate = 5                # log lines a second the app's guests may cause
//!
//! [env]                       # extra environment for every process
//! GREETING = "hello"
//! ```
//!
//! Unknown keys are errors, so a typo is caught at start-up, not in production.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use crate::app::{AppSettings, Mode};
use crate::config::{parse_duration, parse_optional_duration, parse_size, Limits};

/// A parsed manifest; every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Listen address, e.g. `127.0.0.1:8080`.
    pub listen: Option<String>,
    /// Micro-heap cap, e.g. `16MiB`.
    pub max_memory: Option<String>,
    /// CPU budget, e.g. `5s`.
    pub cpu_budget: Option<String>,
    /// Processes alive at once.
    pub max_processes: Option<usize>,
    /// Handles per process.
    pub max_handles: Option<usize>,
    /// Pipe buffer, e.g. `64KiB`.
    pub pipe_buffer: Option<String>,
    /// Outbound allowlist, `IP:port` each.
    #[serde(default)]
    pub allow_outbound: Vec<String>,
    /// `connection` (default), `listener` or `http`.
    #[serde(default)]
    pub kind: Mode,
    /// HTTP: largest request body, e.g. `1MiB`.
    pub max_body: Option<String>,
    /// HTTP: head timeout, e.g. `10s`.
    pub head_timeout: Option<String>,
    /// HTTP: keep-alive idle timeout, e.g. `30s`.
    pub idle_timeout: Option<String>,
    /// HTTP: longest pause in a request body, e.g. `10s`.
    pub body_timeout: Option<String>,
    /// HTTP: one request from head to response end, e.g. `60s`.
    pub request_timeout: Option<String>,
    /// CPU time per process in all, e.g. `5m`, or `off`.
    pub max_cpu: Option<String>,
    /// Lifetime per process, e.g. `1h`, or `off`.
    pub max_wall: Option<String>,
    /// Live processes one connection's process tree may spawn.
    pub max_children: Option<usize>,
    /// Host memory (pipe and stdio buffers) per process, e.g. `1MiB`.
    pub max_host_memory: Option<String>,
    /// Micro-heap bytes of all live processes together, e.g. `2GiB`, or `off`.
    pub max_app_memory: Option<String>,
    /// Log lines per second the app's guests may cause.
    pub log_rate: Option<u32>,
    /// Environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

impl Manifest {
    /// The manifest path for an app's `.wasm`: same folder, same stem, `.toml`.
    pub fn path_for(wasm: &Path) -> PathBuf {
        wasm.with_extension("toml")
    }

    /// Reads the manifest beside `wasm`; a missing file is an empty manifest.
    ///
    /// # Errors
    /// When the file exists but cannot be read or parsed.
    pub fn load_for(wasm: &Path) -> anyhow::Result<Manifest> {
        let path = Manifest::path_for(wasm);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Manifest::default()),
            Err(err) => {
                return Err(err).with_context(|| format!("failed to read `{}`", path.display()))
            }
        };
        toml::from_str(&text).map_err(|err| {
            // One line: the message and where, without toml's source excerpt.
            let line = err
                .span()
                .map_or(1, |span| text[..span.start].matches('\n').count() + 1);
            anyhow::anyhow!(
                "invalid manifest `{}`: line {line}: {}",
                path.display(),
                err.message().trim_end()
            )
        })
    }

    /// `defaults` with this manifest's limits applied.
    ///
    /// # Errors
    /// When a size or duration does not parse.
    pub fn apply(&self, mut limits: Limits) -> anyhow::Result<Limits> {
        if let Some(size) = &self.max_memory {
            limits.max_memory = parse_size(size).context("in `max_memory`")?;
        }
        if let Some(budget) = &self.cpu_budget {
            limits.cpu_budget = parse_duration(budget).context("in `cpu_budget`")?;
        }
        if let Some(max) = self.max_processes {
            limits.max_processes = max;
        }
        if let Some(max) = self.max_handles {
            limits.max_handles = max;
        }
        if let Some(size) = &self.pipe_buffer {
            let size = parse_size(size).context("in `pipe_buffer`")?;
            limits.pipe_buffer = usize::try_from(size).context("`pipe_buffer` is too large")?;
        }
        if let Some(size) = &self.max_body {
            limits.max_body = parse_size(size).context("in `max_body`")?;
        }
        if let Some(timeout) = &self.head_timeout {
            limits.head_timeout = parse_duration(timeout).context("in `head_timeout`")?;
        }
        if let Some(timeout) = &self.idle_timeout {
            limits.idle_timeout = parse_duration(timeout).context("in `idle_timeout`")?;
        }
        if let Some(timeout) = &self.body_timeout {
            limits.body_timeout = parse_duration(timeout).context("in `body_timeout`")?;
        }
        if let Some(timeout) = &self.request_timeout {
            limits.request_timeout = parse_duration(timeout).context("in `request_timeout`")?;
        }
        if let Some(max) = &self.max_cpu {
            limits.max_cpu = parse_optional_duration(max).context("in `max_cpu`")?;
        }
        if let Some(max) = &self.max_wall {
            limits.max_wall = parse_optional_duration(max).context("in `max_wall`")?;
        }
        if let Some(max) = self.max_children {
            limits.max_children = max;
        }
        if let Some(size) = &self.max_host_memory {
            limits.max_host_memory = Some(parse_size(size).context("in `max_host_memory`")?);
        }
        if let Some(size) = &self.max_app_memory {
            limits.max_app_memory = if size.trim().eq_ignore_ascii_case("off") {
                None
            } else {
                Some(parse_size(size).context("in `max_app_memory`")?)
            };
        }
        if let Some(rate) = self.log_rate {
            limits.log_rate = rate;
        }
        Ok(limits)
    }

    /// The app settings this manifest describes, on top of default limits.
    ///
    /// # Errors
    /// When a size, duration or address does not parse.
    pub fn settings(&self) -> anyhow::Result<AppSettings> {
        let allow_outbound = self
            .allow_outbound
            .iter()
            .map(|addr| {
                addr.parse()
                    .with_context(|| format!("in `allow_outbound`: `{addr}` is not an IP:port"))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(AppSettings {
            limits: self.apply(Limits::default())?,
            env: self.env.clone().into_iter().collect(),
            allow_outbound,
            mode: self.kind,
            ..AppSettings::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_rejected() {
        let err = toml::from_str::<Manifest>("max_memroy = \"1MiB\"").unwrap_err();
        assert!(err.to_string().contains("max_memroy"), "{err}");
    }

    #[test]
    fn manifest_overrides_defaults() {
        let manifest: Manifest =
            toml::from_str("max_memory = \"1MiB\"\ncpu_budget = \"250ms\"\n[env]\nA = \"b\"")
                .unwrap();
        let limits = manifest.apply(Limits::default()).unwrap();
        assert_eq!(limits.max_memory, 1 << 20);
        assert_eq!(limits.cpu_budget, std::time::Duration::from_millis(250));
        assert_eq!(manifest.env["A"], "b");
    }

    #[test]
    fn an_app_memory_total_is_a_size_or_off() {
        let parse = |text: &str| {
            let manifest: Manifest = toml::from_str(text).unwrap();
            manifest.apply(Limits::default())
        };
        let capped = parse("max_app_memory = \"1GiB\"").unwrap();
        assert_eq!(capped.max_app_memory, Some(1 << 30));
        assert_eq!(
            parse("max_app_memory = \"off\"").unwrap().max_app_memory,
            None
        );
        assert!(parse("max_app_memory = \"lots\"").is_err());
    }

    #[test]
    fn grants_and_mode_parse() {
        let manifest: Manifest =
            toml::from_str("allow_outbound = [\"127.0.0.1:6379\"]\nkind = \"listener\"").unwrap();
        let settings = manifest.settings().unwrap();
        assert_eq!(
            settings.allow_outbound,
            vec!["127.0.0.1:6379".parse().unwrap()]
        );
        assert_eq!(settings.mode, Mode::Listener);
        let bad: Manifest = toml::from_str("allow_outbound = [\"localhost\"]").unwrap();
        assert!(bad.settings().is_err());
    }
}
