/* Hello over CGI in plain C (layer 0): served with `--http hello-cgi-c`, the
 * host runs it once per request and turns what it prints into the response. */
#include <stdio.h>

int main(void) {
    fputs("Content-Type: text/plain\r\n\r\nHello, World!\n", stdout);
    return 0;
}
