//! `mnvkd-host run`: one guest with the terminal's stdin/stdout as its
//! connection; the exit status is the guest's, 1 if it trapped.

use crate::util::{assert_bytes_eq, guest, run_fail, run_ok};

#[test]
fn run_connects_the_guest_to_stdin_and_stdout() {
    let stdout = run_ok(&args!["run", guest("echo")], b"hello\n");
    assert_bytes_eq("stdout of `run echo`", b"hello\n", &stdout);
}

#[test]
fn run_exits_with_1_when_the_guest_traps() {
    let (code, stderr) = run_fail(&args!["run", guest("trap")], b"go\n");
    assert_eq!(code, 1, "stderr:\n{stderr}");
    assert!(stderr.contains("trap::fail_on_purpose"), "{stderr}");
}
