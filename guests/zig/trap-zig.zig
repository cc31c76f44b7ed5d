//! Trap in Zig: reads from the connection, then executes `unreachable`. The
//! host must end only this process and log a backtrace naming `failOnPurpose`.
const mnvkd = @import("mnvkd");

var buf: [256]u8 = undefined;

noinline fn failOnPurpose() noreturn {
    @trap();
}

pub fn main() void {
    _ = mnvkd.read(mnvkd.conn, &buf) catch return;
    failOnPurpose();
}
