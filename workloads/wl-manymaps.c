/* A process with many small mappings, for the maps/RSS benchmark and multi-level
 * maple trees: N one-page anonymous mappings whose protections alternate so the
 * kernel cannot merge neighbours, each page touched.  Blocks until killed.
 * Usage: wl-manymaps N */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096UL

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000;
    char *base = mmap(NULL, (size_t)n * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    for (long i = 0; i < n; i++)
        base[i * PAGE] = 1;
    for (long i = 1; i < n; i += 2)
        mprotect(base + i * PAGE, PAGE, PROT_READ);
    printf("wl-manymaps pid=%d mappings=%ld base=%p\n", getpid(), n, (void *)base);
    printf("wl-manymaps ready\n");
    fflush(stdout);
    for (;;)
        pause();
}
