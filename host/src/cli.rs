//! The command line: clap types and their conversion into configurations.
//! No runtime logic lives here; see [`crate::serve`] and [`crate::run_once`].

mod run;
mod serve;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::config::{parse_duration, parse_optional_duration, parse_size, Limits};
use crate::module_cache::ModuleCache;

/// Exit status for a guest that failed (trap, CPU budget) in `run`.
pub const EXIT_GUEST_FAILED: u8 = 1;
/// Exit status for usage and host errors (bad flags, bad module, address in use).
pub const EXIT_HOST_ERROR: u8 = 2;

const AFTER_HELP: &str = "\
Exit status: 0 ok; 1 the guest failed (trap, CPU budget) in `run`, or the
guest's own non-zero exit status; 2 usage or host error (bad flag, unreadable
or invalid module, missing import or `_start`, address in use).

Logging: MNVKD_LOG=debug (or any tracing filter, e.g. `mnvkd_host=trace`).";

/// M:N virtual kernel daemon for WebAssembly: one micro-process per connection.
#[derive(Debug, Parser)]
#[command(name = "mnvkd-host", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// Log lines on stderr as `text` (for people) or `json` (one object a
    /// line, for log collectors)
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// One line of text per event.
    Text,
    /// One JSON object per event, fields included.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve apps: each accepted TCP connection gets its own micro-process.
    Serve(serve::ServeArgs),
    /// Run one guest with this terminal's stdin/stdout as its connection.
    Run(run::RunArgs),
}

/// Limit flags shared by `serve` and `run`; each overrides the manifests.
#[derive(Debug, Args)]
struct LimitArgs {
    /// Micro-heap cap per process, e.g. 16MiB [default: 16MiB]
    #[arg(long, value_name = "SIZE", value_parser = size_arg)]
    max_memory: Option<u64>,
    /// CPU time a process may compute without blocking before it is killed, e.g. 5s or 250ms [default: 5s]
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    cpu_budget: Option<std::time::Duration>,
    /// Handles one process may have open at once; for a component, its WASI resources [default: 1024]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_handles: Option<u32>,
    /// Bytes a pipe holds before its writer blocks, e.g. 64KiB [default: 64KiB]
    #[arg(long, value_name = "SIZE", value_parser = size_arg)]
    pipe_buffer: Option<u64>,
    /// CPU time one process may use in all, blocked or not, e.g. 5m; `off` for no limit [default: 5m]
    #[arg(long, value_name = "DURATION|off", value_parser = optional_duration_arg)]
    max_cpu: Option<DurationOrOff>,
    /// Wall-clock time one process may live, e.g. 1h; `off` for no limit [default: off]
    #[arg(long, value_name = "DURATION|off", value_parser = optional_duration_arg)]
    max_wall: Option<DurationOrOff>,
    /// Live processes one connection's process tree may add with spawn [default: 64]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32))]
    max_children: Option<u32>,
    /// Host memory (pipe and stdio buffers) one process may hold, e.g. 1MiB [default: 16 pipe buffers]
    #[arg(long, value_name = "SIZE", value_parser = size_arg)]
    max_host_memory: Option<u64>,
    /// Micro-heap bytes all live processes of one app may hold together, e.g. 2GiB;
    /// a growth past it fails as one past --max-memory does [default: off]
    #[arg(long, value_name = "SIZE|off", value_parser = optional_size_arg)]
    max_app_memory: Option<SizeOrOff>,
}

/// The compiled-module cache flag shared by `serve` and `run`.
#[derive(Debug, Args)]
struct CacheArgs {
    /// Compile every module afresh, reading and writing no compiled-module
    /// cache [default: cache in $XDG_CACHE_HOME/mnvkd-host, else ~/.cache/mnvkd-host]
    #[arg(long)]
    no_cache: bool,
}

impl CacheArgs {
    /// The cache to use, if any.
    fn to_cache(&self) -> Option<ModuleCache> {
        if self.no_cache {
            None
        } else {
            ModuleCache::from_env()
        }
    }
}

