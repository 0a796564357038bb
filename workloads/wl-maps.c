/* A long-lived process with a varied address space, for comparing memcheck-maps
 * with the guest's /proc/PID/maps: file mappings at non-zero offsets, anonymous
 * mappings, an mprotect that splits a mapping, a munmap hole, a second thread
 * and a heap.  Prints what it mapped, then blocks until killed. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096UL

static void *thread_main(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return NULL;
}

static char *map_file(const char *path, size_t len, off_t off, int prot)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        perror(path);
        exit(1);
    }
    char *p = mmap(NULL, len, prot, MAP_PRIVATE, fd, off);
    close(fd);
    if (p == MAP_FAILED) {
        perror("mmap file");
        exit(1);
    }
    return p;
}

static void make_data_file(const char *path, size_t len)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    char page[PAGE];
    memset(page, 'd', sizeof page);
    for (size_t i = 0; i < len; i += PAGE)
        if (write(fd, page, PAGE) != (ssize_t)PAGE)
            exit(1);
    close(fd);
}

int main(int argc, char **argv)
{
    const char *self = argc > 1 ? argv[1] : "/proc/self/exe";
    /* a file of its own: wl-maps and wl-maps-static start together, and one's O_TRUNC under
     * the other's mapping made the other's first touch of it a SIGBUS */
    char data_file[64];
    const char *name = strrchr(self, '/');
    snprintf(data_file, sizeof data_file, "/tmp/%s.dat", argc > 1 && name ? name + 1 : "wl-maps");
    make_data_file(data_file, 16 * PAGE);

    char *exe_view = map_file(self, 2 * PAGE, 2 * PAGE, PROT_READ);
    char *dat = map_file(data_file, 8 * PAGE, 3 * PAGE, PROT_READ | PROT_WRITE);
    dat[0] = 1; /* a private copy-on-write page: counts as anonymous in smaps */

    char *anon = mmap(NULL, 64 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memset(anon, 'a', 64 * PAGE);
    mprotect(anon + 16 * PAGE, 8 * PAGE, PROT_READ);          /* split into three */
    munmap(anon + 40 * PAGE, 4 * PAGE);                        /* punch a hole */

    char *heap = malloc(100000);
    memset(heap, 'h', 100000);

    pthread_t t;
    pthread_create(&t, NULL, thread_main, NULL);

    printf("wl-maps pid=%d exe_view=%p dat=%p anon=%p heap=%p\n",
           getpid(), (void *)exe_view, (void *)dat, (void *)anon, (void *)heap);
    printf("wl-maps ready\n");
    fflush(stdout);
    for (;;)
        pause();
}
