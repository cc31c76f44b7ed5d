//! Trap: reads one line, then executes `unreachable`. The host must end only
//! this process and log a backtrace naming `fail_on_purpose`.

use std::io::{self, BufRead};

fn main() -> io::Result<()> {
    io::stdin().lock().read_line(&mut String::new())?;
    fail_on_purpose()
}

#[inline(never)]
fn fail_on_purpose() -> ! {
    core::arch::wasm32::unreachable()
}
