/* Lost cycles that point into each other, into trees and back, and the ways a cycle can
 * still be reached: the shapes where valgrind's split of lost blocks into definitely and
 * indirectly lost depends on its clique walk, which its manual leaves open.
 *
 * valgrind visits the unreached blocks in address order.  Each one not yet claimed leads a
 * clique: it claims every unclaimed block it reaches, and a claimed block that led a
 * clique of its own becomes indirectly lost, its clique's bytes moving to the new leader.
 * A block reached only through an already claimed block stays where it was.  So a cycle
 * is led by its lowest block, and which leader survives can depend on which structure sits
 * lower; every shape below picks its roles by address, so its truth holds under any
 * allocator.
 *
 * Every structure has a block size of its own, 24 + 16k bytes (glibc's usable size equals
 * the request), so each definitely lost block makes a loss record of its own both in
 * valgrind (by stack) and in a scan (by size).  Ground truth, one line a block:
 *   GT <category> addr=0x... size=N via=calloc in=<shape> [indirect=N]
 * with category one of definite, indirect, possible, reachable; `indirect` (definite
 * blocks only) is the bytes valgrind's record adds as "(N direct, M indirect)".
 * Usage: wl-cliques [--wait]   (--wait: block until SIGUSR1, then exit) */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))
#define RING 3

struct node {
    struct node *link;      /* the next block of its cycle, or a tree's first child */
    void *other;            /* a tree's second child, or a pointer into another structure */
    size_t size;            /* the block's size: a small number, so no valgrind heuristic
                               takes an interior pointer for a reference */
};

struct ring {
    struct node *n[RING];
};

struct node *reachable_root;    /* start pointer to a block that points into a cycle */
struct node *reachable_holder;  /* start pointer to a block with an interior pointer into one */
char *interior_root;            /* interior pointer straight into a cycle */
static volatile sig_atomic_t go;

static NOINLINE struct node *new_node(size_t size)
{
    struct node *n = calloc(1, size);
    n->size = size;
    return n;
}

static NOINLINE struct ring make_ring(size_t size)
{
    struct ring r;
    for (int i = 0; i < RING; i++)
        r.n[i] = new_node(size);
    for (int i = 0; i < RING; i++)
        r.n[i]->link = r.n[(i + 1) % RING];
    return r;
}

static struct node *lowest(const struct ring *r)
{
    struct node *low = r->n[0];
    for (int i = 1; i < RING; i++)
        if (r->n[i] < low)
            low = r->n[i];
    return low;
}

/* The block after the lowest one in the cycle: never the cycle's leader. */
static struct node *follower(const struct ring *r)
{
    return lowest(r)->link;
}

static size_t ring_bytes(const struct ring *r)
{
    return RING * r->n[0]->size;
}

static void report(const char *category, const struct node *p, const char *shape, size_t indirect)
{
    printf("GT %s addr=%p size=%zu via=calloc in=%s", category, (const void *)p, p->size, shape);
    if (strcmp(category, "definite") == 0)
        printf(" indirect=%zu", indirect);
    printf("\n");
}

/* Every block of the cycle is `category`, except `leader` (if it is one of them). */
static void report_ring(const struct ring *r, const char *category, const struct node *leader,
                        size_t indirect, const char *shape)
{
    for (int i = 0; i < RING; i++)
        report(r->n[i] == leader ? "definite" : category, r->n[i], shape, indirect);
}

/* The two cycles, the one whose lowest block is lower first. */
static void by_address(struct ring *x, struct ring *y)
{
    if (lowest(y) < lowest(x)) {
        struct ring t = *x;
        *x = *y;
        *y = t;
    }
}

/* Issue 15: a block of one cycle points at the leader of a lower cycle.  The higher
 * clique takes the lower leader in: one definitely lost block, five indirectly. */
static NOINLINE void cycle_into_cycle_leader(void)
{
    struct ring lo = make_ring(24);
    struct ring hi = make_ring(40);
    by_address(&lo, &hi);
    follower(&hi)->other = lowest(&lo);
    report_ring(&hi, "indirect", lowest(&hi), ring_bytes(&hi) - lowest(&hi)->size + ring_bytes(&lo), __func__);
    report_ring(&lo, "indirect", NULL, 0, __func__);
}

