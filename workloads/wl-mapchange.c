/* Known changes to a memory map, for map deltas.  First it maps two regions at fixed
 * addresses, far from anything else so the kernel merges them with nothing (A: four
 * pages, B: three pages), touches them, prints "mapped" and waits for SIGUSR1.  Then it
 * maps region C (two pages), unmaps A, makes B's middle page read-only, grows the program
 * break by 64 KiB and touches all that, prints its truth and "changed", and waits again.
 * Truth lines: GT added|removed|changed start=0x... end=0x... [perms=r--p], GT heap
 * start=0x... end=0x... */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096
#define REGION_A ((char *)0x7e0000000000)
#define REGION_B ((char *)0x7e0000100000)
#define REGION_C ((char *)0x7e0000200000)
#define BRK_GROWTH (64 * 1024)

static volatile sig_atomic_t go;

static void on_usr1(int sig)
{
    (void)sig;
    go = 1;
}

static void wait_for_usr1(const sigset_t *old)
{
    for (go = 0; !go;)
        sigsuspend(old);
}

static char *map_at(char *where, size_t pages)
{
    char *p = mmap(where, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                   -1, 0);
    if (p != where) {
        perror("mmap");
        exit(1);
    }
    memset(p, 0x5a, pages * PAGE);
    return p;
}

static void truth(const char *what, char *start, size_t pages, const char *extra)
{
    printf("GT %s start=%p end=%p%s\n", what, (void *)start, (void *)(start + pages * PAGE), extra);
}

int main(void)
{
    sigset_t usr1, old;
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGUSR1, on_usr1);
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, &old);
    printf("wl-mapchange pid=%d\n", getpid());
    map_at(REGION_A, 4);
    map_at(REGION_B, 3);
    printf("mapped\n");
    wait_for_usr1(&old);

    map_at(REGION_C, 2);
    truth("added", REGION_C, 2, "");
    if (munmap(REGION_A, 4 * PAGE) != 0)
        exit(1);
    truth("removed", REGION_A, 4, "");
    if (mprotect(REGION_B + PAGE, PAGE, PROT_READ) != 0)
        exit(1);
    truth("changed", REGION_B + PAGE, 1, " perms=r--p");
    char *old_break = sbrk(0);
    char *grown = sbrk(BRK_GROWTH);
    if (grown == (void *)-1)
        exit(1);
    memset(grown, 0x5a, BRK_GROWTH);
    printf("GT heap start=%p end=%p\n", (void *)old_break, (void *)(old_break + BRK_GROWTH));
    printf("changed\n");
    wait_for_usr1(&old);
    return 0;
}
