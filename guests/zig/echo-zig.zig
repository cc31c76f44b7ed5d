//! Echo in Zig over layer 1 (guest-sdk/zig/mnvkd.zig): sends every byte back
//! until the client closes the connection.
const mnvkd = @import("mnvkd");

var buf: [16 * 1024]u8 = undefined;

pub fn main() u8 {
    while (true) {
        const n = mnvkd.read(mnvkd.conn, &buf) catch return 1;
        if (n == 0) return 0;
        mnvkd.writeAll(mnvkd.conn, buf[0..n]) catch return 1;
    }
}
