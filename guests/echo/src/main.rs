//! Echo: sends every byte back until the client closes the connection.

use std::io::{self, Read, Write};

fn main() -> io::Result<()> {
    let mut conn = mnvkd_guest::connection();
    let mut buf = [0; 4096];
    loop {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        conn.write_all(&buf[..n])?;
    }
}
