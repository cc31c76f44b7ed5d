//! Out of memory: reads one line, then allocates (and touches) 1 MiB chunks
//! until allocation fails. The host's memory cap must end only this process.

use std::hint::black_box;
use std::io::{self, BufRead};

const CHUNK: usize = 1 << 20;

fn main() -> io::Result<()> {
    io::stdin().lock().read_line(&mut String::new())?;
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // A non-zero fill writes every page, so none stays a lazy zero page.
        hoard.push(black_box(vec![0xa5; CHUNK]));
    }
}
