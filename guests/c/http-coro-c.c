/* HTTP/1.1 in mnvkd's own shape, in C (guest-sdk/include/mnvkd_coro.h): a
 * request-reader coroutine and a response-writer coroutine in one
 * micro-heap, joined by an in-heap pipe. The reader parses each request
 * head that has arrived and writes one record per request into the pipe
 * ("K/path\n" keep-alive, "C/path\n" close, "E400\n" / "E431\n" refused);
 * the writer answers the records in order, the answers to all records in
 * the pipe in one write. Keep-alive and pipelining, as guests/http-coro (the
 * Rust one): "/" answers "Hello, World!\n", any other path answers the path.
 * Content-Length bodies are skipped; a Transfer-Encoding gets 501 (no
 * chunked decoding in this small C guest; the Rust one has it). */
#include <string.h>

#include "mnvkd.h"
#include "mnvkd_coro.h"

#define IN_SIZE (16 * 1024)
#define OUT_SIZE (64 * 1024)
#define PIPE_SIZE 4096
#define MAX_PATH 1024

static struct coro_sched sched;
static struct coro_pipe requests;
static char pipe_buf[PIPE_SIZE];

/* The reader's state: everything that must survive a suspension. */
static struct reader {
    struct coro co;
    char in[IN_SIZE];
    size_t len;             /* bytes in `in` */
    size_t skip;            /* body bytes still to drop */
    char record[MAX_PATH + 4];
    size_t record_len;
    int last;               /* the record just queued ends the connection */
} reader;

/* The writer's state. */
static struct writer {
    struct coro co;
    char pending[PIPE_SIZE]; /* records read from the pipe, not yet answered */
    size_t pending_len;
    char out[OUT_SIZE + MAX_PATH + 256];
    size_t out_len;
    int close;
} writer;

