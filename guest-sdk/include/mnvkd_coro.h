/*
 * mnvkd_coro.h: stackless coroutines for C inside one micro-process, in
 * mnvkd's own style: macros build each coroutine's state machine (a switch
 * on its resume point), and a small scheduler runs them, making one host
 * call for all of them when none can run (C's counterpart of the Rust SDK's
 * mnvkd_guest::task; docs/coroutines.md).
 *
 * A coroutine is a function `int body(struct coro *c)` whose body is
 * wrapped in CORO_BEGIN(c) ... CORO_END(c). Its locals do not survive a
 * suspension: keep its state in a struct that starts with `struct coro`
 * (cast `c` back to it). At most one CORO_* macro per source line (each
 * uses __LINE__ as its resume point), and none inside a `switch` of the
 * body's own. A macro's handle and buffer arguments are evaluated again
 * after it resumes, so they must be struct fields or constants; its length
 * is taken once, when it starts (`c->result` may be passed).
 *
 *     struct echo { struct coro co; char buf[4096]; };
 *
 *     static int echo_body(struct coro *c) {
 *         struct echo *e = (struct echo *)c;
 *         CORO_BEGIN(c);
 *         for (;;) {
 *             CORO_READ(c, MNVKD_CONN, e->buf, sizeof e->buf);
 *             if (c->result <= 0)
 *                 break;
 *             CORO_WRITE_ALL(c, MNVKD_CONN, e->buf, (size_t)c->result);
 *             if (c->result < 0)
 *                 break;
 *         }
 *         CORO_END(c);
 *     }
 *
 *     int main(void) {
 *         static struct coro_sched sched;
 *         static struct echo echo;
 *         coro_spawn(&sched, &echo.co, echo_body);
 *         return coro_run(&sched) < 0;
 *     }
 *
 * Suspension points:
 *   CORO_YIELD(c)        let every other ready coroutine run once;
 *   CORO_WAIT(c)         wait until another coroutine calls coro_wake(s, c);
 *   CORO_READ(c, h, buf, len)    wait until handle h is readable, then read
 *                        (mnvkd_try_read): c->result is the count, 0 at end
 *                        of stream, or an MNVKD_E* code;
 *   CORO_WRITE(c, h, buf, len)   write what h takes now (mnvkd_try_write),
 *                        waiting while it takes nothing: c->result;
 *   CORO_WRITE_ALL(c, h, buf, len)   CORO_WRITE until all is written:
 *                        c->result is 0 or an error code;
 *   CORO_PIPE_READ(c, p, buf, len), CORO_PIPE_WRITE_ALL(c, p, buf, len)
 *                        the same on an in-heap struct coro_pipe (no host
 *                        call): a full pipe makes its writer wait.
 *
 * The scheduler runs ready coroutines in the order they became ready. When
 * none is ready it makes one host call: the blocking operation itself
 * (mnvkd_read, mnvkd_write) when exactly one coroutine waits for a handle,
 * else one mnvkd_watch, after which the woken operations use the
 * non-blocking imports. mnvkd_watch keeps the handles armed in the host
 * between calls: a call passes only the handles whose waiters changed and
 * returns the ready ones, so a wait costs what changed, not every handle
 * waited on (one process can serve many connections).
 */
#ifndef MNVKD_CORO_H
#define MNVKD_CORO_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mnvkd.h"

#ifndef CORO_MAX_IO
/* Most coroutines waiting for handles at once. */
#define CORO_MAX_IO 1024
#endif

#ifndef CORO_MAX_HANDLES
/* Handle numbers coroutines may wait on: 0 .. CORO_MAX_HANDLES - 1 (the
 * host's default handle limit is 1024; an app that raises it defines this
 * before including the header). */
#define CORO_MAX_HANDLES 1024
#endif

/* Changes passed and reports taken per mnvkd_watch. */
#define CORO_WATCH_BATCH 64

/* What a coroutine body returns to the scheduler (the macros do it). */
enum { CORO_READY = 0, CORO_IO = 1, CORO_BLOCKED = 2, CORO_DONE = 3 };

/* In io_revents: the only waiter; the operation may block the process. */
#define CORO_EXCLUSIVE 0x100

struct coro_sched;

