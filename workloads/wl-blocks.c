/* Many live heap blocks for the leak-scan benchmark: N blocks of 16..256 bytes, nine in
 * ten kept on a list hanging off a global (still reachable), one in ten dropped
 * (definitely lost).  With --cycles, every block is lost instead, in cycles of three that
 * nothing else points into: valgrind counts one block of each cycle definitely lost and
 * the other two indirectly lost.  Prints its counts, then blocks until killed (or, with
 * --exit, exits; with --free-exit, frees the kept blocks first).
 * Usage: wl-blocks N [--exit | --free-exit] [--cycles] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CYCLE 3

struct node {
    struct node *next;
};

struct node *kept;

static int has_option(int argc, char **argv, const char *option)
{
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], option) == 0)
            return 1;
    return 0;
}

/* N blocks as lost cycles of CYCLE blocks (the last one shorter); returns how many cycles. */
static long lost_cycles(long n)
{
    long cycles = 0;
    struct node *first = NULL, *prev = NULL, *b = NULL;
    for (long i = 0; i < n; i++) {
        b = malloc(16 + (size_t)(rand() % 241));
        if (i % CYCLE == 0) {
            first = b;
            cycles++;
        } else {
            prev->next = b;
        }
        b->next = first;
        prev = b;
    }
    first = prev = b = NULL;    /* no stale copy of a lost block in this frame */
    return cycles;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 100000;
    long lost = 0;
    struct node *b = NULL;
    srand(1);
    if (has_option(argc, argv, "--cycles")) {
        long cycles = lost_cycles(n);
        printf("wl-blocks pid=%d blocks=%ld lost=%ld\n", getpid(), n, n);
        printf("wl-blocks cycles=%ld definite=%ld indirect=%ld\n", cycles, cycles, n - cycles);
    } else {
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
    }
    printf("wl-blocks ready\n");
    fflush(stdout);
    if (has_option(argc, argv, "--exit"))
        return 0;
    if (has_option(argc, argv, "--free-exit")) {
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
