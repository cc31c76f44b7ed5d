/* Echo in plain C (inetd mode, layer 0): copies stdin to stdout until end of
 * stream. No SDK: the connection is stdin and stdout. */
#include <unistd.h>

static char buf[16 * 1024];

int main(void) {
    for (;;) {
        ssize_t n = read(0, buf, sizeof buf);
        if (n == 0)
            return 0;
        if (n < 0)
            return 1;
        for (ssize_t done = 0; done < n;) {
            ssize_t w = write(1, buf + done, (size_t)(n - done));
            if (w <= 0)
                return 1;
            done += w;
        }
    }
}