/* One coroutine's state; the first member of the caller's own struct. */
struct coro {
    int pc;                        /* resume point: 0 at the start */
    int32_t result;                /* result of the last CORO_READ/WRITE */
    int32_t io_handle;             /* the handle waited on (CORO_IO) */
    uint16_t io_events;            /* MNVKD_POLLIN / MNVKD_POLLOUT */
    uint16_t io_revents;           /* what the poll found */
    size_t io_len;                 /* the length asked of CORO_WRITE*, CORO_PIPE_* */
    size_t io_done;                /* bytes done by CORO_*_WRITE_ALL */
    int (*body)(struct coro *);    /* the coroutine */
    struct coro_sched *sched;      /* its scheduler */
    struct coro *next;             /* run-queue link */
    int queued;                    /* in the run queue now */
    struct coro *io_next;          /* the next waiter on the same handle */
    uint32_t io_index;             /* its place in sched->io while waiting */
};

/* The scheduler: a run queue and the coroutines waiting for handles. */
struct coro_sched {
    struct coro *head, *tail;                   /* run queue */
    struct coro *io[CORO_MAX_IO];               /* waiting for a handle, in no order */
    uint32_t n_io;
    uint32_t live;                              /* spawned, not done */
    struct coro *waiters[CORO_MAX_HANDLES];     /* per handle: its waiters (io_next) */
    uint16_t armed[CORO_MAX_HANDLES];           /* per handle: the events armed in the host */
    uint8_t dirty[CORO_MAX_HANDLES];            /* per handle: listed in changed[] */
    int32_t changed[CORO_MAX_HANDLES];          /* handles whose waiters changed */
    uint32_t n_changed;
    struct mnvkd_pollfd changes[CORO_WATCH_BATCH], ready[CORO_WATCH_BATCH];
};

/* An in-heap byte pipe between coroutines of one scheduler. */
struct coro_pipe {
    char *buf;                 /* cap bytes, a ring */
    size_t cap, head, len;
    int closed;                /* the writer is done: end of stream once drained */
    struct coro *reader;       /* waiting for bytes */
    struct coro *writer;       /* waiting for room */
};

#define CORO_BEGIN(c) switch ((c)->pc) { case 0:
#define CORO_END(c) } (c)->pc = -1; return CORO_DONE

#define CORO_YIELD(c) do { (c)->pc = __LINE__; return CORO_READY; case __LINE__:; } while (0)
#define CORO_WAIT(c) do { (c)->pc = __LINE__; return CORO_BLOCKED; case __LINE__:; } while (0)

#define CORO_IO_WAIT_(c, h, ev) \
    (c)->io_handle = (h); (c)->io_events = (ev); (c)->pc = __LINE__; return CORO_IO; case __LINE__:

/* The exclusive waiter blocks in the host; others never block. */
#define CORO_READ_NOW_(c, h, buf, len) \
    (((c)->io_revents & CORO_EXCLUSIVE) ? mnvkd_read((h), (buf), (len)) : mnvkd_try_read((h), (buf), (len)))
#define CORO_WRITE_NOW_(c, h, buf, len) \
    (((c)->io_revents & CORO_EXCLUSIVE) ? mnvkd_write((h), (buf), (len)) : mnvkd_try_write((h), (buf), (len)))

#define CORO_READ(c, h, buf, len) \
    do { (c)->io_len = (size_t)(len); \
         do { CORO_IO_WAIT_(c, h, MNVKD_POLLIN) \
              (c)->result = CORO_READ_NOW_((c), (h), (buf), (c)->io_len); \
         } while ((c)->result == MNVKD_EAGAIN); } while (0)

#define CORO_WRITE(c, h, buf, len) \
    do { (c)->io_len = (size_t)(len); (c)->io_revents = 0; \
         for (;;) { \
             (c)->result = CORO_WRITE_NOW_((c), (h), (buf), (c)->io_len); \
             if ((c)->result != MNVKD_EAGAIN) break; \
             CORO_IO_WAIT_(c, h, MNVKD_POLLOUT) ; \
         } } while (0)

