//! The log lines a guest can cause (its stderr, denied `connect`s, traps)
//! are bounded per app, and what was dropped is counted in the log.

use std::io::Read;
use std::time::{Duration, Instant};

use crate::util::{connect, guest, Server};

/// Lines an app's guests may cause per second (the default `log_rate`).
const PER_SECOND: u64 = 5;
/// The burst the host lets through at once (`LogLimit::BURST_SECONDS` × rate).
const BURST: u64 = 4 * PER_SECOND;

/// Runs one `log-flood` process (it reads to the end of its input, then
/// writes 20 000 stderr lines and makes 20 000 denied connects) to its end.
fn flood(server: &Server) {
    let mut conn = connect(server.addr("log-flood"));
    conn.shutdown(std::net::Shutdown::Write).unwrap();
    let mut done = String::new();
    conn.read_to_string(&mut done).unwrap();
    assert_eq!(done, "done\n");
}

#[test]
fn a_guest_cannot_flood_the_log() {
    let server = Server::start(&[("log-flood", guest("log-flood"))], &[]);
    let started = Instant::now();
    flood(&server);
    // A later second has a fresh budget; its first line reports the drops.
    std::thread::sleep(Duration::from_millis(1100));
    flood(&server);
    let seconds = started.elapsed().as_secs() + 1;
    let log = server.log();
    let caused = log
        .lines()
        .filter(|line| line.contains("stderr: flood") || line.contains("denied"))
        .count() as u64;
    assert!(
        caused <= BURST + PER_SECOND * seconds,
        "{caused} guest-caused lines in about {seconds} s:\n{log}"
    );
    // Each note carries the count as a field: `… suppressed=N`.
    let suppressed: u64 = log
        .lines()
        .filter(|line| line.contains("were suppressed"))
        .filter_map(|line| {
            line.split("suppressed=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert!(
        suppressed >= 40_000 - BURST - PER_SECOND * seconds,
        "only {suppressed} lines reported suppressed:\n{log}"
    );
    server.assert_alive();
}
