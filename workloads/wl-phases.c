/* Leaks in two phases, for leak deltas.  Phase 1 leaks three blocks (leak_a 100 bytes,
 * leak_b 200, leak_grow 48); phase 2 leaks two more (leak_c 300, leak_d 400) and one more
 * from leak_grow, whose loss record grows from one block to two.  Every leak comes from
 * one call site, so each function's blocks share one allocation stack in both phases.
 * After each phase it prints its truth and "phase N done", then waits for SIGUSR1; it
 * exits after the last.  Truth lines: GT definite addr=0x... size=N in=FUNCTION phase=P */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PHASES 2

static volatile sig_atomic_t go;
static int phase;

static void report(void *p, size_t size, const char *fn)
{
    printf("GT definite addr=%p size=%zu in=%s phase=%d\n", p, size, fn, phase);
}

static __attribute__((noinline)) void leak_a(void) { char *p = malloc(100); memset(p, 'a', 100); report(p, 100, __func__); }
static __attribute__((noinline)) void leak_b(void) { char *p = malloc(200); memset(p, 'b', 200); report(p, 200, __func__); }
static __attribute__((noinline)) void leak_c(void) { char *p = malloc(300); memset(p, 'c', 300); report(p, 300, __func__); }
static __attribute__((noinline)) void leak_d(void) { char *p = malloc(400); memset(p, 'd', 400); report(p, 400, __func__); }
static __attribute__((noinline)) void leak_grow(void) { char *p = malloc(48); memset(p, 'g', 48); report(p, 48, __func__); }

/* Overwrite the dead stack so no stale copy of a leaked pointer looks like a root. */
static __attribute__((noinline)) void scrub_stack(void)
{
    volatile char junk[16384];
    memset((char *)junk, 0, sizeof junk);
}

static __attribute__((noinline)) void run_phase(void)
{
    if (phase == 1) {
        leak_a();
        leak_b();
    } else {
        leak_c();
        leak_d();
    }
    leak_grow();
    scrub_stack();
}

static void on_usr1(int sig)
{
    (void)sig;
    go = 1;
}

int main(void)
{
    sigset_t usr1, old;
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGUSR1, on_usr1);
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, &old);
    printf("wl-phases pid=%d\n", getpid());
    for (phase = 1; phase <= PHASES; phase++) {
        run_phase();
        printf("phase %d done\n", phase);
        for (go = 0; !go;)
            sigsuspend(&old);
    }
    return 0;
}
