//! The admin endpoint (`serve --admin`): health and readiness through a
//! drain, `/metrics` read by the reference Prometheus parser, `/processes`,
//! and the page, loaded in headless Chromium.

use std::collections::BTreeMap;
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::util::{
    connect, guest, http_get, http_request, read_response, read_until_closed, roundtrip, Server,
    TempDir, DEADLINE,
};

/// A sample: its name and labels.
type Key = (String, BTreeMap<String, String>);

/// `/metrics` as prometheus_client's own parser reads it: every sample,
/// and each family's type. The parser is the reference one; a line it
/// cannot read fails the test.
#[track_caller]
fn scrape(admin: SocketAddr) -> (BTreeMap<Key, f64>, BTreeMap<String, String>) {
    let response = http_get(admin, "/metrics");
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {"samples": [], "types": {}}
for family in text_string_to_metric_families(sys.stdin.read()):
    out["types"][family.name] = family.type
    for s in family.samples:
        out["samples"].append([s.name, s.labels, s.value])
print(json.dumps(out))
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&response.body)
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("No module named"),
        "prometheus_client is missing: run scripts/install-toolchains\n{stderr}"
    );
    assert!(
        output.status.success(),
        "the Prometheus parser refused /metrics: {stderr}\n{}",
        response.text()
    );
    let parsed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut samples = BTreeMap::new();
    for sample in parsed["samples"].as_array().unwrap() {
        let labels = sample[1]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        let key = (sample[0].as_str().unwrap().to_owned(), labels);
        samples.insert(key, sample[2].as_f64().unwrap());
    }
    let types = parsed["types"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    (samples, types)
}

fn key(name: &str, labels: &[(&str, &str)]) -> Key {
    (
        name.to_owned(),
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
}

#[track_caller]
fn value(samples: &BTreeMap<Key, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    *samples
        .get(&key(name, labels))
        .unwrap_or_else(|| panic!("no sample {name}{labels:?} in /metrics"))
}

/// Scrapes until `done` holds of the samples (counters settle after the
/// connections that moved them close), or fails at the deadline.
#[track_caller]
fn scrape_until(
    admin: SocketAddr,
    what: &str,
    done: impl Fn(&BTreeMap<Key, f64>) -> bool,
) -> BTreeMap<Key, f64> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (samples, _) = scrape(admin);
        if done(&samples) {
            return samples;
        }
        assert!(
            Instant::now() < deadline,
            "{what}; /metrics has {samples:#?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

fn processes(admin: SocketAddr) -> Vec<serde_json::Value> {
    let response = http_get(admin, "/processes");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("Content-Type"), Some("application/json"));
    serde_json::from_slice::<serde_json::Value>(&response.body)
        .expect("/processes is JSON")
        .as_array()
        .expect("/processes is an array")
        .clone()
}

#[test]
fn admin_answers_health_readiness_and_refuses_what_it_does_not_serve() {
    let server = Server::start(&[("echo", guest("echo"))], &args!["--admin", "127.0.0.1:0"]);
    let admin = server.admin_addr();
    assert_ne!(admin, server.addr("echo"));
    let health = http_get(admin, "/healthz");
    assert_eq!((health.status, health.text()), (200, "ok\n".to_owned()));
    assert_eq!(http_get(admin, "/readyz").status, 200);
    assert_eq!(http_get(admin, "/nothing-here").status, 404);
    assert_eq!(http_request(admin, "POST", "/healthz").status, 405);
    // HEAD: the GET's headers, no body (the endpoint closes after it).
    let mut head = TcpStream::connect(admin).unwrap();
    head.write_all(b"HEAD /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let head = String::from_utf8(read_until_closed(&mut head)).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head}");
    assert!(head.contains("Content-Length: "), "{head}");
    // Keep-alive: two requests on one connection, as Prometheus scrapes.
    let mut stream = TcpStream::connect(admin).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    for _ in 0..2 {
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(&mut reader).status, 200);
    }
    // Not HTTP at all: a 400 and a close, and the endpoint goes on.
    let mut junk = TcpStream::connect(admin).unwrap();
    junk.write_all(b"\x16\x03\x01 not a request\r\n\r\n")
        .unwrap();
    let answer = read_until_closed(&mut junk);
    assert!(answer.starts_with(b"HTTP/1.1 400"), "{answer:?}");
    assert_eq!(http_get(admin, "/healthz").status, 200);
}

