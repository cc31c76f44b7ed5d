//! Hello, HTTP, from one micro-heap: `hello-http`'s handler served with
//! `http::serve_each`, so one process of this listener-mode app (see
//! `hello-http-many.toml`) serves every connection as a coroutine. The
//! second shape of `scripts/bench-http`: a process per connection
//! (`hello-http`) against one for all.

use mnvkd_guest::http;

fn main() -> std::io::Result<()> {
    http::serve_each(|_req, res| {
        res.header("Content-Type", "text/plain")
            .body("Hello, World!\n")
    })
}
