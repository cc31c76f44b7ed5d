// mnvkd.ts: the mnvkd guest interface, layer 1, for AssemblyScript.
//
// The imports of module "mnvkd", exactly as in wit/mnvkd.wit (the single
// source of truth; tests/languages.rs checks this file against it). Pointers
// and lengths are `usize` (i32 on wasm32). A result >= 0 is success; a
// negative result is one of the error codes below. Handle 0 (`CONN`) is the
// connection the process was started for. See README.md.

// The raw imports, one per line, named as in the wit.
@external("mnvkd", "read") export declare function read(handle: i32, ptr: usize, len: usize): i32;
@external("mnvkd", "write") export declare function write(handle: i32, ptr: usize, len: usize): i32;
@external("mnvkd", "close") export declare function close(handle: i32): i32;
@external("mnvkd", "try-read") export declare function try_read(handle: i32, ptr: usize, len: usize): i32;
@external("mnvkd", "read-within") export declare function read_within(handle: i32, ptr: usize, len: usize, timeoutMs: i32): i32;
@external("mnvkd", "try-write") export declare function try_write(handle: i32, ptr: usize, len: usize): i32;
@external("mnvkd", "dup") export declare function dup(handle: i32): i32;
@external("mnvkd", "shutdown") export declare function shutdown(handle: i32, how: i32): i32;
@external("mnvkd", "pipe") export declare function pipe(out: usize): i32;
@external("mnvkd", "spawn") export declare function spawn(argPtr: usize, argLen: usize, handles: usize, count: u32): i32;
@external("mnvkd", "wait") export declare function wait(child: i32): i32;
@external("mnvkd", "poll") export declare function poll(fds: usize, count: u32, timeoutMs: i32): i32;
@external("mnvkd", "watch") export declare function watch(changes: usize, changeCount: u32, ready: usize, readyMax: u32, timeoutMs: i32): i32;
@external("mnvkd", "sleep") export declare function sleep(ms: u32): i32;
@external("mnvkd", "connect") export declare function connect(addrPtr: usize, addrLen: usize): i32;
@external("mnvkd", "accept") export declare function accept(listener: i32): i32;
@external("mnvkd", "try-accept") export declare function try_accept(listener: i32): i32;

// Error codes (wit `@errno`), stable forever.
export const EBADF: i32 = -1;
export const EFAULT: i32 = -2;
export const EINVAL: i32 = -3;
export const EPIPE: i32 = -4;
export const EIO: i32 = -5;
export const ELIMIT: i32 = -6;
export const EDENIED: i32 = -7;
export const ETIMEDOUT: i32 = -8;
export const EAGAIN: i32 = -9;

// `shutdown` directions (or both).
export const SHUT_READ: i32 = 1;
export const SHUT_WRITE: i32 = 2;

// Poll bits: `events` asks for IN/OUT; `revents` may also have HUP, NVAL.
// An entry is 8 bytes: handle (i32), events (u16), revents (u16).
export const POLLIN: u16 = 1;
export const POLLOUT: u16 = 2;
export const POLLHUP: u16 = 4;
export const POLLNVAL: u16 = 8;
// In events: readable may be stale (told from events alone); read with try-read.
export const POLLLAZY: u16 = 16;

// The connection the process was started for.
export const CONN: i32 = 0;

// Writes all `len` bytes at `ptr`; 0 or an error code.
export function writeAll(handle: i32, ptr: usize, len: usize): i32 {
  while (len > 0) {
    const n = write(handle, ptr, len);
    if (n < 0) return n;
    ptr += <usize>n;
    len -= <usize>n;
  }
  return 0;
}

// Writes a string as UTF-8; 0 or an error code.
export function writeString(handle: i32, s: string): i32 {
  const bytes = String.UTF8.encode(s);
  return writeAll(handle, changetype<usize>(bytes), <usize>bytes.byteLength);
}

// The wit name of an error code ("badf", ...), or "?".
export function errorName(code: i32): string {
  switch (code) {
    case EBADF: return "badf";
    case EFAULT: return "fault";
    case EINVAL: return "inval";
    case EPIPE: return "pipe";
    case EIO: return "io";
    case ELIMIT: return "limit";
    case EDENIED: return "denied";
    case ETIMEDOUT: return "timedout";
    case EAGAIN: return "again";
    default: return "?";
  }
}