#[test]
fn metrics_count_connections_processes_bytes_and_each_kind_of_end() {
    let server = Server::start(
        &[
            ("echo", guest("echo")),
            ("trap", guest("trap")),
            ("oom", guest("oom")),
            ("spin", guest("spin")),
            ("pipes", guest("pipes")),
            ("hello-cgi-wat", guest("hello-cgi-wat")),
        ],
        &args![
            "--admin",
            "127.0.0.1:0",
            "--cpu-budget",
            "200ms",
            "--max-memory",
            "16MiB",
            "--http",
            "hello-cgi-wat"
        ],
    );
    let admin = server.admin_addr();
    for i in 0..3 {
        let sent = format!("hello {i}\n");
        assert_eq!(
            roundtrip(server.addr("echo"), sent.as_bytes()),
            sent.as_bytes()
        );
    }
    for app in ["trap", "oom", "spin"] {
        let mut stream = connect(server.addr(app));
        let _ = stream.write_all(b"x\n");
        let _ = read_until_closed(&mut stream);
    }
    let denied = roundtrip(server.addr("pipes"), b"connect 127.0.0.1:6379\n");
    assert_eq!(denied, b"connect -7\n");
    for _ in 0..2 {
        let mut stream = connect(server.addr("hello-cgi-wat"));
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(&mut BufReader::new(stream)).status, 200);
    }

    let ended = |s: &BTreeMap<Key, f64>, app: &str| {
        s.get(&key("mnvkd_processes_ended_total", &[("app", app)]))
            .copied()
    };
    let samples = scrape_until(admin, "every process ended", |s| {
        [
            ("echo", 3.0),
            ("trap", 1.0),
            ("oom", 1.0),
            ("spin", 1.0),
            ("pipes", 1.0),
            ("hello-cgi-wat", 2.0),
        ]
        .iter()
        .all(|&(app, n)| ended(s, app) == Some(n))
    });
    let v = |name: &str, labels: &[(&str, &str)]| value(&samples, name, labels);
    let echo = [("app", "echo")];
    assert_eq!(v("mnvkd_connections_total", &echo), 3.0);
    assert_eq!(v("mnvkd_processes_started_total", &echo), 3.0);
    let echoed: f64 = (0..3).map(|i| format!("hello {i}\n").len() as f64).sum();
    assert_eq!(v("mnvkd_received_bytes_total", &echo), echoed);
    assert_eq!(v("mnvkd_sent_bytes_total", &echo), echoed);
    assert_eq!(v("mnvkd_processes_live", &echo), 0.0);
    assert_eq!(v("mnvkd_micro_heap_bytes", &echo), 0.0);
    assert_eq!(v("mnvkd_processes_trapped_total", &echo), 0.0);
    assert_eq!(v("mnvkd_processes_trapped_total", &[("app", "trap")]), 1.0);
    let killed = |app: &str, limit: &str| {
        v(
            "mnvkd_processes_killed_total",
            &[("app", app), ("limit", limit)],
        )
    };
    assert_eq!(killed("oom", "memory"), 1.0);
    assert_eq!(killed("spin", "cpu-budget"), 1.0);
    assert_eq!(killed("echo", "cpu-budget"), 0.0);
    assert_eq!(v("mnvkd_denied_total", &[("app", "pipes")]), 1.0);
    assert_eq!(v("mnvkd_denied_total", &echo), 0.0);
    // HTTP apps: a connection each, a process per request.
    let cgi = [("app", "hello-cgi-wat")];
    assert_eq!(v("mnvkd_connections_total", &cgi), 2.0);
    assert_eq!(v("mnvkd_processes_started_total", &cgi), 2.0);
    assert!(v("mnvkd_sent_bytes_total", &cgi) > 0.0);

    // The spawn histogram: cumulative buckets ending in +Inf = count = spawns.
    let buckets: Vec<(String, f64)> = samples
        .iter()
        .filter(|((name, labels), _)| {
            name == "mnvkd_spawn_seconds_bucket" && labels["app"] == "echo"
        })
        .map(|((_, labels), &count)| (labels["le"].clone(), count))
        .collect();
    assert!(buckets.len() >= 2, "{buckets:?}");
    let mut by_bound: Vec<(f64, f64)> = buckets
        .iter()
        .map(|(le, count)| (le.parse::<f64>().unwrap(), *count))
        .collect();
    by_bound.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(
        by_bound.windows(2).all(|w| w[0].1 <= w[1].1),
        "cumulative: {by_bound:?}"
    );
    assert_eq!(by_bound.last().unwrap(), &(f64::INFINITY, 3.0));
    assert_eq!(v("mnvkd_spawn_seconds_count", &echo), 3.0);
    assert!(v("mnvkd_spawn_seconds_sum", &echo) > 0.0);

    // The kernel: every worker is listed, and together they polled.
    let polls: f64 = samples
        .iter()
        .filter(|((name, _), _)| name == "mnvkd_worker_polls_total")
        .map(|(_, &n)| n)
        .sum();
    assert!(polls > 0.0, "no polls counted");
    assert_eq!(
        v("mnvkd_run_queue_length", &[("queue", "preempted")]),
        0.0,
        "nothing computes now"
    );
    assert_eq!(v("mnvkd_draining", &[]), 0.0);

    // Types: counters are counters (named `_total`), the rest as declared.
    let (_, types) = scrape(admin);
    for (family, kind) in [
        ("mnvkd_connections", "counter"),
        ("mnvkd_processes_killed", "counter"),
        ("mnvkd_processes_live", "gauge"),
        ("mnvkd_micro_heap_bytes", "gauge"),
        ("mnvkd_spawn_seconds", "histogram"),
        ("mnvkd_worker_polls", "counter"),
    ] {
        assert_eq!(
            types.get(family).map(String::as_str),
            Some(kind),
            "{types:?}"
        );
    }
}

