/*
 * mnvkd.h: the mnvkd guest interface, layer 1, for C (and anything that
 * compiles C for wasm32: clang --target=wasm32-wasi, zig cc).
 *
 * The imports of module "mnvkd", exactly as in wit/mnvkd.wit (the single
 * source of truth; tests/languages.rs checks this header against it, and
 * tests/abi.rs checks the host's linker against it). A result >= 0 is
 * success; a negative result is one of the MNVKD_E* codes below. Handle 0 is
 * the connection the process was started for.
 *
 *     #include "mnvkd.h"
 *
 *     int main(void) {
 *         static char buf[4096];
 *         int32_t n;
 *         while ((n = mnvkd_read(0, buf, sizeof buf)) > 0)
 *             if (mnvkd_write_all(0, buf, (size_t)n) < 0)
 *                 return 1;
 *         return n < 0;
 *     }
 *
 * Build: clang --target=wasm32-wasi -O2 -I guest-sdk/include x.c -o x.wasm
 */
#ifndef MNVKD_H
#define MNVKD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes (wit `@errno`), stable forever. */
#define MNVKD_EBADF -1    /* the handle is not open in this process, or not for this operation */
#define MNVKD_EFAULT -2   /* a buffer lies (partly) outside the micro-heap */
#define MNVKD_EINVAL -3   /* an argument is malformed */
#define MNVKD_EPIPE -4    /* the other end is gone (connection reset, write after peer closed) */
#define MNVKD_EIO -5      /* any other I/O failure */
#define MNVKD_ELIMIT -6   /* a per-process or per-app limit was reached */
#define MNVKD_EDENIED -7  /* the app was not granted this capability */
#define MNVKD_ETIMEDOUT -8 /* the operation did not complete in time */
#define MNVKD_EAGAIN -9   /* the operation would have to wait (only the try- imports return it) */

/* Poll event bits (`events` asks for the first two; the host may also set
 * HUP and NVAL in `revents`). */
#define MNVKD_POLLIN 1
#define MNVKD_POLLOUT 2
#define MNVKD_POLLHUP 4
#define MNVKD_POLLNVAL 8
/* In events: readable may be stale (told from events alone, a syscall less); read with try-read. */
#define MNVKD_POLLLAZY 16

/* mnvkd_shutdown directions (or both). */
#define MNVKD_SHUT_READ 1
#define MNVKD_SHUT_WRITE 2

/* The handle a process was started for. */
#define MNVKD_CONN 0

/* One entry of mnvkd_poll: 8 bytes, as the host reads it. */
struct mnvkd_pollfd {
    int32_t handle;
    uint16_t events;
    uint16_t revents;
};
_Static_assert(sizeof(struct mnvkd_pollfd) == 8, "mnvkd_pollfd is 8 bytes");

/* The imports: one per line, `import_name` as in the wit. */
__attribute__((import_module("mnvkd"), import_name("read"))) int32_t mnvkd_read(int32_t handle, void *ptr, size_t len);
__attribute__((import_module("mnvkd"), import_name("write"))) int32_t mnvkd_write(int32_t handle, const void *ptr, size_t len);
__attribute__((import_module("mnvkd"), import_name("close"))) int32_t mnvkd_close(int32_t handle);
__attribute__((import_module("mnvkd"), import_name("try-read"))) int32_t mnvkd_try_read(int32_t handle, void *ptr, size_t len);
__attribute__((import_module("mnvkd"), import_name("read-within"))) int32_t mnvkd_read_within(int32_t handle, void *ptr, size_t len, int32_t timeout_ms);
__attribute__((import_module("mnvkd"), import_name("try-write"))) int32_t mnvkd_try_write(int32_t handle, const void *ptr, size_t len);
__attribute__((import_module("mnvkd"), import_name("dup"))) int32_t mnvkd_dup(int32_t handle);
__attribute__((import_module("mnvkd"), import_name("shutdown"))) int32_t mnvkd_shutdown(int32_t handle, int32_t how);
__attribute__((import_module("mnvkd"), import_name("pipe"))) int32_t mnvkd_pipe(int32_t *out);
__attribute__((import_module("mnvkd"), import_name("spawn"))) int32_t mnvkd_spawn(const char *arg_ptr, size_t arg_len, const int32_t *handles, uint32_t count);
__attribute__((import_module("mnvkd"), import_name("wait"))) int32_t mnvkd_wait(int32_t child);
__attribute__((import_module("mnvkd"), import_name("poll"))) int32_t mnvkd_poll(struct mnvkd_pollfd *fds, uint32_t count, int32_t timeout_ms);
__attribute__((import_module("mnvkd"), import_name("watch"))) int32_t mnvkd_watch(const struct mnvkd_pollfd *changes, uint32_t change_count, struct mnvkd_pollfd *ready, uint32_t ready_max, int32_t timeout_ms);
__attribute__((import_module("mnvkd"), import_name("sleep"))) int32_t mnvkd_sleep(uint32_t ms);
__attribute__((import_module("mnvkd"), import_name("connect"))) int32_t mnvkd_connect(const char *addr_ptr, size_t addr_len);
__attribute__((import_module("mnvkd"), import_name("accept"))) int32_t mnvkd_accept(int32_t listener);
__attribute__((import_module("mnvkd"), import_name("try-accept"))) int32_t mnvkd_try_accept(int32_t listener);

/* Helpers. */

/* Writes all `len` bytes (the import writes all of up to 1 GiB, fewer only
 * when a pipe's reader runs out of host memory; this goes on after a short
 * write and splits a larger len). Returns 0 or an error code. */
static inline int32_t mnvkd_write_all(int32_t handle, const void *buf, size_t len) {
    const char *p = (const char *)buf;
    while (len > 0) {
        size_t chunk = len > 0x40000000u ? 0x40000000u : len;
        int32_t n = mnvkd_write(handle, p, chunk);
        if (n < 0)
            return n;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Writes a NUL-terminated string. Returns 0 or an error code. */
static inline int32_t mnvkd_write_str(int32_t handle, const char *s) {
    size_t len = 0;
    while (s[len])
        len++;
    return mnvkd_write_all(handle, s, len);
}

/* Reads until `len` bytes or end of stream. Returns the bytes read (less than
 * `len` only at end of stream) or an error code. */
static inline int32_t mnvkd_read_full(int32_t handle, void *buf, size_t len) {
    char *p = (char *)buf;
    size_t got = 0;
    while (got < len) {
        int32_t n = mnvkd_read(handle, p + got, len - got);
        if (n < 0)
            return n;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (int32_t)got;
}

/* The wit name of an error code ("badf", …), or "?" for any other value. */
static inline const char *mnvkd_strerror(int32_t code) {
    switch (code) {
    case MNVKD_EBADF: return "badf";
    case MNVKD_EFAULT: return "fault";
    case MNVKD_EINVAL: return "inval";
    case MNVKD_EPIPE: return "pipe";
    case MNVKD_EIO: return "io";
    case MNVKD_ELIMIT: return "limit";
    case MNVKD_EDENIED: return "denied";
    case MNVKD_ETIMEDOUT: return "timedout";
    case MNVKD_EAGAIN: return "again";
    default: return "?";
    }
}

#ifdef __cplusplus
}
#endif

#endif /* MNVKD_H */
