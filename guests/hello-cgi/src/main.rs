//! Hello over CGI: a plain WASI command, no SDK. Served with `--http hello-cgi`
//! (or manifest `kind = "http"`), the host runs it once per request and turns
//! what it prints into the HTTP response.

fn main() {
    print!("Content-Type: text/plain\r\n\r\nHello, World!\n");
}
