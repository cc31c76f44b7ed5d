/* Guest-side HTTP/1.1 in C over layer 1 (guest-sdk/include/mnvkd.h): answers
 * "Hello, World!\n" on every path, with keep-alive and pipelining (every
 * complete request in the buffer is answered, the responses sent in one
 * write). Request bodies (Content-Length) are skipped; HTTP/1.0 and
 * "Connection: close" end the connection after the response; a head that
 * does not fit the buffer gets 431, one that does not parse 400. */
#include <string.h>

#include "mnvkd.h"

#define IN_SIZE (16 * 1024)
#define OUT_SIZE (16 * 1024)

static char in[IN_SIZE];
static char out[OUT_SIZE];

static const char hello[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\n"
    "Hello, World!\n";
static const char hello_close[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n"
    "Connection: close\r\n\r\nHello, World!\n";
static const char bad_request[] =
    "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
static const char too_large[] =
    "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n"
    "Connection: close\r\n\r\n";

/* Where the head in in[0..len) ends (just past "\r\n\r\n"), or 0. */
static size_t head_end(size_t len) {
    for (size_t i = 3; i < len; i++)
        if (in[i - 3] == '\r' && in[i - 2] == '\n' && in[i - 1] == '\r' && in[i] == '\n')
            return i + 1;
    return 0;
}

static int lower(int c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* Whether the header `name` (lower case, with ':') starts at in[at]. */
static int header_is(size_t at, size_t end, const char *name) {
    size_t n = strlen(name);
    if (at + n > end)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (lower(in[at + i]) != name[i])
            return 0;
    return 1;
}

/* Parses the head in[0..end): sets *close and *body; returns 0, or -1 if malformed. */
static int parse(size_t end, int *close, size_t *body) {
    const char *space = memchr(in, ' ', end);
    if (space == NULL || space == in)
        return -1;
    const char *line_end = memchr(in, '\r', end);
    if (line_end == NULL || line_end - in < 14 || memcmp(line_end - 8, "HTTP/1.", 7) != 0)
        return -1;
    *close = line_end[-1] == '0';
    *body = 0;
    for (size_t at = (size_t)(line_end - in) + 2; at + 2 < end;) {
        const char *next = memchr(in + at, '\n', end - at);
        if (next == NULL)
            return -1;
        size_t value = at;
        while (value < end && in[value] != ':')
            value++;
        value++;
        while (value < end && in[value] == ' ')
            value++;
        if (header_is(at, end, "content-length:")) {
            for (; value < end && in[value] >= '0' && in[value] <= '9'; value++)
                *body = *body * 10 + (size_t)(in[value] - '0');
        } else if (header_is(at, end, "connection:")) {
            *close = lower(in[value]) == 'c';
        }
        at = (size_t)(next - in) + 1;
    }
    return 0;
}

int main(void) {
    size_t len = 0, out_len = 0, skip = 0;
    for (;;) {
        int32_t n = mnvkd_read(MNVKD_CONN, in + len, IN_SIZE - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        size_t drop = skip < len ? skip : len;
        memmove(in, in + drop, len - drop);
        len -= drop;
        skip -= drop;
        for (;;) {
            size_t end = head_end(len);
            if (end == 0) {
                if (len == IN_SIZE) {
                    mnvkd_write_all(MNVKD_CONN, out, out_len);
                    mnvkd_write_all(MNVKD_CONN, too_large, sizeof too_large - 1);
                    return 0;
                }
                break;
            }
            int close;
            size_t body;
            if (parse(end, &close, &body) < 0) {
                mnvkd_write_all(MNVKD_CONN, out, out_len);
                mnvkd_write_all(MNVKD_CONN, bad_request, sizeof bad_request - 1);
                return 0;
            }
            const char *response = close ? hello_close : hello;
            size_t size = close ? sizeof hello_close - 1 : sizeof hello - 1;
            if (out_len + size > OUT_SIZE) {
                if (mnvkd_write_all(MNVKD_CONN, out, out_len) < 0)
                    return 1;
                out_len = 0;
            }
            memcpy(out + out_len, response, size);
            out_len += size;
            if (close) {
                mnvkd_write_all(MNVKD_CONN, out, out_len);
                return 0;
            }
            size_t consumed = end + body < len ? end + body : len;
            skip = end + body - consumed;
            memmove(in, in + consumed, len - consumed);
            len -= consumed;
        }
        if (out_len > 0) {
            if (mnvkd_write_all(MNVKD_CONN, out, out_len) < 0)
                return 1;
            out_len = 0;
        }
    }
    mnvkd_write_all(MNVKD_CONN, out, out_len);
    return 0;
}