/* The same, but the pointer lands on a block the lower cycle's leader already claimed:
 * valgrind leaves both leaders definitely lost. */
static NOINLINE void cycle_into_cycle_follower(void)
{
    struct ring lo = make_ring(56);
    struct ring hi = make_ring(72);
    by_address(&lo, &hi);
    follower(&hi)->other = follower(&lo);
    report_ring(&hi, "indirect", lowest(&hi), ring_bytes(&hi) - lowest(&hi)->size, __func__);
    report_ring(&lo, "indirect", lowest(&lo), ring_bytes(&lo) - lowest(&lo)->size, __func__);
}

/* Three cycles, each pointing at the leader of the next lower one: the leaders fall one
 * into the other, and the highest holds all the rest. */
static NOINLINE void chain_of_cycles(void)
{
    struct ring low = make_ring(88);
    struct ring mid = make_ring(104);
    struct ring high = make_ring(120);
    by_address(&low, &mid);
    by_address(&mid, &high);
    by_address(&low, &mid);
    follower(&high)->other = lowest(&mid);
    follower(&mid)->other = lowest(&low);
    size_t rest = ring_bytes(&low) + ring_bytes(&mid) + ring_bytes(&high) - lowest(&high)->size;
    report_ring(&high, "indirect", lowest(&high), rest, __func__);
    report_ring(&mid, "indirect", NULL, 0, __func__);
    report_ring(&low, "indirect", NULL, 0, __func__);
}

/* Two cycles pointing into each other make one strongly connected lump: its lowest
 * block leads it all. */
static NOINLINE void mutual_cycles(void)
{
    struct ring lo = make_ring(136);
    struct ring hi = make_ring(152);
    by_address(&lo, &hi);
    follower(&lo)->other = follower(&hi);
    follower(&hi)->other = follower(&lo);
    report_ring(&lo, "indirect", lowest(&lo), ring_bytes(&lo) - lowest(&lo)->size + ring_bytes(&hi), __func__);
    report_ring(&hi, "indirect", NULL, 0, __func__);
}

/* A root and its two children. */
static NOINLINE struct node *make_tree(size_t size)
{
    struct node *root = new_node(size);
    root->link = new_node(size);
    root->other = new_node(size);
    return root;
}

static void report_tree(struct node *root, const char *category, size_t indirect, const char *shape)
{
    report(category, root, shape, indirect);
    report("indirect", root->link, shape, 0);
    report("indirect", root->other, shape, 0);
}

/* A tree hangs off a cycle: the tree's root (a leader of its own whenever it comes
 * first) joins the cycle's clique, whatever the order. */
static NOINLINE void tree_off_cycle(void)
{
    struct ring c = make_ring(168);
    struct node *root = make_tree(184);
    follower(&c)->other = root;
    report_ring(&c, "indirect", lowest(&c), ring_bytes(&c) - lowest(&c)->size + 3 * root->size, __func__);
    report_tree(root, "indirect", 0, __func__);
}

/* A cycle points at an inner node of a tree (one with a child of its own).  Both the
 * tree's root and the cycle's leader stay definitely lost; the inner node's subtree goes
 * to whichever of the two leaders comes first in address order. */
static NOINLINE void cycle_into_tree(void)
{
    struct ring c = make_ring(216);
    struct node *root = make_tree(232);
    struct node *inner = root->link;
    inner->link = new_node(232);
    follower(&c)->other = inner;
    size_t subtree = 2 * inner->size, ring_rest = ring_bytes(&c) - lowest(&c)->size;
    int tree_first = root < lowest(&c);
    report_ring(&c, "indirect", lowest(&c), ring_rest + (tree_first ? 0 : subtree), __func__);
    report_tree(root, "definite", root->size * 3 - (tree_first ? 0 : subtree), __func__);
    report("indirect", inner->link, __func__, 0);
}

