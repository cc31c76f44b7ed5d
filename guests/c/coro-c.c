/* mnvkd_coro.h in use, for tests/microheap.rs: two coroutines yield in turn
 * and log it ("a0 b0 a1 b1 a2 b2"), a third waits (CORO_WAIT) until the
 * last of them wakes it, writes the log, and then echoes the connection
 * (CORO_READ, CORO_WRITE_ALL of what was read) until end of stream. */
#include <string.h>

#include "mnvkd.h"
#include "mnvkd_coro.h"

static struct coro_sched sched;
static char log_buf[64];
static size_t log_len;

static struct turn {
    struct coro co;
    char name;
    int i;
} a = {.name = 'a'}, b = {.name = 'b'};

static struct echo {
    struct coro co;
    char buf[4096];
} echo;

static int turn_body(struct coro *c) {
    struct turn *t = (struct turn *)c;
    CORO_BEGIN(c);
    for (t->i = 0; t->i < 3; t->i++) {
        log_buf[log_len++] = t->name;
        log_buf[log_len++] = (char)('0' + t->i);
        log_buf[log_len++] = ' ';
        CORO_YIELD(c);
    }
    if (t->name == 'b')
        coro_wake(&sched, &echo.co);
    CORO_END(c);
}

static int echo_body(struct coro *c) {
    struct echo *e = (struct echo *)c;
    CORO_BEGIN(c);
    CORO_WAIT(c);
    log_buf[log_len - 1] = '\n';
    CORO_WRITE_ALL(c, MNVKD_CONN, log_buf, log_len);
    for (;;) {
        CORO_READ(c, MNVKD_CONN, e->buf, sizeof e->buf);
        if (c->result <= 0)
            break;
        CORO_WRITE_ALL(c, MNVKD_CONN, e->buf, (size_t)c->result);
        if (c->result < 0)
            break;
    }
    CORO_END(c);
}

int main(void) {
    coro_spawn(&sched, &echo.co, echo_body);
    coro_spawn(&sched, &a.co, turn_body);
    coro_spawn(&sched, &b.co, turn_body);
    return coro_run(&sched) < 0;
}
