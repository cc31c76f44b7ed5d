//! Bad pointers: calls the raw `mnvkd` imports with hostile pointers, lengths
//! and handles, and reports each result on the connection as `<case> <code>`,
//! then `done`. Every call must return an error code, never trap the process
//! or touch memory outside it.

use core::arch::wasm32::memory_size;

use mnvkd_guest::sys;

fn main() {
    let mut buf = [0u8; 16];
    let memory_end = memory_size(0) * 65536;
    let last_byte = (memory_end - 1) as *mut u8;

    // SAFETY (for every call below): the host checks each buffer against the
    // micro-heap and returns `fault` without touching it; the valid buffers
    // are `buf`.
    unsafe {
        report("read-oob", sys::read(0, 0xffff_fff0 as *mut u8, 4096));
        report("read-edge", sys::read(0, last_byte, 2));
        report("write-oob", sys::write(0, 0xffff_ffff as *const u8, 1));
        report("write-huge-len", sys::write(0, buf.as_ptr(), 0xffff_ffff));
        report("read-badf", sys::read(99, buf.as_mut_ptr(), 1));
        report("write-badf", sys::write(-1, buf.as_ptr(), 1));
        report("close-badf", sys::close(42));
    }
    say("done\n");
}

/// Writes `<case> <code>` as one line to the connection.
fn report(case: &str, code: i32) {
    say(&format!("{case} {code}\n"));
}

/// Writes `line` to the connection, or exits if it cannot.
fn say(line: &str) {
    // SAFETY: `line` is valid for reads of `line.len()` bytes.
    if unsafe { sys::write(0, line.as_ptr(), line.len()) } < 0 {
        std::process::exit(1);
    }
}
