// SPDX-License-Identifier: GPL-2.0
/*
 * Ground truth for `memcheck slab`, `memcheck kmem` and `memcheck kleaks`: a cache of its
 * own and a kmalloc and a vmalloc allocation in each leak class, every object printed to
 * the kernel log with its intended class (one "KMOD" line each), then the cache's own
 * accounting of live objects.  Nothing is freed at unload: the module is loaded once per
 * guest and stays.
 */
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>

#define CACHE_NAME "memcheck_kmod"
#define KEPT 300		/* reachable from memcheck_kept[]; every third one is freed again */
#define FULL 64			/* reachable from memcheck_full[]: more than a slab: at least one full slab */
#define LIST 3			/* the list hanging off a leaked head */

struct kobj {
	struct kobj *next;
	unsigned long tag;
	char text[112];
};

/*
 * The roots are global, not static: GCC drops a static that is only ever written, and
 * with it the only pointer to the objects it should keep reachable.
 */
struct kmem_cache *memcheck_cache;
struct kobj *memcheck_kept[KEPT];
struct kobj *memcheck_full[FULL];
char *memcheck_interior;		/* only a pointer into an object: possibly leaked */
void *memcheck_kept_kmalloc;
void *memcheck_kept_vmalloc;
static unsigned long live;		/* objects of the memcheck_cache allocated and not freed */

static void ctor(void *p)
{
	/* a constructor keeps SLUB from merging the cache into a kmalloc cache */
	memset(p, 0, sizeof(struct kobj));
}

static void report(const char *class, const void *addr, size_t size, const char *cache_name)
{
	pr_info("KMOD %s addr=%px size=%zu cache=%s\n", class, addr, size, cache_name);
}

static struct kobj *get(unsigned long tag)
{
	struct kobj *o = kmem_cache_alloc(memcheck_cache, GFP_KERNEL);

	if (o) {
		o->tag = tag;
		snprintf(o->text, sizeof(o->text), "memcheck object %lu", tag);
		live++;
	}
	return o;
}

static void put(struct kobj *o)
{
	kmem_cache_free(memcheck_cache, o);
	live--;
}

/* noinline: the pointers these return or drop live only in their own frames */
static noinline int leak_objects(void)
{
	struct kobj *head, *o;
	void *k, *v;
	int i;

	for (i = 0; i < 3; i++) {
		o = get(1000 + i);
		if (!o)
			return -ENOMEM;
		report("definite", o, sizeof(*o), CACHE_NAME);
	}
	head = get(2000);
	if (!head)
		return -ENOMEM;
	report("definite", head, sizeof(*head), CACHE_NAME);
	o = head;
	for (i = 0; i < LIST; i++) {
		o->next = get(2001 + i);
		if (!o->next)
			return -ENOMEM;
		o = o->next;
		report("indirect", o, sizeof(*o), CACHE_NAME);
	}
	o = get(3000);
	if (!o)
		return -ENOMEM;
	memcheck_interior = o->text + 8;
	report("possible", o, sizeof(*o), CACHE_NAME);
	k = kmalloc(200, GFP_KERNEL);
	v = vmalloc(3 * PAGE_SIZE);
	if (!k || !v)
		return -ENOMEM;
	memset(k, 'k', 200);
	memset(v, 'v', 3 * PAGE_SIZE);
	report("definite", k, 200, "kmalloc");
	report("definite", v, 3 * PAGE_SIZE, "vmalloc");
	return 0;
}

/* frees come last: no later allocation may take a freed object's place */
static int __init memcheck_kmod_init(void)
{
	struct kobj *freed;
	int i, err;

	memcheck_cache = kmem_cache_create(CACHE_NAME, sizeof(struct kobj), 0, 0, ctor);
	if (!memcheck_cache)
		return -ENOMEM;
	for (i = 0; i < KEPT; i++) {
		memcheck_kept[i] = get(i);
		if (!memcheck_kept[i])
			return -ENOMEM;
	}
	for (i = 0; i < FULL; i++) {
		memcheck_full[i] = get(10000 + i);
		if (!memcheck_full[i])
			return -ENOMEM;
		report("reachable", memcheck_full[i], sizeof(struct kobj), CACHE_NAME);
	}
	memcheck_kept_kmalloc = kmalloc(200, GFP_KERNEL);
	memcheck_kept_vmalloc = vmalloc(2 * PAGE_SIZE);
	if (!memcheck_kept_kmalloc || !memcheck_kept_vmalloc)
		return -ENOMEM;
	report("reachable", memcheck_kept_kmalloc, 200, "kmalloc");
	report("reachable", memcheck_kept_vmalloc, 2 * PAGE_SIZE, "vmalloc");
	err = leak_objects();
	if (err)
		return err;
	freed = get(4000);
	if (!freed)
		return -ENOMEM;
	report("freed", freed, sizeof(*freed), CACHE_NAME);
	put(freed);
	for (i = 0; i < KEPT; i++) {
		report(i % 3 ? "reachable" : "freed", memcheck_kept[i], sizeof(struct kobj), CACHE_NAME);
		if (i % 3 == 0) {
			put(memcheck_kept[i]);
			memcheck_kept[i] = NULL;
		}
	}
	pr_info("KMOD count cache=%s live=%lu object_size=%zu\n", CACHE_NAME, live, sizeof(struct kobj));
	pr_info("KMOD ready\n");
	return 0;
}

module_init(memcheck_kmod_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("gdb_memcheck's ground truth for kernel memory");
