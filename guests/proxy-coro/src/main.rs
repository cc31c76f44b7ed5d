//! A TCP proxy as two coroutines in one micro-heap: one copies the client
//! to the upstream, the other the upstream to the client
//! (`mnvkd_guest::task`). Compare `guests/proxy`, one `poll` loop by hand.
//!
//! The process connects to the address in `UPSTREAM` (which
//! `guests/proxy-coro.toml` also puts in `allow_outbound`). A direction
//! whose source ends passes the end of stream on with `shutdown` (write)
//! and finishes; the other goes on, so a protocol where the upstream answers
//! only after the client's end of stream works. A slow destination holds
//! back only its own direction.

use std::io;
use std::net::Shutdown;
use std::rc::Rc;

use mnvkd_guest::task::{self, Stream};

/// Bytes moved per read.
const CHUNK: usize = 16 * 1024;

fn main() -> io::Result<()> {
    let upstream = std::env::var("UPSTREAM")
        .map_err(|_| io::Error::new(io::ErrorKind::NotFound, "UPSTREAM is not set"))?;
    task::block_on(async {
        let client = Rc::new(Stream::connection());
        let upstream = Rc::new(task::connect(&upstream).await?);
        let up = task::spawn(copy(Rc::clone(&client), Rc::clone(&upstream)));
        let down = copy(upstream, client).await;
        down.and(up.await)
    })
}

/// Copies `from` to `to` until `from` ends, then half-closes `to`.
async fn copy(from: Rc<Stream>, to: Rc<Stream>) -> io::Result<()> {
    let mut buf = vec![0; CHUNK];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown(Shutdown::Write);
        }
        to.write_all(&buf[..n]).await?;
    }
}
