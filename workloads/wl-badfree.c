/* Frees that go wrong, and blocks inherited across fork.  Prints its ground truth:
 *   GT <what> addr=0x... size=N in=<function>
 * A constructor leaks one block before main (a "transition" block, forgiven by default).
 * The parent keeps one block and leaks one, then forks three children:
 *   - "inherit": exits at once without freeing what it inherited (nothing of its own leaks);
 *   - "double":  frees a fresh block twice (glibc aborts on the second free);
 *   - "wild":    frees a pointer malloc never returned (glibc aborts).
 * The parent waits for them, frees the kept block and exits, leaking one block.
 * Usage: wl-badfree */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char *kept;
static char wild_area[64] __attribute__((aligned(16)));

static void report(const char *what, void *p, size_t size, const char *fn)
{
    printf("GT %s addr=%p size=%zu in=%s\n", what, p, size, fn);
}

static uintptr_t before_main_hidden;   /* the address, disguised so no scan sees a pointer */
#define DISGUISE 0xa5a5a5a5a5a5a5a5u

__attribute__((constructor)) static void constructor_leak(void)
{
    before_main_hidden = (uintptr_t)malloc(33) ^ DISGUISE;
}

static __attribute__((noinline)) void parent_leak(void)
{
    char *p = malloc(100);
    memset(p, 'p', 100);
    report("definite", p, 100, __func__);
}

static __attribute__((noinline)) void double_free(void)
{
    char *p = malloc(24);
    report("double-free", p, 24, __func__);
    free(p);
    free(p);
}

static __attribute__((noinline)) void wild_free(void)
{
    report("wild-free", wild_area + 16, 0, __func__);
    free(wild_area + 16);
}

static void child(const char *what)
{
    pid_t pid = fork();
    if (pid != 0) {
        printf("child %s pid=%d\n", what, pid);
        waitpid(pid, NULL, 0);
        return;
    }
    if (strcmp(what, "double") == 0)
        double_free();
    if (strcmp(what, "wild") == 0)
        wild_free();
    exit(0);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("wl-badfree pid=%d\n", getpid());
    report("transition", (void *)(before_main_hidden ^ DISGUISE), 33, "constructor_leak");
    kept = malloc(50);
    report("reachable", kept, 50, "main");
    parent_leak();
    child("inherit");
    child("double");
    child("wild");
    free(kept);
    printf("wl-badfree done\n");
    return 0;
}
