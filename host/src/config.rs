//! Per-app limits and the human-friendly sizes and durations they are written in.
//!
//! Limits are validated once, when an app is loaded; the kernel and the
//! processes only read them. Parsing of manifests lives in `manifest.rs`.

use std::time::Duration;

use anyhow::{bail, Context};

/// Bytes in one Wasm page: memory limits are rounded up to whole pages.
pub const WASM_PAGE: u64 = 64 * 1024;

/// What one app's processes may use. Command-line flags override the manifest,
/// which overrides these defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest micro-heap (linear memory) of one process, in bytes; a multiple of [`WASM_PAGE`].
    pub max_memory: u64,
    /// CPU time a process may compute without blocking before it is killed.
    pub cpu_budget: Duration,
    /// Most processes of this app alive at once; further connections wait in
    /// the accept queue, and `spawn` returns `limit`.
    pub max_processes: usize,
    /// Most handles one process has open at once.
    pub max_handles: usize,
    /// Bytes a pipe buffers before its writer blocks.
    pub pipe_buffer: usize,
    /// HTTP apps: largest request body, in bytes (more gets 413).
    pub max_body: u64,
    /// HTTP apps: time for a request head to arrive once begun (else 408).
    pub head_timeout: Duration,
    /// HTTP apps: time a keep-alive connection may idle between requests.
    pub idle_timeout: Duration,
    /// HTTP apps: longest pause while the client sends a request body (else 408).
    pub body_timeout: Duration,
    /// HTTP apps: time one request may take from its head to the end of its
    /// response; past it the process is ended (504, or 408 while the body is
    /// still arriving).
    pub request_timeout: Duration,
    /// CPU time one process may use in all, blocked or not: the hard limit
    /// beside `cpu_budget`, which a process that blocks now and then never
    /// reaches. `None`: no limit.
    pub max_cpu: Option<Duration>,
    /// Wall-clock time one process may live. `None` (the default): no limit.
    pub max_wall: Option<Duration>,
    /// Most live processes one connection's process tree may add by `spawn`
    /// (children, grandchildren, …, orphans included); past it `spawn` returns `limit`.
    pub max_children: usize,
    /// Host memory (pipe and stdio buffers) one process may hold, in bytes;
    /// past it the write that needs more returns `limit`. `None`: 16 pipe buffers.
    pub max_host_memory: Option<u64>,
    /// Micro-heap bytes all the app's live processes may hold together; a
    /// growth past it fails as one past `max_memory` does. `None` (the
    /// default): only `max_memory` per process bounds them.
    pub max_app_memory: Option<u64>,
    /// Log lines per second the app's guests may cause (their stderr, denied
    /// `connect`s, traps); the rest are counted and reported, not written.
    pub log_rate: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_memory: 16 * 1024 * 1024,
            cpu_budget: Duration::from_secs(5),
            max_processes: 10_000,
            max_handles: 1024,
            pipe_buffer: 64 * 1024,
            max_body: 1 << 20,
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            max_cpu: Some(Duration::from_secs(300)),
            max_wall: None,
            max_children: 64,
            max_host_memory: None,
            max_app_memory: None,
            log_rate: 5,
        }
    }
}

impl Limits {
    /// Checks that the limits make sense, rounding the memory cap up to whole pages.
    ///
    /// # Errors
    /// When a limit is zero or the memory cap is over 2 GiB. (A byte count an
    /// import returns fits its non-negative `s32` result because one transfer
    /// moves at most 1 GiB, `abi::MAX_TRANSFER`: a 2 GiB cap alone did not
    /// ensure it, 2^31 reads as `i32::MIN`.)
    pub fn validated(mut self) -> anyhow::Result<Limits> {
        if self.max_memory == 0 || self.max_memory > 2 * 1024 * 1024 * 1024 {
            bail!("max-memory must be between 64KiB and 2GiB");
        }
        self.max_memory = self.max_memory.div_ceil(WASM_PAGE) * WASM_PAGE;
        if self.cpu_budget.is_zero() {
            bail!("cpu-budget must be more than 0");
        }
        if self.max_processes == 0 {
            bail!("max-processes must be at least 1");
        }
        if self.max_handles == 0 {
            bail!("max-handles must be at least 1");
        }
        if self.pipe_buffer == 0 || self.pipe_buffer > 64 << 20 {
            bail!("pipe-buffer must be between 1B and 64MiB");
        }
        for (name, timeout) in [
            ("head-timeout", self.head_timeout),
            ("idle-timeout", self.idle_timeout),
            ("body-timeout", self.body_timeout),
            ("request-timeout", self.request_timeout),
        ] {
            if timeout.is_zero() {
                bail!("{name} must be more than 0");
            }
        }
        if self.log_rate == 0 {
            bail!("log-rate must be at least 1");
        }
        if self.max_app_memory.is_some_and(|cap| cap < self.max_memory) {
            bail!("max-app-memory must be at least max-memory");
        }
        if self.max_host_memory == Some(0) {
            bail!("max-host-memory must be at least 1B");
        }
        Ok(self)
    }

