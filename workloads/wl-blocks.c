/* Many live heap blocks for the leak-scan benchmark: N blocks of 16..256 bytes, nine in
 * ten kept on a list hanging off a global (still reachable), one in ten dropped
 * (definitely lost).  Prints its counts, then blocks until killed (or, with --exit, exits;
 * with --free-exit, frees the kept blocks first).
 * Usage: wl-blocks N [--exit | --free-exit] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct node {
    struct node *next;
};

struct node *kept;

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 100000;
    long lost = 0;
    struct node *b = NULL;
    srand(1);
    for (long i = 0; i < n; i++) {
        b = malloc(16 + (size_t)(rand() % 241));
        if (i % 10 == 9) {
            lost++;
            continue;
        }
        b->next = kept;
        kept = b;
    }
    b = NULL;    /* no stale copy of the last (lost) block in main's frame */
    printf("wl-blocks pid=%d blocks=%ld lost=%ld\n", getpid(), n, lost);
    printf("wl-blocks ready\n");
    fflush(stdout);
    if (argc > 2 && strcmp(argv[2], "--exit") == 0)
        return 0;
    if (argc > 2 && strcmp(argv[2], "--free-exit") == 0) {
        while (kept) {
            struct node *next = kept->next;
            free(kept);
            kept = next;
        }
        return 0;
    }
    for (;;)
        pause();
}