/* A tree's leaf points at a non-leader block of a cycle.  If the cycle's leader comes
 * before every block that reaches the cycle (the root and that leaf), it has claimed its
 * cycle by then and stays definitely lost; otherwise the tree takes the whole cycle. */
static NOINLINE void tree_into_cycle(void)
{
    struct ring c = make_ring(264);
    struct node *root = make_tree(248);
    struct node *leaf = root->other;
    leaf->link = follower(&c);
    int cycle_first = lowest(&c) < root && lowest(&c) < leaf;
    size_t tree_rest = 2 * root->size, ring_rest = ring_bytes(&c) - lowest(&c)->size;
    report_tree(root, "definite", tree_rest + (cycle_first ? 0 : ring_bytes(&c)), __func__);
    report_ring(&c, "indirect", cycle_first ? lowest(&c) : NULL, ring_rest, __func__);
}

/* Only an interior pointer from the roots reaches a cycle: all of it is possibly lost. */
static NOINLINE void interior_into_cycle(void)
{
    struct ring c = make_ring(280);
    interior_root = (char *)follower(&c) + 16;
    report_ring(&c, "possible", NULL, 0, __func__);
}

/* A lost cycle holds an interior pointer to the leader of a lower one: the clique walk
 * does not tell interior from start pointers, so the leader is taken in as in issue 15. */
static NOINLINE void lost_interior_into_cycle(void)
{
    struct ring lo = make_ring(296);
    struct ring hi = make_ring(312);
    by_address(&lo, &hi);
    follower(&hi)->other = (char *)lowest(&lo) + 16;
    report_ring(&hi, "indirect", lowest(&hi), ring_bytes(&hi) - lowest(&hi)->size + ring_bytes(&lo), __func__);
    report_ring(&lo, "indirect", NULL, 0, __func__);
}

/* A still reachable block points at a cycle: the cycle is still reachable. */
static NOINLINE void reachable_into_cycle(void)
{
    struct ring c = make_ring(344);
    reachable_root = new_node(328);
    reachable_root->link = follower(&c);
    report("reachable", reachable_root, __func__, 0);
    report_ring(&c, "reachable", NULL, 0, __func__);
}

/* A still reachable block holds an interior pointer into a cycle: possibly lost. */
static NOINLINE void reachable_interior_into_cycle(void)
{
    struct ring c = make_ring(376);
    reachable_holder = new_node(360);
    reachable_holder->link = (struct node *)((char *)follower(&c) + 16);
    report("reachable", reachable_holder, __func__, 0);
    report_ring(&c, "possible", NULL, 0, __func__);
}

/* A block that points at itself is a cycle of one: definitely lost alone, indirectly
 * lost once another lost block points at it. */
static NOINLINE void self_loops(void)
{
    struct node *alone = new_node(392);
    alone->link = alone;
    struct node *holder = new_node(408);
    struct node *looped = new_node(424);
    looped->link = looped;
    holder->link = looped;
    report("definite", alone, __func__, 0);
    report("definite", holder, __func__, looped->size);
    report("indirect", looped, __func__, 0);
}

/* Overwrite the dead stack below main's frame so no stale copy of a lost pointer
 * survives there to make it look reachable. */
static NOINLINE void scrub_stack(void)
{
    volatile char junk[16384];
    memset((char *)junk, 0, sizeof junk);
}

static void on_usr1(int sig)
{
    (void)sig;
    go = 1;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGUSR1, on_usr1);
    printf("wl-cliques pid=%d\n", getpid());
    cycle_into_cycle_leader();
    cycle_into_cycle_follower();
    chain_of_cycles();
    mutual_cycles();
    tree_off_cycle();
    cycle_into_tree();
    tree_into_cycle();
    interior_into_cycle();
    lost_interior_into_cycle();
    reachable_into_cycle();
    reachable_interior_into_cycle();
    self_loops();
    scrub_stack();
    printf("wl-cliques done\n");
    while (argc > 1 && strcmp(argv[1], "--wait") == 0 && !go)
        pause();
    return 0;
}
