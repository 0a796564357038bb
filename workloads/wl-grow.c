/* A heap that grows linearly: every INTERVAL_MS it mallocs one block of STEP bytes (below
 * the mmap threshold, so the brk heap grows), and every eighth step one block of 192 KiB
 * (above it, so malloc mmaps it), and touches them; it keeps them all.  After each step
 * it prints glibc's own counters, the truth for a watch:
 *   GT step=N in_use=BYTES arena=BYTES keepcost=BYTES hblkhd=BYTES
 * where in_use = arena - keepcost + hblkhd (one arena: heap in use by glibc's counters).
 * Usage: wl-grow [STEP [INTERVAL_MS [STEPS]]]  (16384, 50 and 1000 by default); then it
 * waits until killed. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BIG (192 * 1024)

static void **kept;

static void truth(long step)
{
    struct mallinfo2 mi = mallinfo2();
    printf("GT step=%ld in_use=%zu arena=%zu keepcost=%zu hblkhd=%zu\n", step, mi.arena - mi.keepcost + mi.hblkhd,
           mi.arena, mi.keepcost, mi.hblkhd);
}

static void *grab(size_t size)
{
    void *p = malloc(size);
    if (!p)
        exit(1);
    memset(p, 0x5a, size);
    return p;
}

int main(int argc, char **argv)
{
    size_t step = argc > 1 ? strtoul(argv[1], NULL, 0) : 16384;
    long interval_ms = argc > 2 ? atol(argv[2]) : 50;
    long steps = argc > 3 ? atol(argv[3]) : 1000;
    struct timespec pause_between = {interval_ms / 1000, (interval_ms % 1000) * 1000000L};
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("wl-grow pid=%d step=%zu interval_ms=%ld\n", getpid(), step, interval_ms);
    kept = calloc((size_t)steps + steps / 8 + 1, sizeof *kept);
    long n = 0;
    truth(0);
    for (long i = 1; i <= steps; i++) {
        kept[n++] = grab(step);
        if (i % 8 == 0)
            kept[n++] = grab(BIG);
        truth(i);
        nanosleep(&pause_between, NULL);
    }
    printf("wl-grow done\n");
    for (;;)
        pause();
}
