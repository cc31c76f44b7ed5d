//! `http-coro` in connection mode: a process per connection, serving it
//! as a request-reader and a response-writer coroutine (see `lib.rs`).

use std::io;
use std::rc::Rc;

use mnvkd_guest::task::{self, Stream};

fn main() -> io::Result<()> {
    task::block_on(http_coro::serve(Rc::new(Stream::connection())))
}
