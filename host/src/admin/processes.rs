//! `/processes`: every live process as a JSON array, oldest first.
//!
//! ```json
//! [{"pid": 7, "app": "echo", "state": "waiting", "peer": "127.0.0.1:50312",
//!   "age_seconds": 3.2, "cpu_seconds": 0.0004, "memory_pages": 17}]
//! ```
//!
//! `state` is `starting` (not run yet), `running` (on a worker now) or
//! `waiting` (blocked on I/O, a timer or a child, or queued for a worker);
//! `peer` is `null` for a process without a client (a spawned child, a
//! listener-mode app); `memory_pages` counts 64 KiB Wasm pages.

use serde::Serialize;

use crate::process::table;

/// One process as `/processes` shows it.
#[derive(Debug, Serialize)]
struct Row<'a> {
    pid: u64,
    app: &'a str,
    state: &'static str,
    peer: Option<String>,
    age_seconds: f64,
    cpu_seconds: f64,
    memory_pages: u64,
}

/// The JSON array of the live processes.
pub fn render() -> Vec<u8> {
    let mut live = table::snapshot();
    live.sort_by_key(|p| p.pid.get());
    let rows: Vec<Row<'_>> = live
        .iter()
        .map(|p| Row {
            pid: p.pid.get(),
            app: &p.app,
            state: p.state().name(),
            peer: p.peer.map(|peer| peer.to_string()),
            age_seconds: p.started.elapsed().as_secs_f64(),
            cpu_seconds: p.cpu_time().as_secs_f64(),
            memory_pages: p.heap_bytes() / 65_536,
        })
        .collect();
    serde_json::to_vec(&rows).unwrap_or_else(|_| b"[]".to_vec())
}
