//! Echo in Zig (inetd mode, layer 0, plain WASI): copies stdin to stdout
//! until end of stream. No SDK: the connection is stdin and stdout.
const wasi = @import("std").os.wasi;

var buf: [16 * 1024]u8 = undefined;

pub fn main() u8 {
    while (true) {
        const in = [_]wasi.iovec_t{.{ .base = &buf, .len = buf.len }};
        var n: usize = 0;
        if (wasi.fd_read(0, &in, in.len, &n) != .SUCCESS) return 1;
        if (n == 0) return 0;
        var done: usize = 0;
        while (done < n) {
            const out = [_]wasi.ciovec_t{.{ .base = buf[done..].ptr, .len = n - done }};
            var written: usize = 0;
            if (wasi.fd_write(1, &out, out.len, &written) != .SUCCESS or written == 0) return 1;
            done += written;
        }
    }
}