impl LimitArgs {
    fn apply(&self, mut limits: Limits) -> Limits {
        if let Some(max_memory) = self.max_memory {
            limits.max_memory = max_memory;
        }
        if let Some(cpu_budget) = self.cpu_budget {
            limits.cpu_budget = cpu_budget;
        }
        if let Some(max_handles) = self.max_handles {
            limits.max_handles = max_handles as usize;
        }
        if let Some(pipe_buffer) = self.pipe_buffer {
            limits.pipe_buffer = usize::try_from(pipe_buffer).unwrap_or(usize::MAX);
        }
        if let Some(max_cpu) = self.max_cpu {
            limits.max_cpu = max_cpu.0;
        }
        if let Some(max_wall) = self.max_wall {
            limits.max_wall = max_wall.0;
        }
        if let Some(max_children) = self.max_children {
            limits.max_children = max_children as usize;
        }
        if let Some(max_host_memory) = self.max_host_memory {
            limits.max_host_memory = Some(max_host_memory);
        }
        if let Some(max_app_memory) = self.max_app_memory {
            limits.max_app_memory = max_app_memory.0;
        }
        limits
    }
}

/// A size flag that `off` turns off (a newtype, as [`DurationOrOff`]).
#[derive(Debug, Clone, Copy)]
struct SizeOrOff(Option<u64>);

fn optional_size_arg(text: &str) -> Result<SizeOrOff, String> {
    if text.trim().eq_ignore_ascii_case("off") {
        return Ok(SizeOrOff(None));
    }
    size_arg(text).map(|size| SizeOrOff(Some(size)))
}

fn size_arg(text: &str) -> Result<u64, String> {
    parse_size(text).map_err(|err| format!("{err:#}"))
}

/// A duration flag that `off` turns off (a newtype: clap reads a bare
/// `Option<Option<_>>` as a flag whose value may be left out).
#[derive(Debug, Clone, Copy)]
struct DurationOrOff(Option<std::time::Duration>);

fn optional_duration_arg(text: &str) -> Result<DurationOrOff, String> {
    parse_optional_duration(text)
        .map(DurationOrOff)
        .map_err(|err| format!("{err:#}"))
}

pub(crate) fn duration_arg(text: &str) -> Result<std::time::Duration, String> {
    parse_duration(text).map_err(|err| format!("{err:#}"))
}

/// Logs go to stderr; `MNVKD_LOG` sets the filter (default `info` for
/// `serve`, `warn` for `run`, whose terminal belongs to the guest).
pub fn init_logging(cli: &Cli) {
    // wasmtime-wasi's per-call spans would clutter every guest stderr line.
    let default = match cli.command {
        Command::Serve(_) => "info,wasmtime_wasi=error",
        Command::Run(_) => "warn",
    };
    let filter = match std::env::var("MNVKD_LOG") {
        Ok(text) => {
            EnvFilter::try_new(quiet_wasi(&text)).unwrap_or_else(|_| EnvFilter::new(default))
        }
        Err(_) => EnvFilter::new(default),
    };
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match cli.log_format {
        LogFormat::Text => fmt
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => fmt.json().with_current_span(false).init(),
    }
}

/// `filter` with wasmtime-wasi's warnings off unless it names that crate:
/// a guest causes them (a WASI import it calls is not implemented, e.g.
/// `sock_shutdown`) as often as it likes, and they pass no app's log limit.
fn quiet_wasi(filter: &str) -> String {
    if filter.contains("wasmtime_wasi") {
        filter.to_owned()
    } else {
        format!("{filter},wasmtime_wasi=error")
    }
}

/// Runs the parsed command.
///
/// # Errors
/// Host and usage errors; the caller prints them and exits with [`EXIT_HOST_ERROR`].
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            crate::serve::serve(args.into_config()?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => {
            let status = crate::run_once::run(args.into_config()?)?;
            Ok(ExitCode::from(status))
        }
    }
}