static int lower(int c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* Where the head in in[0..len) ends (just past "\r\n\r\n"), or 0. */
static size_t head_end(const char *in, size_t len) {
    for (size_t i = 3; i < len; i++)
        if (in[i - 3] == '\r' && in[i - 2] == '\n' && in[i - 1] == '\r' && in[i] == '\n')
            return i + 1;
    return 0;
}

/* Whether the header `name` (lower case, with ':') starts at in[at]. */
static int header_is(const char *in, size_t at, size_t end, const char *name) {
    size_t n = strlen(name);
    if (at + n > end)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (lower(in[at + i]) != name[i])
            return 0;
    return 1;
}

/* Parses the head in[0..end) into r->record; sets *body. */
static void parse(struct reader *r, size_t end, size_t *body) {
    const char *in = r->in;
    const char *space = memchr(in, ' ', end);
    const char *line_end = memchr(in, '\r', end);
    *body = 0;
    if (space == NULL || space == in || line_end == NULL || line_end - in < 14 ||
        memcmp(line_end - 8, "HTTP/1.", 7) != 0) {
        memcpy(r->record, "E400\n", 5);
        r->record_len = 5;
        return;
    }
    const char *path = space + 1;
    const char *path_end = memchr(path, ' ', (size_t)(line_end - path));
    if (path_end == NULL || path_end - path > MAX_PATH) {
        memcpy(r->record, "E400\n", 5);
        r->record_len = 5;
        return;
    }
    int close = line_end[-1] == '0';
    for (size_t at = (size_t)(line_end - in) + 2; at + 2 < end;) {
        const char *next = memchr(in + at, '\n', end - at);
        if (next == NULL)
            break;
        size_t value = at;
        while (value < end && in[value] != ':')
            value++;
        value++;
        while (value < end && in[value] == ' ')
            value++;
        if (header_is(in, at, end, "content-length:")) {
            for (; value < end && in[value] >= '0' && in[value] <= '9'; value++)
                *body = *body * 10 + (size_t)(in[value] - '0');
        } else if (header_is(in, at, end, "connection:")) {
            close = lower(in[value]) == 'c';
        } else if (header_is(in, at, end, "transfer-encoding:")) {
            memcpy(r->record, "E501\n", 5);
            r->record_len = 5;
            return;
        }
        at = (size_t)(next - in) + 1;
    }
    r->record[0] = close ? 'C' : 'K';
    memcpy(r->record + 1, path, (size_t)(path_end - path));
    r->record_len = 1 + (size_t)(path_end - path);
    r->record[r->record_len++] = '\n';
}

/* The request reader. */
static int read_requests(struct coro *c) {
    struct reader *r = (struct reader *)c;
    size_t end, body, consumed;
    CORO_BEGIN(c);
    for (;;) {
        CORO_READ(c, MNVKD_CONN, r->in + r->len, IN_SIZE - r->len);
        if (c->result <= 0)
            break;
        r->len += (size_t)c->result;
        consumed = r->skip < r->len ? r->skip : r->len;
        memmove(r->in, r->in + consumed, r->len - consumed);
        r->len -= consumed;
        r->skip -= consumed;
        for (;;) {
            end = head_end(r->in, r->len);
            if (end == 0) {
                if (r->len < IN_SIZE)
                    break;
                memcpy(r->record, "E431\n", 5);
                r->record_len = 5;
                r->last = 1;
            } else {
                parse(r, end, &body);
                r->last = r->record[0] != 'K';
                consumed = end + body < r->len ? end + body : r->len;
                r->skip = end + body - consumed;
                memmove(r->in, r->in + consumed, r->len - consumed);
                r->len -= consumed;
            }
            CORO_PIPE_WRITE_ALL(c, &requests, r->record, r->record_len);
            if (r->last)
                goto done;
        }
    }
done:
    coro_pipe_close(&sched, &requests);
    CORO_END(c);
}

/* Appends the answer to one record to w->out. */
static void respond(struct writer *w, const char *record, size_t len) {
    static const char hello[] = "Hello, World!\n";
    const char *status = "200 OK";
    const char *body = record + 1;
    size_t body_len = len - 1; /* the path and its '\n' */
    if (record[0] == 'E') {
        status = record[1] == '4' && record[2] == '3' ? "431 Request Header Fields Too Large"
                 : record[1] == '5'                   ? "501 Not Implemented"
                                                      : "400 Bad Request";
        body_len = 0;
        w->close = 1;
    } else {
        w->close = record[0] == 'C';
        if (body_len == 2 && body[0] == '/') {
            body = hello;
            body_len = sizeof hello - 1;
        }
    }
    char *o = w->out + w->out_len;
    o += sizeof "HTTP/1.1 " - 1;
    memcpy(w->out + w->out_len, "HTTP/1.1 ", sizeof "HTTP/1.1 " - 1);
    memcpy(o, status, strlen(status));
    o += strlen(status);
    static const char fields[] = "\r\nContent-Type: text/plain\r\nContent-Length: ";
    memcpy(o, fields, sizeof fields - 1);
    o += sizeof fields - 1;
    char digits[24];
    int n = 0;
    size_t v = body_len;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    while (n > 0)
        *o++ = digits[--n];
    if (w->close) {
        static const char close[] = "\r\nConnection: close";
        memcpy(o, close, sizeof close - 1);
        o += sizeof close - 1;
    }
    memcpy(o, "\r\n\r\n", 4);
    o += 4;
    memcpy(o, body, body_len);
    o += body_len;
    w->out_len = (size_t)(o - w->out);
}

/* The response writer. */
static int write_responses(struct coro *c) {
    struct writer *w = (struct writer *)c;
    char *nl;
    size_t used;
    CORO_BEGIN(c);
    for (;;) {
        CORO_PIPE_READ(c, &requests, w->pending + w->pending_len, sizeof w->pending - w->pending_len);
        if (c->result == 0)
            break; /* the reader is done */
        w->pending_len += (size_t)c->result;
        used = 0;
        while (!w->close && w->out_len < OUT_SIZE &&
               (nl = memchr(w->pending + used, '\n', w->pending_len - used)) != NULL) {
            respond(w, w->pending + used, (size_t)(nl - (w->pending + used)) + 1);
            used = (size_t)(nl - w->pending) + 1;
        }
        memmove(w->pending, w->pending + used, w->pending_len - used);
        w->pending_len -= used;
        if (requests.len > 0 && !w->close && w->out_len < OUT_SIZE)
            continue; /* more records queued: answer them in the same write */
        CORO_WRITE_ALL(c, MNVKD_CONN, w->out, w->out_len);
        if (c->result < 0)
            break;
        w->out_len = 0;
        if (w->close) {
            mnvkd_shutdown(MNVKD_CONN, MNVKD_SHUT_WRITE);
            break;
        }
    }
    CORO_END(c);
}

int main(void) {
    coro_pipe_init(&requests, pipe_buf, sizeof pipe_buf);
    coro_spawn(&sched, &writer.co, write_responses);
    coro_spawn(&sched, &reader.co, read_requests);
    /* The writer may end first (a close): the reader then waits on a pipe
     * nobody drains, which the scheduler reports as a deadlock: fine. */
    coro_run(&sched);
    return 0;
}
