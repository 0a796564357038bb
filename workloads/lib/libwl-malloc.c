/* A malloc replacement, loaded with LD_PRELOAD=/lib/libwl-malloc.so: the program's
 * malloc-family calls (and libc's own, which go through the same symbols) reach these
 * functions instead of glibc's, as with jemalloc or tcmalloc.  Blocks come from one
 * private mapping, each after a 16-byte header (size, state), and are never reused, so a
 * freed block keeps no stale pointer a leak scan could follow.  A free of a pointer that
 * is not a live block of the mapping (a double or wild free) is ignored, where glibc
 * aborts, so the programs run to their end.  Thread-safe through one spin lock. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#define ARENA_SIZE (256UL << 20)
#define ALIGN 16UL
#define LIVE 0x6c697665UL               /* "live" */
#define FREED 0x66726565UL              /* "free" */

struct header {
    size_t size;
    size_t state;
};

static char *arena, *next_free;
static int lock;

static void take(void) { while (__atomic_exchange_n(&lock, 1, __ATOMIC_ACQUIRE)) ; }
static void give(void) { __atomic_store_n(&lock, 0, __ATOMIC_RELEASE); }

/* A block of `size` bytes whose address is a multiple of `align` (a power of two, >= 16). */
static void *carve(size_t size, size_t align)
{
    void *out = NULL;
    take();
    if (!arena) {
        void *m = mmap(NULL, ARENA_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m != MAP_FAILED)
            arena = next_free = m;
    }
    if (arena && size < ARENA_SIZE) {
        uintptr_t at = ((uintptr_t)next_free + sizeof(struct header) + align - 1) & ~(align - 1);
        uintptr_t end = (at + size + ALIGN - 1) & ~(ALIGN - 1);
        if (end <= (uintptr_t)arena + ARENA_SIZE) {
            struct header *h = (struct header *)at - 1;
            h->size = size;
            h->state = LIVE;
            next_free = (char *)end;
            out = (void *)at;
        }
    }
    give();
    if (!out)
        errno = ENOMEM;
    return out;
}

static struct header *live_header(void *p)
{
    char *c = p;
    if (!arena || c < arena + sizeof(struct header) || c >= arena + ARENA_SIZE || (uintptr_t)c % ALIGN)
        return NULL;
    struct header *h = (struct header *)c - 1;
    return h->state == LIVE ? h : NULL;
}

void *malloc(size_t size) { return carve(size, ALIGN); }

void free(void *p)
{
    take();
    struct header *h = p ? live_header(p) : NULL;
    if (h)
        h->state = FREED;
    give();
}

void *calloc(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = carve(n * size, ALIGN);
    if (p)
        memset(p, 0, n * size);
    return p;
}

void *realloc(void *p, size_t size)
{
    if (!p)
        return malloc(size);
    struct header *h = live_header(p);
    void *q = carve(size, ALIGN);
    if (q && h)
        memcpy(q, p, h->size < size ? h->size : size);
    if (q)
        free(p);
    return q;
}

int posix_memalign(void **out, size_t align, size_t size)
{
    if (align % sizeof(void *) || (align & (align - 1)))
        return EINVAL;
    void *p = carve(size, align < ALIGN ? ALIGN : align);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

void *aligned_alloc(size_t align, size_t size) { return carve(size, align < ALIGN ? ALIGN : align); }

void *memalign(size_t align, size_t size) { return carve(size, align < ALIGN ? ALIGN : align); }

size_t malloc_usable_size(void *p)
{
    struct header *h = p ? live_header(p) : NULL;
    return h ? h->size : 0;
}
