/* libmemcheck-preload.so: leak tracking's cooperative mode.  Preloaded into a guest program
 * (LD_PRELOAD=/lib/libmemcheck-preload.so), it records every malloc-family call into a ring
 * in the process, which gdb_memcheck finds through the exported symbol memcheck_preload_ring
 * and drains at its stops: no debug stop per call.
 *
 * Each record holds the call (operation, arguments, result, thread), the stack pointer at
 * the call's entry, the caller's frame pointer and a copy of the stack above that entry, so
 * the debugger unwinds the allocation stack with the program's call-frame information as it
 * does at a breakpoint.  Calls are recorded under one lock, in the order they took effect.
 * When the ring is full the library calls memcheck_preload_full(), where gdb_memcheck keeps a
 * breakpoint: it drains the ring and moves its tail on.  If nobody did (no debugger), the call
 * is counted in `dropped` and not recorded: nothing is lost silently.
 *
 * The real allocator is glibc's, through its __libc_* entry points. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define MAGIC 0x4b434548434d454dULL          /* "MEMCHECK" */
#define VERSION 1
#define CAPACITY 4096                        /* records */
#define STACK_BYTES 4096                     /* of the stack above the call's entry (1 KiB cut printf's stacks short) */
#define MAX_STACK_SPAN (64UL << 20)          /* further from a stack's top than this: not that stack */

/* Operations, in the order of gdb_memcheck.leakcheck.alloctrack.FAMILY. */
enum { MALLOC, CALLOC, REALLOC, REALLOCARRAY, MEMALIGN, ALIGNED_ALLOC, POSIX_MEMALIGN, VALLOC, PVALLOC, FREE };

struct record {
	uint64_t seq;                        /* the record's slot number + 1, written last */
	uint32_t op;
	uint32_t tid;
	uint64_t args[4];                    /* posix_memalign: args[3] is the block it stored */
	uint64_t result;
	uint64_t sp;                         /* at the call's entry: where its return address is */
	uint64_t fp;                         /* the caller's frame pointer */
	uint64_t stack_len;
	unsigned char stack[STACK_BYTES];    /* [sp, sp + stack_len) */
};

struct ring {
	uint64_t magic;
	uint32_t version;
	uint32_t record_size;
	uint64_t capacity;
	uint64_t stack_bytes;
	struct record *records;
	volatile uint64_t head;              /* records written */
	volatile uint64_t tail;              /* records the debugger has read (it writes this) */
	volatile uint64_t dropped;           /* calls not recorded: the ring was full */
	volatile uint64_t full;              /* times memcheck_preload_full() was called */
} __attribute__((aligned(128)));

static struct record records[CAPACITY];

__attribute__((visibility("default"))) struct ring memcheck_preload_ring = {
	MAGIC, VERSION, sizeof(struct record), CAPACITY, STACK_BYTES, records, 0, 0, 0, 0,
};

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);
extern void *__libc_pvalloc(size_t);
extern void __libc_free(void *);
extern void *__libc_stack_end;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* Where gdb_memcheck keeps a breakpoint: it drains the ring and moves its tail. */
__attribute__((visibility("default"), noinline)) void memcheck_preload_full(struct ring *ring)
{
	__asm__ volatile("" : : "r"(ring) : "memory");
}

static void before_fork(void) { pthread_mutex_lock(&lock); }
static void after_fork_parent(void) { pthread_mutex_unlock(&lock); }
static void after_fork_child(void) { pthread_mutex_unlock(&lock); }

__attribute__((constructor)) static void at_load(void)
{
	pthread_atfork(before_fork, after_fork_parent, after_fork_child);
}

/* The top of the stack `sp` is on: a thread's descriptor sits above its stack, the main
 * thread's stack ends above __libc_stack_end; sp itself when it is on neither. */
static uintptr_t stack_top(uintptr_t sp)
{
	uintptr_t self = (uintptr_t)pthread_self(), main_end = (uintptr_t)__libc_stack_end;
	if (sp < self && self - sp < MAX_STACK_SPAN)
		return self;
	if (sp < main_end && main_end - sp < MAX_STACK_SPAN)
		return main_end;
	return sp;
}

static struct record *slot(void)
{
	struct ring *ring = &memcheck_preload_ring;
	if (ring->head - ring->tail >= CAPACITY) {
		ring->full++;                /* also makes the header page this process's own */
		memcheck_preload_full(ring);
		if (ring->head - ring->tail >= CAPACITY) {
			ring->dropped++;
			return NULL;
		}
	}
	return &records[ring->head % CAPACITY];
}

