//! mnvkd.zig: the mnvkd guest interface, layer 1, for Zig.
//!
//! The imports of module "mnvkd", exactly as in wit/mnvkd.wit (the single
//! source of truth; tests/languages.rs checks this file against it). A result
//! >= 0 is success; a negative result is one of the error codes below. Handle
//! 0 (`conn`) is the connection the process was started for. See README.md.

/// The raw imports, one per line, named as in the wit.
pub const raw = struct {
    pub extern "mnvkd" fn read(handle: i32, ptr: [*]u8, len: usize) i32;
    pub extern "mnvkd" fn write(handle: i32, ptr: [*]const u8, len: usize) i32;
    pub extern "mnvkd" fn close(handle: i32) i32;
    pub extern "mnvkd" fn @"try-read"(handle: i32, ptr: [*]u8, len: usize) i32;
    pub extern "mnvkd" fn @"read-within"(handle: i32, ptr: [*]u8, len: usize, timeout_ms: i32) i32;
    pub extern "mnvkd" fn @"try-write"(handle: i32, ptr: [*]const u8, len: usize) i32;
    pub extern "mnvkd" fn dup(handle: i32) i32;
    pub extern "mnvkd" fn shutdown(handle: i32, how: i32) i32;
    pub extern "mnvkd" fn pipe(out: *[2]i32) i32;
    pub extern "mnvkd" fn spawn(arg_ptr: [*]const u8, arg_len: usize, handles: [*]const i32, count: u32) i32;
    pub extern "mnvkd" fn wait(child: i32) i32;
    pub extern "mnvkd" fn poll(fds: [*]PollFd, count: u32, timeout_ms: i32) i32;
    pub extern "mnvkd" fn watch(changes: [*]const PollFd, change_count: u32, ready: [*]PollFd, ready_max: u32, timeout_ms: i32) i32;
    pub extern "mnvkd" fn sleep(ms: u32) i32;
    pub extern "mnvkd" fn connect(addr_ptr: [*]const u8, addr_len: usize) i32;
    pub extern "mnvkd" fn accept(listener: i32) i32;
    pub extern "mnvkd" fn @"try-accept"(listener: i32) i32;
};

/// Error codes (wit `@errno`), stable forever.
pub const EBADF: i32 = -1;
pub const EFAULT: i32 = -2;
pub const EINVAL: i32 = -3;
pub const EPIPE: i32 = -4;
pub const EIO: i32 = -5;
pub const ELIMIT: i32 = -6;
pub const EDENIED: i32 = -7;
pub const ETIMEDOUT: i32 = -8;
pub const EAGAIN: i32 = -9;

/// The error codes as a Zig error set.
pub const Error = error{ BadF, Fault, Inval, Pipe, Io, Limit, Denied, TimedOut, Again, Unknown };

/// Maps a negative result to its error.
pub fn toError(code: i32) Error {
    return switch (code) {
        EBADF => error.BadF,
        EFAULT => error.Fault,
        EINVAL => error.Inval,
        EPIPE => error.Pipe,
        EIO => error.Io,
        ELIMIT => error.Limit,
        EDENIED => error.Denied,
        ETIMEDOUT => error.TimedOut,
        EAGAIN => error.Again,
        else => error.Unknown,
    };
}

fn check(ret: i32) Error!u32 {
    if (ret < 0) return toError(ret);
    return @intCast(ret);
}

/// `shutdown` directions (or both).
pub const SHUT_READ: i32 = 1;
pub const SHUT_WRITE: i32 = 2;

/// Poll bits: `events` asks for IN/OUT; `revents` may also have HUP, NVAL.
pub const POLLIN: u16 = 1;
pub const POLLOUT: u16 = 2;
pub const POLLHUP: u16 = 4;
pub const POLLNVAL: u16 = 8;
/// In events: readable may be stale (told from events alone); read with try-read.
pub const POLLLAZY: u16 = 16;

/// One entry of `poll`: 8 bytes, as the host reads it.
pub const PollFd = extern struct {
    handle: i32,
    events: u16,
    revents: u16 = 0,
};

/// The connection the process was started for.
pub const conn: i32 = 0;

/// Reads up to `buf.len` bytes; 0 at end of stream.
pub fn read(handle: i32, buf: []u8) Error!usize {
    return check(raw.read(handle, buf.ptr, buf.len));
}

/// Writes all of `bytes`.
pub fn writeAll(handle: i32, bytes: []const u8) Error!void {
    var rest = bytes;
    while (rest.len > 0) {
        const n = try check(raw.write(handle, rest.ptr, rest.len));
        rest = rest[n..];
    }
}

/// Closes `handle`.
pub fn close(handle: i32) Error!void {
    _ = try check(raw.close(handle));
}

/// A new pipe: `.{ read_end, write_end }`.
pub fn pipe() Error![2]i32 {
    var ends: [2]i32 = undefined;
    _ = try check(raw.pipe(&ends));
    return ends;
}

/// Starts a child process of this app with `arg` as its argv[1], moving `handles` to it.
pub fn spawn(arg: []const u8, handles: []const i32) Error!i32 {
    return @intCast(try check(raw.spawn(arg.ptr, arg.len, handles.ptr, @intCast(handles.len))));
}

/// Waits for a child; its exit status (256: killed).
pub fn wait(child: i32) Error!u32 {
    return check(raw.wait(child));
}

/// Waits until an entry is ready or `timeout_ms` passes (-1: forever).
pub fn poll(fds: []PollFd, timeout_ms: i32) Error!u32 {
    return check(raw.poll(fds.ptr, @intCast(fds.len), timeout_ms));
}

/// Suspends this process for `ms` milliseconds.
pub fn sleep(ms: u32) void {
    _ = raw.sleep(ms);
}

/// Opens an outbound TCP connection to `addr` ("127.0.0.1:6379").
pub fn connect(addr: []const u8) Error!i32 {
    return @intCast(try check(raw.connect(addr.ptr, addr.len)));
}

/// Waits for a client on `listener`; the new connection's handle.
pub fn accept(listener: i32) Error!i32 {
    return @intCast(try check(raw.accept(listener)));
}