#[test]
fn processes_lists_each_live_process_with_its_peer_and_memory() {
    let server = Server::start(&[("echo", guest("echo"))], &args!["--admin", "127.0.0.1:0"]);
    let admin = server.admin_addr();
    assert_eq!(processes(admin), Vec::<serde_json::Value>::new());
    let mut held = connect(server.addr("echo"));
    held.write_all(b"ping\n").unwrap();
    let mut echoed = [0; 5];
    held.read_exact(&mut echoed).unwrap();
    let peer = held.local_addr().unwrap().to_string();
    // The echo reached us a moment before its process blocked again.
    let deadline = Instant::now() + DEADLINE;
    let list = loop {
        let list = processes(admin);
        assert_eq!(list.len(), 1, "{list:?}");
        if list[0]["state"] == "waiting" {
            break list;
        }
        assert!(Instant::now() < deadline, "never blocked in read: {list:?}");
        thread::sleep(Duration::from_millis(10));
    };
    let process = &list[0];
    assert_eq!(process["app"], "echo");
    assert_eq!(process["peer"], peer.as_str());
    assert!(process["pid"].as_u64().unwrap() > 0);
    assert!(process["memory_pages"].as_u64().unwrap() > 0, "{process}");
    assert!(process["age_seconds"].as_f64().unwrap() >= 0.0);
    assert!(process["cpu_seconds"].as_f64().unwrap() > 0.0, "{process}");
    let (samples, _) = scrape(admin);
    assert_eq!(
        value(&samples, "mnvkd_processes_live", &[("app", "echo")]),
        1.0
    );
    let pages = process["memory_pages"].as_f64().unwrap();
    assert_eq!(
        value(&samples, "mnvkd_micro_heap_bytes", &[("app", "echo")]),
        pages * 65_536.0
    );
    drop(held);
    let deadline = Instant::now() + DEADLINE;
    while !processes(admin).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the process never left the table"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn readyz_turns_503_once_draining_while_healthz_stays_200() {
    let server = Server::start(
        &[("echo", guest("echo"))],
        &args!["--admin", "127.0.0.1:0", "--drain-timeout", "60s"],
    );
    let admin = server.admin_addr();
    // A live connection keeps the drain going while we look.
    let mut held = connect(server.addr("echo"));
    held.write_all(b"x").unwrap();
    let mut one = [0; 1];
    held.read_exact(&mut one).unwrap();
    server.signal(libc::SIGTERM);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let ready = http_get(admin, "/readyz");
        if ready.status == 503 {
            assert_eq!(ready.text(), "draining\n");
            break;
        }
        assert!(Instant::now() < deadline, "/readyz stayed {}", ready.status);
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(http_get(admin, "/healthz").status, 200);
    let (samples, _) = scrape(admin);
    assert_eq!(value(&samples, "mnvkd_draining", &[]), 1.0);
    drop(held);
    assert!(server.wait_exit(DEADLINE).success());
}

