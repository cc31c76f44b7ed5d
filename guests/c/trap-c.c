/* Trap in C: reads one line, then executes `unreachable`. The host must end
 * only this process and log a backtrace naming `fail_on_purpose`. */
#include <stdio.h>

__attribute__((noinline)) static void fail_on_purpose(void) {
    __builtin_trap();
}

int main(void) {
    char line[256];
    if (fgets(line, sizeof line, stdin))
        fail_on_purpose();
    return 0;
}
