/* Leaks in threads' own malloc arenas.  Two threads each allocate in the arena glibc gives
 * them (one per thread here), leak a block, leak a three-block list (one definite head,
 * two indirect), keep one block reachable from a global and free a few small blocks
 * (parked in that thread's own tcache).  Then they block, so their arenas, tcaches and
 * stacks stay live.  Ground truth, one line a block:
 *   GT <category> addr=0x... size=N via=malloc in=<function>
 * Usage: wl-arenas [--together]   (runs until SIGUSR1)
 *   --together: the threads run at once, thread i pinned to vCPU i % (number of vCPUs), and
 *               start allocating at the same moment (each still gets an arena of its own) */
#define _GNU_SOURCE
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define THREADS 2

struct node {
    struct node *next;
    char payload[24];
};

void *kept[THREADS];
static sem_t finished;
static pthread_barrier_t start;
static int together;

static void report(const char *category, void *p, size_t size, const char *fn)
{
    printf("GT %s addr=%p size=%zu via=malloc in=%s\n", category, p, size, fn);
}

static __attribute__((noinline)) void thread_leak(int id)
{
    size_t size = 72 + 8 * (size_t)id;
    char *p = malloc(size);
    memset(p, 'l', size);
    report("definite", p, size, __func__);
}

static __attribute__((noinline)) void thread_list(void)
{
    struct node *head = malloc(sizeof *head);
    report("definite", head, sizeof *head, __func__);
    head->next = malloc(sizeof *head);
    report("indirect", head->next, sizeof *head, __func__);
    head->next->next = malloc(sizeof *head);
    report("indirect", head->next->next, sizeof *head, __func__);
    head->next->next->next = NULL;
}

static __attribute__((noinline)) void thread_keep(int id)
{
    kept[id] = malloc(56);
    memset(kept[id], 'k', 56);
    report("reachable", kept[id], 56, __func__);
}

static __attribute__((noinline)) void thread_free_some(void)
{
    for (size_t size = 24; size <= 120; size += 32) {
        void *p = malloc(size);
        report("freed", p, size, __func__);
        free(p);
    }
}

static __attribute__((noinline)) void scrub_stack(void)
{
    volatile char junk[8192];
    memset((char *)junk, 0, sizeof junk);
}

static void pin_to_own_cpu(int id)
{
    cpu_set_t cpus;
    CPU_ZERO(&cpus);
    CPU_SET(id % sysconf(_SC_NPROCESSORS_ONLN), &cpus);
    pthread_setaffinity_np(pthread_self(), sizeof cpus, &cpus);
}

static void *thread_main(void *arg)
{
    int id = (int)(long)arg;
    if (together) {
        pin_to_own_cpu(id);
        pthread_barrier_wait(&start);
    }
    thread_leak(id);
    thread_list();
    thread_keep(id);
    thread_free_some();
    scrub_stack();
    sem_post(&finished);
    for (;;)
        pause();
    return NULL;
}

int main(int argc, char **argv)
{
    pthread_t threads[THREADS];
    sigset_t usr1;
    int sig;
    together = argc > 1 && strcmp(argv[1], "--together") == 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &usr1, NULL);
    printf("wl-arenas pid=%d\n", getpid());
    sem_init(&finished, 0, 0);
    pthread_barrier_init(&start, NULL, THREADS);
    for (long i = 0; i < THREADS; i++) {
        pthread_create(&threads[i], NULL, thread_main, (void *)i);
        if (!together)
            sem_wait(&finished);          /* one thread at a time, each in an arena of its own */
    }
    for (int i = 0; together && i < THREADS; i++)
        sem_wait(&finished);
    printf("wl-arenas done\n");
    sigwait(&usr1, &sig);
    return 0;
}