/* Record one call; `frame` is the wrapper's frame pointer: the entry's sp is just above it. */
static void record(uint32_t op, const uint64_t args[4], uint64_t result, void **frame)
{
	struct record *r = slot();
	if (r == NULL)
		return;
	uintptr_t sp = (uintptr_t)(frame + 1), top = stack_top(sp);
	size_t len = top - sp < STACK_BYTES ? top - sp : STACK_BYTES;
	r->op = op;
	r->tid = (uint32_t)gettid();         /* no __thread cache: TLS would grow every thread's calloc'd TLS block */
	memcpy(r->args, args, sizeof(r->args));
	r->result = result;
	r->sp = sp;
	r->fp = (uint64_t)(uintptr_t)frame[0];
	r->stack_len = len;
	memcpy(r->stack, (const void *)sp, len);
	uint64_t head = memcheck_preload_ring.head;
	__atomic_store_n(&r->seq, head + 1, __ATOMIC_RELEASE);
	__atomic_store_n(&memcheck_preload_ring.head, head + 1, __ATOMIC_RELEASE);
}

#define FRAME ((void **)__builtin_frame_address(0))

void *malloc(size_t n)
{
	pthread_mutex_lock(&lock);
	void *p = __libc_malloc(n);
	record(MALLOC, (uint64_t[4]){n}, (uintptr_t)p, FRAME);
	pthread_mutex_unlock(&lock);
	return p;
}

void *calloc(size_t n, size_t size)
{
	pthread_mutex_lock(&lock);
	void *p = __libc_calloc(n, size);
	record(CALLOC, (uint64_t[4]){n, size}, (uintptr_t)p, FRAME);
	pthread_mutex_unlock(&lock);
	return p;
}

void *realloc(void *old, size_t n)
{
	pthread_mutex_lock(&lock);
	void *p = __libc_realloc(old, n);
	record(REALLOC, (uint64_t[4]){(uintptr_t)old, n}, (uintptr_t)p, FRAME);
	pthread_mutex_unlock(&lock);
	return p;
}

void *reallocarray(void *old, size_t n, size_t size)
{
	size_t bytes;
	pthread_mutex_lock(&lock);
	void *p = NULL;
	if (__builtin_mul_overflow(n, size, &bytes))
		errno = ENOMEM;
	else
		p = __libc_realloc(old, bytes);
	record(REALLOCARRAY, (uint64_t[4]){(uintptr_t)old, n, size}, (uintptr_t)p, FRAME);
	pthread_mutex_unlock(&lock);
	return p;
}

void *memalign(size_t alignment, size_t n)
{
	pthread_mutex_lock(&lock);
	void *p = __libc_memalign(alignment, n);
	record(MEMALIGN, (uint64_t[4]){alignment, n}, (uintptr_t)p, FRAME);
	pthread_mutex_unlock(&lock);
	return p;
}

void *aligned_alloc(size_t alignment, size_t n)
{
	pthread_mutex_lock(&lock);
	void *p = __libc_memalign(alignment, n);
	record(ALIGNED_ALLOC, (uint64_t[4]){alignment, n}, (uintptr_t)p, FRAME);
	pthread_mutex_unlock(&lock);
	return p;
}

int posix_memalign(void **out, size_t alignment, size_t n)
{
	int rc = 0;
	void *p = NULL;
	pthread_mutex_lock(&lock);
	if (alignment % sizeof(void *) != 0 || (alignment & (alignment - 1)) != 0 || alignment == 0)
		rc = EINVAL;
	else if ((p = __libc_memalign(alignment, n)) == NULL)
		rc = ENOMEM;
	else
		*out = p;
	record(POSIX_MEMALIGN, (uint64_t[4]){(uintptr_t)out, alignment, n, (uintptr_t)p}, (uint64_t)rc, FRAME);
	pthread_mutex_unlock(&lock);
	return rc;
}

void *valloc(size_t n)
{
	pthread_mutex_lock(&lock);
	void *p = __libc_valloc(n);
	record(VALLOC, (uint64_t[4]){n}, (uintptr_t)p, FRAME);
	pthread_mutex_unlock(&lock);
	return p;
}

void *pvalloc(size_t n)
{
	pthread_mutex_lock(&lock);
	void *p = __libc_pvalloc(n);
	record(PVALLOC, (uint64_t[4]){n}, (uintptr_t)p, FRAME);
	pthread_mutex_unlock(&lock);
	return p;
}

void free(void *p)
{
	pthread_mutex_lock(&lock);
	record(FREE, (uint64_t[4]){(uintptr_t)p}, 0, FRAME);     /* before: glibc aborts on a bad free */
	__libc_free(p);
	pthread_mutex_unlock(&lock);
}
