/* Records its own stack for the unwinder's tests: built without frame pointers, so only
 * call-frame information can unwind it.  Writes, to the file named by argv[1]:
 *   line 1: pc rsp rbp of a point inside inner(), in hex
 *   line 2: the true return addresses, innermost first (inner's, middle's, outer's, main's)
 *   then /proc/self/maps, a line "STACK", and the raw stack from rsp to the stack's end. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uintptr_t truth[4];
static const char *out_path;

static void write_dump(uintptr_t pc, uintptr_t rsp, uintptr_t rbp)
{
    FILE *out = fopen(out_path, "w");
    FILE *maps = fopen("/proc/self/maps", "r");
    char line[512];
    uintptr_t top = 0;
    fprintf(out, "%lx %lx %lx\n", (unsigned long)pc, (unsigned long)rsp, (unsigned long)rbp);
    fprintf(out, "%lx %lx %lx %lx\n", (unsigned long)truth[0], (unsigned long)truth[1],
            (unsigned long)truth[2], (unsigned long)truth[3]);
    while (fgets(line, sizeof line, maps)) {
        unsigned long lo, hi;
        fputs(line, out);
        if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && lo <= rsp && rsp < hi)
            top = hi;
    }
    fputs("STACK\n", out);
    fwrite((void *)rsp, 1, top - rsp, out);
    fclose(maps);
    fclose(out);
}

__attribute__((noinline)) void inner(int depth)
{
    uintptr_t pc, rsp, rbp;
    truth[0] = (uintptr_t)__builtin_return_address(0);
    __asm__ volatile("lea 0(%%rip), %0\n\tmov %%rsp, %1\n\tmov %%rbp, %2" : "=r"(pc), "=r"(rsp), "=r"(rbp));
    write_dump(pc, rsp, rbp);
    __asm__ volatile("" ::: "memory");
    (void)depth;
}

__attribute__((noinline)) void middle(int depth)
{
    volatile char pad[200];
    memset((char *)pad, depth, sizeof pad);
    truth[1] = (uintptr_t)__builtin_return_address(0);
    inner(depth + pad[3]);
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) void outer(int depth)
{
    truth[2] = (uintptr_t)__builtin_return_address(0);
    middle(depth + 1);
    __asm__ volatile("" ::: "memory");
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    out_path = argv[1];
    truth[3] = (uintptr_t)__builtin_return_address(0);
    outer(argc);
    return 0;
}
