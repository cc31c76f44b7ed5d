//! Stack overflow: reads one line, then recurses without bound. The host must
//! end only this process.

use std::hint::black_box;
use std::io::{self, BufRead};

fn main() -> io::Result<()> {
    io::stdin().lock().read_line(&mut String::new())?;
    println!("{}", recurse(0));
    Ok(())
}

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    // An exit the optimizer cannot rule out, and work after the call, so the
    // recursion is neither proven endless nor turned into a loop.
    if black_box(depth) == u64::MAX {
        return 0;
    }
    black_box(recurse(depth + 1)).wrapping_add(depth)
}