    /// Host memory one process may hold: `max_host_memory`, or 16 pipe buffers.
    pub fn host_memory(&self) -> u64 {
        self.max_host_memory.unwrap_or(16 * self.pipe_buffer as u64)
    }
}

/// Parses an optional limit: a duration as [`parse_duration`], or `off`
/// for no limit.
///
/// # Errors
/// When the text is neither `off` nor a duration.
pub fn parse_optional_duration(text: &str) -> anyhow::Result<Option<Duration>> {
    if text.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    parse_duration(text).map(Some)
}

/// Parses a size such as `16MiB`, `512KiB`, `1GiB`, `65536` (bytes); `K`, `M`, `G`,
/// `KB`, `MB`, `GB` are read as binary units too.
///
/// # Errors
/// When the text is not a number followed by a known unit.
pub fn parse_size(text: &str) -> anyhow::Result<u64> {
    let (text, number, unit) = number_and_unit(text)
        .with_context(|| format!("invalid size `{}` (expected e.g. 16MiB)", text.trim()))?;
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => bail!("invalid size `{text}`: unknown unit `{unit}` (use KiB, MiB or GiB)"),
    };
    number
        .checked_mul(scale)
        .with_context(|| format!("size `{text}` is too large"))
}

/// Parses a duration such as `5s`, `250ms`, `2m` or `100us`.
///
/// # Errors
/// When the text is not a number followed by `us`, `ms`, `s` or `m`.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let (text, number, unit) = number_and_unit(text).with_context(|| {
        format!(
            "invalid duration `{}` (expected e.g. 5s or 250ms)",
            text.trim()
        )
    })?;
    Ok(match unit {
        "us" => Duration::from_micros(number),
        "ms" => Duration::from_millis(number),
        "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number.saturating_mul(60)),
        _ => bail!("invalid duration `{text}`: give a unit (us, ms, s or m)"),
    })
}

/// Splits `12MiB` into (the trimmed text, 12, "MiB").
fn number_and_unit(text: &str) -> Result<(&str, u64, &str), std::num::ParseIntError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    Ok((text, digits.parse()?, unit.trim()))
}

/// Formats a byte count the way [`parse_size`] reads it, for the start-up table.
pub fn format_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{}GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{}MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{}KiB", b >> 10),
        b => format!("{b}B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_units() {
        assert_eq!(parse_size("16MiB").unwrap(), 16 << 20);
        assert_eq!(parse_size("512k").unwrap(), 512 << 10);
        assert_eq!(parse_size("65536").unwrap(), 65536);
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999999GiB").is_err());
    }

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert!(parse_duration("5").is_err());
    }

    #[test]
    fn optional_durations_turn_off() {
        assert_eq!(parse_optional_duration("off").unwrap(), None);
        assert_eq!(
            parse_optional_duration("2m").unwrap(),
            Some(Duration::from_secs(120))
        );
        assert!(parse_optional_duration("never").is_err());
    }

    #[test]
    fn host_memory_defaults_to_sixteen_pipe_buffers() {
        assert_eq!(Limits::default().host_memory(), 16 * 64 * 1024);
        let limits = Limits {
            max_host_memory: Some(1000),
            ..Limits::default()
        };
        assert_eq!(limits.host_memory(), 1000);
    }

    #[test]
    fn memory_cap_rounds_up_to_pages() {
        let limits = Limits {
            max_memory: 100_000,
            ..Limits::default()
        }
        .validated()
        .unwrap();
        assert_eq!(limits.max_memory, 2 * WASM_PAGE);
        assert_eq!(format_size(limits.max_memory), "128KiB");
    }
}
