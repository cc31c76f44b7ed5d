//! `/metrics`: the host's counters in the Prometheus text format (0.0.4).
//!
//! Per app (label `app`): connections, processes started, ended, trapped
//! and killed (label `limit`), bytes in and out, denied capability checks,
//! live processes and those waiting for a place, micro-heap bytes, and a
//! spawn-latency histogram. Per host: the run queue and each worker's polls.
//! Every counter is read with a relaxed load at render time: a scrape sees
//! each figure as it was at some instant during the scrape.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use super::AdminState;
use crate::app::{AppMetrics, SPAWN_BUCKETS};
use crate::process::table;

/// The whole exposition, `# HELP` and `# TYPE` lines included.
pub fn render(state: &AdminState) -> String {
    let apps: Vec<_> = state.apps.iter().map(|current| current.get()).collect();
    let mut out = Exposition::default();
    let counters: [(&str, &str, Counter); 7] = [
        ("mnvkd_connections_total", "Connections accepted.", |m| {
            &m.connections
        }),
        (
            "mnvkd_processes_started_total",
            "Processes started (per connection, per request, spawned).",
            |m| &m.started,
        ),
        (
            "mnvkd_processes_ended_total",
            "Processes ended, however they ended.",
            |m| &m.ended,
        ),
        (
            "mnvkd_processes_trapped_total",
            "Processes ended by a trap.",
            |m| &m.trapped,
        ),
        (
            "mnvkd_received_bytes_total",
            "Bytes read from the app's connections.",
            |m| &m.bytes_in,
        ),
        (
            "mnvkd_sent_bytes_total",
            "Bytes written to the app's connections.",
            |m| &m.bytes_out,
        ),
        (
            "mnvkd_denied_total",
            "Capability checks that refused a guest (connect outside allow_outbound).",
            |m| &m.denied,
        ),
    ];
    for (name, help, counter) in counters {
        out.family(name, help, "counter");
        for app in &apps {
            out.sample(name, &[("app", &app.name)], load(counter(&app.metrics)));
        }
    }
    let name = "mnvkd_processes_killed_total";
    out.family(
        name,
        "Processes ended by a limit (label limit: the flag).",
        "counter",
    );
    for app in &apps {
        let m = &app.metrics;
        for (limit, counter) in [
            ("cpu-budget", &m.killed_cpu_budget),
            ("max-cpu", &m.killed_max_cpu),
            ("max-wall", &m.killed_max_wall),
            ("memory", &m.killed_memory),
        ] {
            out.sample(name, &[("app", &app.name), ("limit", limit)], load(counter));
        }
    }

    // From the table, not the process limit: an accept loop holds a place
    // for the next connection before it comes.
    let live = table::snapshot();
    let name = "mnvkd_processes_live";
    out.family(name, "Live processes (every version of the app).", "gauge");
    for app in &apps {
        let count = live.iter().filter(|p| p.app == app.name).count();
        out.sample(name, &[("app", &app.name)], count as u64);
    }
    let name = "mnvkd_processes_waiting";
    out.family(
        name,
        "Connections or requests waiting for a process place.",
        "gauge",
    );
    for app in &apps {
        out.sample(name, &[("app", &app.name)], app.processes.waiting() as u64);
    }
    let name = "mnvkd_micro_heap_bytes";
    out.family(
        name,
        "Linear memory of the app's live processes, in bytes.",
        "gauge",
    );
    for app in &apps {
        let bytes = live
            .iter()
            .filter(|p| p.app == app.name)
            .map(|p| p.heap_bytes())
            .sum();
        out.sample(name, &[("app", &app.name)], bytes);
    }

    let name = "mnvkd_spawn_seconds";
    out.family(
        name,
        "From a process's start to its _start being called (instantiation).",
        "histogram",
    );
    for app in &apps {
        let m = &app.metrics;
        let mut cumulative = 0;
        for (i, bucket) in m.spawn_buckets.iter().enumerate() {
            cumulative += load(bucket);
            let le = SPAWN_BUCKETS
                .get(i)
                .map_or("+Inf".to_owned(), |b| b.to_string());
            out.sample(
                "mnvkd_spawn_seconds_bucket",
                &[("app", &app.name), ("le", &le)],
                cumulative,
            );
        }
        let sum = load(&m.spawn_nanos) as f64 / 1e9;
        out.sample_f64("mnvkd_spawn_seconds_sum", &[("app", &app.name)], sum);
        out.sample(
            "mnvkd_spawn_seconds_count",
            &[("app", &app.name)],
            cumulative,
        );
    }

    let stats = state.kernel.stats();
    let name = "mnvkd_run_queue_length";
    out.family(
        name,
        "Tasks waiting for a worker (one queue shared by all workers; label queue: woken or preempted).",
        "gauge",
    );
    out.sample(name, &[("queue", "woken")], stats.woken_queued as u64);
    out.sample(
        name,
        &[("queue", "preempted")],
        stats.preempted_queued as u64,
    );
    let name = "mnvkd_worker_polls_total";
    out.family(name, "Task polls made by each worker.", "counter");
    for (worker, polls) in stats.polls.iter().enumerate() {
        out.sample(name, &[("worker", &worker.to_string())], *polls);
    }
    let name = "mnvkd_draining";
    out.family(name, "1 once a drain has started.", "gauge");
    out.sample(name, &[], u64::from(state.drain.is_draining()));
    let name = "mnvkd_uptime_seconds";
    out.family(name, "Seconds since serving began.", "gauge");
    out.sample_f64(name, &[], state.started.elapsed().as_secs_f64());
    out.text
}

/// Picks one counter out of an app's metrics.
type Counter = fn(&AppMetrics) -> &AtomicU64;

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// The text being written.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.labels(name, labels);
        let _ = writeln!(self.text, " {value}");
    }

    fn sample_f64(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.labels(name, labels);
        let _ = writeln!(self.text, " {value}");
    }

    fn labels(&mut self, name: &str, labels: &[(&str, &str)]) {
        self.text.push_str(name);
        if labels.is_empty() {
            return;
        }
        self.text.push('{');
        for (i, (key, value)) in labels.iter().enumerate() {
            if i > 0 {
                self.text.push(',');
            }
            let _ = write!(self.text, "{key}=\"{}\"", escape(value));
        }
        self.text.push('}');
    }
}

/// A label value as the text format wants it: `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        let mut out = Exposition::default();
        out.sample("m", &[("app", "a\"b\\c\nd"), ("x", "y")], 3);
        assert_eq!(out.text, "m{app=\"a\\\"b\\\\c\\nd\",x=\"y\"} 3\n");
    }

    #[test]
    fn unlabelled_samples_have_no_braces() {
        let mut out = Exposition::default();
        out.sample_f64("up", &[], 1.5);
        assert_eq!(out.text, "up 1.5\n");
    }
}
