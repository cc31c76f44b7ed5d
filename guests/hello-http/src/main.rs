//! Hello, HTTP: `200 Hello, World!` on every path, over keep-alive and
//! pipelined connections; the guest of `scripts/bench-http`.

use mnvkd_guest::http;

fn main() -> std::io::Result<()> {
    http::serve(|_req, res| {
        res.header("Content-Type", "text/plain")
            .body("Hello, World!\n")
    })
}
