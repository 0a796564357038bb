"""Who maps this physical page: every process, and the kernel, with a virtual address on it.

    gdb vmlinux -ex 'target remote :1234' -x gdb_memcheck/gdbinit.py -x examples/who_maps.py
    (gdb) who-maps 0x1f16d000
    (gdb) who-maps $memcheck_phys(0x401000, "wl-maps-static")

ADDRESS is a gdb expression.  Each line gives the pid, the comm, the virtual address and
the mapping it lies in, read from that process's own page tables (their user half) and
VMAs; then the kernel's own virtual addresses of the page."""
import gdb

from gdb_memcheck import api
from gdb_memcheck.addrinfo import vma_map

PAGE = 4096


def virtual_addresses(page: int, ranges) -> list[int]:
    """Where `page` appears in a set of merged page-table ranges."""
    return [r.virtual + page - r.physical for r in ranges if r.physical <= page < r.physical + r.size]


class WhoMaps(gdb.Command):
    """who-maps ADDRESS: the processes (and kernel addresses) that map the physical page of ADDRESS."""

    def __init__(self) -> None:
        super().__init__("who-maps", gdb.COMMAND_USER, gdb.COMPLETE_EXPRESSION)

    def invoke(self, arg: str, from_tty: bool) -> None:
        if not arg.strip():
            raise gdb.GdbError("usage: who-maps ADDRESS")
        page = int(gdb.parse_and_eval(arg)) & ~(PAGE - 1)
        gdb.write(f"physical page {page:#x}\n")
        for process in api.processes():
            if not process.mm:
                continue
            try:
                vmas = vma_map([m.vma for m in api.maps(process, rss=False)])
                found = virtual_addresses(page, [r for r in api.pagetable(process) if r.user])
            except api.Error:            # exiting: its memory map is being torn down
                continue
            for va in found:
                vma = vmas.find(va)
                where = vma.value.maps_line() if vma else "(no VMA)"
                gdb.write(f"pid {process.tgid:>6} {process.comm:<16} {va:#018x}  {where}\n")
        for va in virtual_addresses(page, api.pagetable(kernel=True)):
            gdb.write(f"kernel                  {va:#018x}\n")


WhoMaps()
