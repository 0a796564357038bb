/* A program with known leaks.  It prints its own ground truth, one line a block:
 *   GT <category> addr=0x... size=N via=<allocator> in=<function>
 * with category one of definite, indirect, possible, reachable, freed.
 * Usage: wl-leak [--wait] [--corrupt]
 *   --wait: block until SIGUSR1, then exit (lets a debugger scan the live heap first);
 *   --corrupt: then overwrite the size field of the still-reachable block's chunk, as
 *              a heap overflow would, so a heap walker meets a broken chunk. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct node {
    struct node *next;
    char payload[40];
};

void *still_reachable_global;   /* start pointer kept: still reachable */
char *interior_global;          /* interior pointer only: possibly lost */
static volatile sig_atomic_t go;

static void report(const char *category, void *p, size_t size, const char *via, const char *fn)
{
    printf("GT %s addr=%p size=%zu via=%s in=%s\n", category, p, size, via, fn);
}

static __attribute__((noinline)) void leak_malloc(void)
{
    char *p = malloc(40);
    memset(p, 'm', 40);
    report("definite", p, 40, "malloc", __func__);
}

static __attribute__((noinline)) void leak_calloc(void)
{
    void *p = calloc(10, 24);
    report("definite", p, 240, "calloc", __func__);
}

static __attribute__((noinline)) void leak_realloc(void)
{
    char *p = malloc(16);
    p = realloc(p, 200);
    memset(p, 'r', 200);
    report("definite", p, 200, "realloc", __func__);
}

static __attribute__((noinline)) void leak_memalign(void)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, 96) != 0)
        exit(1);
    memset(p, 'a', 96);
    report("definite", p, 96, "posix_memalign", __func__);
}

static __attribute__((noinline)) void leak_big(void)
{
    size_t size = 200 * 1024;   /* above the 128 KiB mmap threshold */
    char *p = malloc(size);
    memset(p, 'b', size);
    report("definite", p, size, "malloc", __func__);
}

static __attribute__((noinline)) void leak_list(void)
{
    struct node *head = malloc(sizeof *head);
    report("definite", head, sizeof *head, "malloc", __func__);
    struct node *tail = head;
    for (int i = 0; i < 3; i++) {
        tail->next = malloc(sizeof *tail);
        report("indirect", tail->next, sizeof *tail, "malloc", __func__);
        tail = tail->next;
    }
    tail->next = NULL;
}

static __attribute__((noinline)) void leak_interior(void)
{
    char *p = malloc(64);
    memset(p, 'i', 64);
    interior_global = p + 16;
    report("possible", p, 64, "malloc", __func__);
}

static __attribute__((noinline)) void keep_reachable(void)
{
    still_reachable_global = malloc(48);
    memset(still_reachable_global, 'k', 48);
    report("reachable", still_reachable_global, 48, "malloc", __func__);
}

static __attribute__((noinline)) void free_some(void)
{
    static const size_t sizes[] = {24, 24, 56, 120, 1000, 5000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p = malloc(sizes[i]);
        report("freed", p, sizes[i], "malloc", __func__);
        free(p);                /* small ones stay parked in tcache */
    }
}

/* Overwrite the dead stack below main's frame so no stale copy of a leaked
 * pointer survives there to make it look reachable. */
static __attribute__((noinline)) void scrub_stack(void)
{
    volatile char junk[16384];
    memset((char *)junk, 0, sizeof junk);
}

static void on_usr1(int sig)
{
    (void)sig;
    go = 1;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGUSR1, on_usr1);
    printf("wl-leak pid=%d\n", getpid());
    leak_malloc();
    leak_calloc();
    leak_realloc();
    leak_memalign();
    leak_big();
    leak_list();
    leak_interior();
    keep_reachable();
    free_some();
    scrub_stack();
    int wait = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--wait") == 0)
            wait = 1;
        if (strcmp(argv[i], "--corrupt") == 0) {
            ((size_t *)still_reachable_global)[-1] = 0x3;
            printf("GT corrupted chunk of %p\n", still_reachable_global);
        }
    }
    printf("wl-leak done\n");
    while (wait && !go)
        pause();
    return 0;
}
