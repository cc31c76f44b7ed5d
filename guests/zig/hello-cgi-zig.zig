//! Hello over CGI in Zig (layer 0, plain WASI): served with
//! `--http hello-cgi-zig`, the host runs it once per request and turns what
//! it prints to stdout into the HTTP response.
const std = @import("std");

pub fn main() void {
    const response = "Content-Type: text/plain\r\n\r\nHello, World!\n";
    var rest: []const u8 = response;
    while (rest.len > 0) {
        const iov = [_]std.os.wasi.ciovec_t{.{ .base = rest.ptr, .len = rest.len }};
        var written: usize = 0;
        if (std.os.wasi.fd_write(1, &iov, iov.len, &written) != .SUCCESS or written == 0) return;
        rest = rest[written..];
    }
}
