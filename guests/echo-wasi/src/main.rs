//! Echo in plain WASI (inetd mode): copies stdin to stdout until end of
//! stream, flushing each chunk as it arrives.

use std::io::{self, Read, Write};

fn main() -> io::Result<()> {
    let mut stdin = io::stdin().lock();
    let mut stdout = io::stdout().lock();
    // At least stdin's buffer size, so reads bypass the buffer.
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