/// Runs headless Chromium on `url`; returns the page's DOM after its
/// scripts ran for a few (virtual) seconds, and leaves a screenshot at
/// `screenshot`.
fn chromium(url: &str, screenshot: &std::path::Path) -> String {
    let profile = TempDir::new();
    let base = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--virtual-time-budget=3000",
        "--window-size=1300,800",
    ];
    let run = |extra: &str| {
        let output = Command::new("chromium")
            .args(base)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(extra)
            .arg(url)
            .output()
            .expect("chromium runs: scripts/install-toolchains installs it");
        assert!(
            output.status.success(),
            "chromium failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("the DOM is UTF-8")
    };
    run(&format!("--screenshot={}", screenshot.display()));
    run("--dump-dom")
}

#[test]
fn the_admin_page_shows_apps_and_live_processes_in_chromium() {
    let server = Server::start(
        &[("echo", guest("echo")), ("spin", guest("spin"))],
        &args!["--admin", "127.0.0.1:0"],
    );
    let admin = server.admin_addr();
    let mut held = connect(server.addr("echo"));
    held.write_all(b"x").unwrap();
    let mut one = [0; 1];
    held.read_exact(&mut one).unwrap();
    let peer = held.local_addr().unwrap().to_string();
    let pid = processes(admin)[0]["pid"].as_u64().unwrap();

    let out = TempDir::new();
    let screenshot = out.join("admin.png");
    let dom = chromium(&format!("http://{admin}/"), &screenshot);
    assert!(
        std::fs::metadata(&screenshot).is_ok_and(|m| m.len() > 1000),
        "no screenshot"
    );
    // Keep a copy to look at: target/admin-page.png.
    let _ = std::fs::copy(
        &screenshot,
        crate::util::repo_root().join("target/admin-page.png"),
    );
    // The page refreshed from the endpoint more than once.
    let refreshed: u32 = attribute(&dom, "data-refreshed")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the page never drew the endpoint's figures:\n{dom}"));
    assert!(refreshed >= 2, "refreshed {refreshed} times");
    // One row per app, with its live count; the echo process, with its peer.
    let echo_row = row(&dom, "data-app=\"echo\"");
    assert!(echo_row.contains("data-field=\"live\">1<"), "{echo_row}");
    let spin_row = row(&dom, "data-app=\"spin\"");
    assert!(spin_row.contains("data-field=\"live\">0<"), "{spin_row}");
    let process_row = row(&dom, &format!("data-pid=\"{pid}\""));
    assert!(process_row.contains(">echo<"), "{process_row}");
    assert!(
        process_row.contains(&format!("data-field=\"peer\">{peer}<")),
        "{process_row}"
    );
    assert!(dom.contains("serving"), "status line");
}

/// The value of the first `name="…"` attribute in `dom`.
fn attribute<'a>(dom: &'a str, name: &str) -> Option<&'a str> {
    let start = dom.find(&format!("{name}=\""))? + name.len() + 2;
    dom[start..].split('"').next()
}

/// The table row of `dom` that carries `marker`.
#[track_caller]
fn row<'a>(dom: &'a str, marker: &str) -> &'a str {
    let at = dom
        .find(marker)
        .unwrap_or_else(|| panic!("no row with {marker} in the page:\n{dom}"));
    let end = dom[at..].find("</tr>").map_or(dom.len(), |e| at + e);
    &dom[at..end]
}