#define CORO_WRITE_ALL(c, h, buf, len) \
    do { (c)->io_len = (size_t)(len); (c)->io_done = 0; (c)->io_revents = 0; (c)->result = 0; \
         while ((c)->io_done < (c)->io_len) { \
             (c)->result = CORO_WRITE_NOW_((c), (h), (const char *)(buf) + (c)->io_done, \
                                           (c)->io_len - (c)->io_done); \
             if ((c)->result == MNVKD_EAGAIN) { CORO_IO_WAIT_(c, h, MNVKD_POLLOUT) continue; } \
             if ((c)->result <= 0) { if ((c)->result == 0) (c)->result = MNVKD_EPIPE; break; } \
             (c)->io_done += (size_t)(c)->result; \
             (c)->result = 0; \
         } } while (0)

#define CORO_PIPE_READ(c, p, dst, n) \
    do { (c)->io_len = (size_t)(n); \
         while ((p)->len == 0 && !(p)->closed) { \
             (p)->reader = (c); (c)->pc = __LINE__; return CORO_BLOCKED; case __LINE__:; } \
         (c)->result = (int32_t)coro_pipe_take_((c)->sched, (p), (dst), (c)->io_len); } while (0)

#define CORO_PIPE_WRITE_ALL(c, p, src, n) \
    do { (c)->io_len = (size_t)(n); (c)->io_done = 0; \
         while ((c)->io_done < (c)->io_len) { \
             if ((p)->len == (p)->cap) { \
                 (p)->writer = (c); (c)->pc = __LINE__; return CORO_BLOCKED; case __LINE__: continue; } \
             (c)->io_done += coro_pipe_put_((c)->sched, (p), (const char *)(src) + (c)->io_done, \
                                            (c)->io_len - (c)->io_done); \
         } } while (0)

/* Queues `c` to run (again), unless it is queued already. */
static inline void coro_wake(struct coro_sched *s, struct coro *c) {
    if (c->queued || c->pc < 0)
        return;
    c->queued = 1;
    c->next = NULL;
    if (s->tail)
        s->tail->next = c;
    else
        s->head = c;
    s->tail = c;
}

/* Starts `c` (zeroed or reused once done) running `body`. */
static inline void coro_spawn(struct coro_sched *s, struct coro *c, int (*body)(struct coro *)) {
    c->pc = 0;
    c->body = body;
    c->sched = s;
    c->queued = 0;
    s->live++;
    coro_wake(s, c);
}

/* A pipe over the `cap` bytes at `buf`. */
static inline void coro_pipe_init(struct coro_pipe *p, char *buf, size_t cap) {
    memset(p, 0, sizeof *p);
    p->buf = buf;
    p->cap = cap;
}

/* The writer is done: the reader gets end of stream once it drained the pipe. */
static inline void coro_pipe_close(struct coro_sched *s, struct coro_pipe *p) {
    p->closed = 1;
    if (p->reader) {
        coro_wake(s, p->reader);
        p->reader = NULL;
    }
}

static inline size_t coro_pipe_take_(struct coro_sched *s, struct coro_pipe *p, char *dst, size_t n) {
    size_t got = 0;
    while (got < n && p->len > 0) {
        dst[got++] = p->buf[p->head];
        p->head = (p->head + 1) % p->cap;
        p->len--;
    }
    if (got > 0 && p->writer) {
        coro_wake(s, p->writer);
        p->writer = NULL;
    }
    return got;
}

static inline size_t coro_pipe_put_(struct coro_sched *s, struct coro_pipe *p, const char *src, size_t n) {
    size_t put = 0;
    while (put < n && p->len < p->cap) {
        p->buf[(p->head + p->len) % p->cap] = src[put++];
        p->len++;
    }
    if (put > 0 && p->reader) {
        coro_wake(s, p->reader);
        p->reader = NULL;
    }
    return put;
}

/* Notes that the waiters on handle `h` changed: mnvkd_watch arms it anew. */
static inline void coro_changed_(struct coro_sched *s, int32_t h) {
    if (!s->dirty[h]) {
        s->dirty[h] = 1;
        s->changed[s->n_changed++] = h;
    }
}

/* Takes waiter `c` out of io[] (the last one takes its place). */
static inline void coro_unlist_(struct coro_sched *s, struct coro *c) {
    struct coro *last = s->io[--s->n_io];
    s->io[c->io_index] = last;
    last->io_index = c->io_index;
}

