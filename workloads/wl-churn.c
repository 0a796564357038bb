/* Churn workloads for tracing: each mode does N rounds of one kind of event and
 * prints a summary line "churn <counter>=<n> ..." of exactly what it did.
 * Usage: wl-churn fork|exec|thread|mmap|brk|all N */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096UL

struct counts {
    int fork, exec, thread, exit, mmap, munmap, mprotect, brk;
};

static void do_forks(struct counts *c, int n)
{
    for (int i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid == 0)
            _exit(0);
        waitpid(pid, NULL, 0);
        c->fork++;
        c->exit++;
    }
}

static void do_execs(struct counts *c, int n, const char *true_path)
{
    for (int i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            execl(true_path, "true", (char *)NULL);
            _exit(127);
        }
        waitpid(pid, NULL, 0);
        c->fork++;
        c->exec++;
        c->exit++;
    }
}

static void *thread_body(void *arg)
{
    return arg;
}

static void do_threads(struct counts *c, int n)
{
    for (int i = 0; i < n; i++) {
        pthread_t t;
        pthread_create(&t, NULL, thread_body, NULL);
        pthread_join(t, NULL);
        c->thread++;
    }
}

/* Map 8 pages, mprotect the middle, then unmap head, tail and a middle page:
 * each partial munmap splits or trims the mapping. */
static void do_mmaps(struct counts *c, int n)
{
    for (int i = 0; i < n; i++) {
        char *p = mmap(NULL, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        c->mmap++;
        mprotect(p + 3 * PAGE, 2 * PAGE, PROT_READ);
        c->mprotect++;
        munmap(p, PAGE);
        munmap(p + 7 * PAGE, PAGE);
        munmap(p + 5 * PAGE, PAGE);
        munmap(p + PAGE, 4 * PAGE);
        munmap(p + 6 * PAGE, PAGE);
        c->munmap += 5;
    }
}

static void do_brks(struct counts *c, int n)
{
    for (int i = 0; i < n; i++) {
        sbrk(PAGE * 4);
        c->brk++;
    }
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s fork|exec|thread|mmap|brk|all N\n", argv[0]);
        return 2;
    }
    const char *mode = argv[1];
    int n = atoi(argv[2]);
    int all = strcmp(mode, "all") == 0;
    struct counts c = {0};
    if (all || strcmp(mode, "fork") == 0)
        do_forks(&c, n);
    if (all || strcmp(mode, "exec") == 0)
        do_execs(&c, n, "/bin/true");
    if (all || strcmp(mode, "thread") == 0)
        do_threads(&c, n);
    if (all || strcmp(mode, "mmap") == 0)
        do_mmaps(&c, n);
    if (all || strcmp(mode, "brk") == 0)
        do_brks(&c, n);
    printf("churn pid=%d fork=%d exec=%d thread=%d exit=%d mmap=%d munmap=%d mprotect=%d brk=%d\n",
           getpid(), c.fork, c.exec, c.thread, c.exit, c.mmap, c.munmap, c.mprotect, c.brk);
    return 0;
}
