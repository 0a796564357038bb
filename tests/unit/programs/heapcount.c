/* Records its own heap for the counters' tests: allocates in the main arena (small
 * blocks, and two big enough to be mmapped), frees some, lets a thread allocate in an
 * arena of its own, then writes, to the file named by argv[1], without allocating:
 *   line 1: mallinfo2's arena keepcost hblkhd, then start_brk and the program break, in hex
 *   then /proc/self/maps, a line "MEMORY", and for each readable, writable mapping a line
 *   "start size" (hex) followed by its bytes. */
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char maps[1 << 16];
static char line[256];
static void *kept[64];
static int out;

static void put(const char *text, size_t size)
{
    if (write(out, text, size) != (ssize_t)size)
        exit(1);
}

static void *in_a_thread(void *unused)
{
    (void)unused;
    for (int i = 0; i < 8; i++)
        kept[32 + i] = malloc(100 + 300 * i);
    return NULL;
}

int main(int argc, char **argv)
{
    pthread_t thread;
    (void)argc;
    for (int i = 0; i < 24; i++)
        kept[i] = malloc(24 + 40 * i);
    kept[24] = malloc(200 * 1024);
    kept[25] = malloc(300 * 1024);
    for (int i = 0; i < 24; i += 3)
        free(kept[i]);
    if (pthread_create(&thread, NULL, in_a_thread, NULL) != 0 || pthread_join(thread, NULL) != 0)
        return 1;
    unsigned long start_brk = 0;
    FILE *stat = fopen("/proc/self/stat", "r");       /* field 47: start_brk (opened before measuring) */
    for (int field = 1; field <= 47 && fscanf(stat, field == 47 ? "%lu" : "%*s", &start_brk) != EOF; field++)
        ;
    fclose(stat);
    int fd = open("/proc/self/maps", O_RDONLY);
    out = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    struct mallinfo2 mi = mallinfo2();
    ssize_t got, total = 0;
    while ((got = read(fd, maps + total, sizeof maps - 1 - total)) > 0)
        total += got;
    put(line, snprintf(line, sizeof line, "%zx %zx %zx %lx %lx\n", mi.arena, mi.keepcost, mi.hblkhd, start_brk,
                       (unsigned long)sbrk(0)));
    put(maps, total);
    put("MEMORY\n", 7);
    for (char *at = maps; at < maps + total;) {
        unsigned long lo, hi;
        char perms[5];
        char *end = strchr(at, '\n');
        *end = '\0';
        if (sscanf(at, "%lx-%lx %4s", &lo, &hi, perms) == 3 && perms[0] == 'r' && perms[1] == 'w'
                && !strstr(at, "[vvar")) {
            put(line, snprintf(line, sizeof line, "%lx %lx\n", lo, hi - lo));
            put((const char *)lo, hi - lo);
        }
        *end = '\n';
        at = end + 1;
    }
    close(out);
    return 0;
}
