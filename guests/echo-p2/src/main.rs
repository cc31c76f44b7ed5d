//! Echo as a WASI 0.2 `wasi:cli/command` component (`wasm32-wasip2`), for
//! inetd mode: copies stdin to stdout until end of stream, flushing each
//! chunk as it arrives. The same program as echo-wasi, built as a component.

use std::io::{self, Read, Write};

fn main() -> io::Result<()> {
    let mut stdin = io::stdin().lock();
    let mut stdout = io::stdout().lock();
    let mut buf = [0; 16 * 1024];
    loop {
        let n = stdin.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        stdout.write_all(&buf[..n])?;
        stdout.flush()?;
    }
}
