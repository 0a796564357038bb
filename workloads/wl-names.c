/* Mappings that /proc/PID/maps names by special rules, for comparing memcheck-maps
 * with the guest's own file:
 *   wl-names               memfds (one with a newline in its name), a deleted file, a
 *                          file whose name holds a newline, a SysV shm attachment, a
 *                          MAP_SHARED|MAP_ANONYMOUS mapping, prctl-named private and
 *                          shared anonymous mappings, a perf event ring, a packet
 *                          socket ring and a named dma-buf; then it starts the three
 *                          heap edge cases below and blocks until killed.
 *   wl-names --no-heap     never moves its program break (brk == start_brk).
 *   wl-names --brk-shrunk  grows its break by 64 KiB, touches it, shrinks it back.
 *   wl-names --page-at-brk maps an anonymous page starting at the break: it touches
 *                          the heap range [start_brk, brk) without overlapping it.
 * The edge cases print with write(2) only: stdio would malloc, and malloc grows the
 * heap.  In a static binary glibc's start-up code moves the break before main (the
 * TLS block, its own mallocs), so there they start from, and shrink back to, the
 * break main was given, above start_brk.
 * Mappings the kernel cannot make (no CONFIG_ANON_VMA_NAME, no dma-buf heap) are
 * reported as unavailable and left out; every process prints "ready" at the end. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/dma-buf.h>
#include <linux/dma-heap.h>
#include <linux/if_packet.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#define PR_SET_VMA_ANON_NAME 0
#endif

#define PAGE 4096UL

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void *map_fd(int fd, size_t len, int flags)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, flags, fd, 0);
    if (p == MAP_FAILED)
        die("mmap");
    return p;
}

static void *memfd_mapping(const char *name, size_t len)
{
    int fd = memfd_create(name, 0);
    if (fd < 0 || ftruncate(fd, len) < 0)
        die("memfd_create");
    char *p = map_fd(fd, len, MAP_SHARED);
    close(fd);
    p[0] = 1;
    return p;
}

/* A file mapped shared; unlinked afterwards when `unlink_it`. */
static void *file_mapping(const char *path, size_t len, int unlink_it)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ftruncate(fd, len) < 0)
        die(path);
    char *p = map_fd(fd, len, MAP_SHARED);
    close(fd);
    if (unlink_it && unlink(path) < 0)
        die("unlink");
    return p;
}

static void *sysv_shm(key_t key, size_t len)
{
    int id = shmget(key, len, IPC_CREAT | 0600);
    if (id < 0)
        die("shmget");
    char *p = shmat(id, NULL, 0);
    if (p == (void *)-1)
        die("shmat");
    shmctl(id, IPC_RMID, NULL);     /* freed when the last process detaches */
    p[0] = 1;
    return p;
}

static void *anon_mapping(size_t len, int flags, const char *name, const char *kind)
{
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, flags | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        die("mmap anonymous");
    p[0] = 1;
    if (name && prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, (unsigned long)p, len, (unsigned long)name) < 0)
        printf("wl-names %s anon name unavailable: %s\n", kind, strerror(errno));
    return p;
}

static void *perf_ring(void)
{
    struct perf_event_attr attr = {
        .type = PERF_TYPE_SOFTWARE, .size = sizeof attr, .config = PERF_COUNT_SW_DUMMY, .disabled = 1,
    };
    int fd = syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
    if (fd < 0) {
        printf("wl-names perf ring unavailable: %s\n", strerror(errno));
        return NULL;
    }
    return map_fd(fd, 2 * PAGE, MAP_SHARED);
}

static void *packet_ring(void)
{
    int fd = socket(AF_PACKET, SOCK_RAW, 0);
    struct tpacket_req req = { .tp_block_size = PAGE, .tp_block_nr = 1, .tp_frame_size = PAGE / 2,
                               .tp_frame_nr = 2 };
    if (fd < 0 || setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) < 0) {
        printf("wl-names packet ring unavailable: %s\n", strerror(errno));
        return NULL;
    }
    return map_fd(fd, PAGE, MAP_SHARED);
}

static void *named_dmabuf(const char *name)
{
    struct dma_heap_allocation_data alloc = { .len = PAGE, .fd_flags = O_RDWR | O_CLOEXEC };
    int heap = open("/dev/dma_heap/system", O_RDONLY | O_CLOEXEC);
    if (heap < 0 || ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &alloc) < 0) {
        printf("wl-names dma-buf unavailable: %s\n", strerror(errno));
        return NULL;
    }
    if (ioctl(alloc.fd, DMA_BUF_SET_NAME_B, name) < 0)
        die("DMA_BUF_SET_NAME");
    return map_fd(alloc.fd, PAGE, MAP_SHARED);
}

/* One line through write(2), so that printing never allocates. */
static void say(const char *mode, const char *what)
{
    char line[128];
    int n = snprintf(line, sizeof line, "wl-names %s pid=%d %s\n", mode, getpid(), what);
    if (write(1, line, n) != n)
        _exit(1);
}

static void heap_edge_case(const char *mode)
{
    char *base = sbrk(0);
    if (strcmp(mode, "--brk-shrunk") == 0) {
        char *grown = sbrk(64 * 1024);
        if (grown == (void *)-1)
            _exit(1);
        memset(grown, 'b', 64 * 1024);
        if (brk(base) < 0)
            _exit(1);
    } else if (strcmp(mode, "--page-at-brk") == 0) {
        /* read-only, so that it cannot merge with a heap VMA that ends at the break */
        if (mmap(base, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) != base)
            _exit(1);
    }
    say(mode + 2, "ready");
    for (;;)
        pause();
}

/* Runs this program again with `mode`, by its own path, so that comm is its name. */
static void start_edge_case(const char *mode)
{
    char self[256];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n < 0)
        die("readlink");
    self[n] = 0;
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        execl(self, self, mode, (char *)NULL);
        _exit(127);
    }
}

int main(int argc, char **argv)
{
    if (argc > 1)
        heap_edge_case(argv[1]);
    int pid = getpid();
    char deleted[64], newline[64];
    snprintf(deleted, sizeof deleted, "/tmp/wl-names-%d-deleted", pid);
    snprintf(newline, sizeof newline, "/tmp/wl-names-%d\nnew line\\x", pid);

    memfd_mapping("wl-names-memfd", 2 * PAGE);
    memfd_mapping("wl-names\nmemfd", PAGE);
    file_mapping(deleted, 2 * PAGE, 1);
    file_mapping(newline, PAGE, 0);
    sysv_shm(0x5a000000 | pid, 3 * PAGE);
    anon_mapping(4 * PAGE, MAP_SHARED, NULL, NULL);
    anon_mapping(5 * PAGE, MAP_PRIVATE, "wl-names-private", "private");
    anon_mapping(6 * PAGE, MAP_SHARED, "wl-names-shared", "shared");
    perf_ring();
    packet_ring();
    named_dmabuf("wl-names-dmabuf");
    char *heap = malloc(100000);
    memset(heap, 'h', 100000);

    fflush(stdout);
    start_edge_case("--no-heap");
    start_edge_case("--brk-shrunk");
    start_edge_case("--page-at-brk");
    printf("wl-names main pid=%d ready\n", pid);
    fflush(stdout);
    for (;;)
        pause();
}
