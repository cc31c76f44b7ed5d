/* Echo in C over layer 1 (guest-sdk/include/mnvkd.h): sends every byte back
 * until the client closes the connection. */
#include "mnvkd.h"

static char buf[16 * 1024];

int main(void) {
    for (;;) {
        int32_t n = mnvkd_read(MNVKD_CONN, buf, sizeof buf);
        if (n == 0)
            return 0;
        if (n < 0 || mnvkd_write_all(MNVKD_CONN, buf, (size_t)n) < 0)
            return 1;
    }
}