/* Wakes the waiters on `h` that `revents` answers; the host disarmed it. */
static inline void coro_reported_(struct coro_sched *s, int32_t h, uint16_t revents) {
    if (h < 0 || h >= CORO_MAX_HANDLES)
        return;
    s->armed[h] = 0;
    coro_changed_(s, h); /* the waiters it does not answer are armed again */
    struct coro **link = &s->waiters[h];
    while (*link) {
        struct coro *c = *link;
        if (revents & (c->io_events | MNVKD_POLLHUP | MNVKD_POLLNVAL)) {
            *link = c->io_next;
            coro_unlist_(s, c);
            c->io_revents = revents;
            coro_wake(s, c);
        } else {
            link = &c->io_next;
        }
    }
}

/* One host call for every coroutine waiting on a handle; wakes the ready
 * ones. More changes than a batch take several calls; only the last may
 * wait, and only if nothing was reported before it. */
static inline void coro_poll_(struct coro_sched *s, int32_t timeout_ms) {
    if (s->n_io == 1 && timeout_ms < 0) {
        /* The only waiter: let its operation block the process. */
        struct coro *c = s->io[0];
        s->waiters[c->io_handle] = NULL;
        coro_unlist_(s, c);
        coro_changed_(s, c->io_handle);
        c->io_revents = (uint16_t)(c->io_events | CORO_EXCLUSIVE);
        coro_wake(s, c);
        return;
    }
    uint32_t end = s->n_changed, next = 0;
    int reported = 0;
    for (;;) {
        uint32_t n = 0;
        while (next < end && n < CORO_WATCH_BATCH) {
            int32_t h = s->changed[next++];
            uint16_t want = 0;
            s->dirty[h] = 0;
            for (struct coro *w = s->waiters[h]; w; w = w->io_next)
                want |= w->io_events;
            /* Lazy: a woken operation uses the non-blocking imports and
             * waits again on MNVKD_EAGAIN, so a stale readable is a retry. */
            if (want)
                want |= MNVKD_POLLLAZY;
            if (want != s->armed[h]) {
                s->changes[n].handle = h;
                s->changes[n].events = want;
                s->changes[n].revents = 0;
                s->armed[h] = want;
                n++;
            }
        }
        int last = next == end;
        int32_t got = mnvkd_watch(s->changes, n, s->ready, CORO_WATCH_BATCH,
                                  last && !reported ? timeout_ms : 0);
        for (int32_t i = 0; i < got; i++)
            coro_reported_(s, s->ready[i].handle, s->ready[i].revents);
        reported |= got > 0;
        if (last)
            break;
    }
    /* Handles the reports changed again: for the next call. */
    memmove(s->changed, s->changed + end, (s->n_changed - end) * sizeof s->changed[0]);
    s->n_changed -= end;
}

/* Runs every coroutine until all are done. Returns 0, or -1 when the
 * remaining ones all wait for each other (a deadlock in the heap), more
 * than CORO_MAX_IO wait for handles at once, or one waits on a handle
 * number of CORO_MAX_HANDLES or more. */
static inline int coro_run(struct coro_sched *s) {
    uint32_t runs = 0;
    for (;;) {
        while (s->head) {
            struct coro *c = s->head;
            s->head = c->next;
            if (!s->head)
                s->tail = NULL;
            c->queued = 0;
            switch (c->body(c)) {
            case CORO_READY:
                coro_wake(s, c);
                break;
            case CORO_IO:
                if (c->io_handle < 0) {
                    /* Never open: answered at once, as the host would. */
                    c->io_revents = MNVKD_POLLNVAL;
                    coro_wake(s, c);
                    break;
                }
                if (s->n_io == CORO_MAX_IO || c->io_handle >= CORO_MAX_HANDLES)
                    return -1;
                c->io_index = s->n_io;
                s->io[s->n_io++] = c;
                c->io_next = s->waiters[c->io_handle];
                s->waiters[c->io_handle] = c;
                coro_changed_(s, c->io_handle);
                break;
            case CORO_DONE:
                s->live--;
                break;
            default: /* CORO_BLOCKED: until coro_wake */
                break;
            }
            /* Coroutines busy in the heap must not starve those waiting on handles. */
            if (++runs % 256 == 0 && s->n_io > 0)
                coro_poll_(s, 0);
        }
        if (s->live == 0)
            return 0;
        if (s->n_io == 0)
            return -1;
        coro_poll_(s, -1);
    }
}

#endif /* MNVKD_CORO_H */
