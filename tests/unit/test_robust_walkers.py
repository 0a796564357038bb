"""Every walker fed corrupted input ends, and either returns results or raises one of
the project's own errors (TargetError and its subclasses) — never anything else.

Inputs are real recorded guest memory (maple trees) and valid synthetic structures
(page tables, heaps, lists), mutated by hypothesis.  The example count per walker is
MEMCHECK_FUZZ_EXAMPLES (CI default below; bench/fuzz_walkers.py asks for 10,000).
"""
from __future__ import annotations

import json
import os
import struct
import tempfile
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gdb_memcheck.leakcheck import alloctrack, leaks, program_symbols
from gdb_memcheck.glibc import counters
from gdb_memcheck.glibc import heap as glibc_heap
from gdb_memcheck.linux import maple, tasks
from gdb_memcheck.arch.arm64 import paging as arm64_paging
from gdb_memcheck.arch.x86_64 import paging
from gdb_memcheck.linux.dpath import DNAME_FORMATS, PathLayout, PathResolver
from gdb_memcheck.symbols.elfsyms import SymbolCache
from gdb_memcheck.target import MemoryReadError, TargetError
from gdb_memcheck.arch import X86_64
from gdb_memcheck.symbols.unwind import ModuleMap, Unwinder, frame_registers
from gdb_memcheck.linux.modules import ModuleReader
from gdb_memcheck.linux.stackdepot import StackDepot
from gdb_memcheck.linux.vmalloc import VmallocReader
from gdb_memcheck.linux.vmas import VM_EXEC, VM_READ, Vma
from pagetables import PAGE, P, PhysMemory, Tables, U, W
import slab_objects
from dumpfiles import write_elf, write_kdump
from gdb_memcheck.qemu.dumpfile import open_dump

EXAMPLES = int(os.environ.get("MEMCHECK_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
RUNS: Counter = Counter()
DATA = Path(__file__).parent / "data"
WORD = st.integers(min_value=0, max_value=(1 << 64) - 1)


def ends_cleanly(walker: str, fn) -> None:
    """Run one walk: results or a TargetError are fine; anything else fails the test."""
    RUNS[walker] += 1
    try:
        fn()
    except TargetError:
        pass


class Flat:
    """Sparse memory of 8-byte words; reads of unset words outside `ranges` fail."""

    def __init__(self, ranges: list[tuple[int, int]]) -> None:
        self.ranges, self.words = ranges, {}

    def read(self, addr: int, size: int) -> bytes:
        if size < 0 or not any(lo <= addr and addr + size <= hi for lo, hi in self.ranges):
            raise MemoryReadError("test", addr, size, "unmapped")
        base = addr & ~7
        raw = b"".join(struct.pack("<Q", self.words.get(a, 0)) for a in range(base, addr + size + 8, 8))
        return raw[addr - base:addr - base + size]


# -- page tables -----------------------------------------------------------------------

@FUZZ
@given(levels=st.sampled_from([4, 5]), mutations=st.lists(
    st.tuples(st.integers(0, 20), st.integers(0, 511), WORD | st.sampled_from([0, P | W | U | (1 << 7)])),
    max_size=12), va=WORD)
def test_page_walks_of_corrupt_tables_end_with_results_or_a_walk_error(levels, mutations, va):
    mem = PhysMemory()
    tables = Tables(mem, levels)
    for i in range(6):
        tables.map(0x5555_0000_0000 + i * PAGE * 513, 0x200000 + i * PAGE)
    frames = sorted(mem.frames)
    for which, index, value in mutations:
        mem.set_entry(frames[which % len(frames)], index, value)
    ends_cleanly("page tables: translate", lambda: paging.translate(mem.read, tables.root, va, levels))

    def walk():
        found = list(paging.leaves(mem.read, tables.root, levels, max_tables=4096, merge_runs=True))
        assert [l.virtual for l in found] == sorted(l.virtual for l in found)
    ends_cleanly("page tables: leaves", walk)

    def remembered():
        memo = paging.LeafMemo()
        first = list(paging.leaves(mem.read, tables.root, levels, max_tables=4096, merge_runs=True, memo=memo))
        again = list(paging.leaves(mem.read, tables.root, levels, max_tables=4096, merge_runs=True, memo=memo))
        assert first == again
    ends_cleanly("page tables: remembered", remembered)


ARM64_TABLE = 0b11


@FUZZ
@given(va_bits=st.sampled_from([39, 48]), high=st.booleans(), mutations=st.lists(
    st.tuples(st.integers(0, 20), st.integers(0, 511), WORD | st.sampled_from([0, 0x400001, 0x400003, 1 << 61])),
    max_size=12), va=WORD)
def test_arm64_walks_of_corrupt_tables_end_with_results_or_a_walk_error(va_bits, high, mutations, va):
    mem = PhysMemory()
    levels = arm64_paging.levels_for(va_bits)
    root = mem.alloc()
    for i in range(6):                       # a chain of tables down to a page, six times over
        table, base = root, i * PAGE * 513
        for level in range(levels, 1, -1):
            index = (base >> (12 + 9 * (level - 1))) & 0x1FF
            entry = mem.entry(table, index) or (mem.alloc() | ARM64_TABLE)
            mem.set_entry(table, index, entry)
            table = entry & arm64_paging.ADDR_MASK
        mem.set_entry(table, (base >> 12) & 0x1FF, (0x200000 + i * PAGE) | ARM64_TABLE | arm64_paging.AF)
    frames = sorted(mem.frames)
    for which, index, value in mutations:
        mem.set_entry(frames[which % len(frames)], index, value)
    ends_cleanly("arm64 page tables: translate", lambda: arm64_paging.translate(mem.read, root, va, va_bits))

    def walk():
        found = list(arm64_paging.leaves(mem.read, root, va_bits, high, max_tables=4096, merge_runs=True))
        assert [l.virtual for l in found] == sorted(l.virtual for l in found)
    ends_cleanly("arm64 page tables: leaves", walk)


# -- maple tree --------------------------------------------------------------------------

def recorded_tree(name: str):
    doc = json.loads((DATA / name).read_text())
    lay = doc["layout"]
    layout = maple.MapleLayout(maple.NodeFormat(**lay["range64"]), maple.NodeFormat(**lay["arange64"]),
                               lay["ma_root"])
    return doc["tree"], layout, {int(a, 16): bytes.fromhex(h) for a, h in doc["nodes"].items()}


TREE = recorded_tree("maple-wl-manymaps.json")


@FUZZ
@given(mutations=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255 // 8), WORD), min_size=1,
                          max_size=8))
def test_maple_walks_of_corrupt_nodes_end_with_results_or_a_tree_error(mutations):
    tree, layout, nodes = TREE
    memory = {a: bytearray(d) for a, d in nodes.items()}
    keys = sorted(memory)
    for which, word, value in mutations:
        data = memory[keys[which % len(keys)]]
        if word * 8 + 8 <= len(data):
            struct.pack_into("<Q", data, word * 8, value)

    def read(addr, size):
        for base, data in memory.items():
            if base <= addr and addr + size <= base + len(data):
                return bytes(data[addr - base:addr - base + size])
        raise MemoryReadError("kernel virtual", addr, size, "not recorded")
    ends_cleanly("maple tree", lambda: list(maple.entries(read, tree, layout)))


# -- task lists ------------------------------------------------------------------------

@FUZZ
@given(links=st.lists(st.integers(0, 12), min_size=1, max_size=12), wild=st.one_of(st.none(), WORD))
def test_task_list_walks_with_loops_and_wild_pointers_end(links, wild):
    mem = Flat([(0x1000, 0x2000)])
    nodes = [0x1000 + 0x100 * i for i in range(len(links))]
    for node, target in zip(nodes, links):
        mem.words[node] = nodes[target % len(nodes)] if target < len(nodes) else (wild or 0)
    ends_cleanly("task list", lambda: list(tasks._list_nodes(mem.read, nodes[0], include_head=True)))


# -- the dynamic linker's link_map list ----------------------------------------------------

@FUZZ
@given(links=st.lists(st.integers(0, 12), min_size=1, max_size=12), wild=st.one_of(st.none(), WORD),
       r_map=st.one_of(st.none(), WORD))
def test_link_map_walks_with_loops_and_wild_pointers_end(links, wild, r_map):
    mem = Flat([(0x1000, 0x2000), (0x8000, 0x8100)])
    nodes = [0x1000 + 0x100 * i for i in range(len(links))]
    mem.words[0x8000 + program_symbols.R_MAP] = nodes[0] if r_map is None else r_map
    for node, target in zip(nodes, links):
        mem.words[node + program_symbols.L_ADDR] = node
        mem.words[node + program_symbols.L_NEXT] = nodes[target % len(nodes)] if target < len(nodes) else (wild or 0)
    ld_so = LinkerModule(0x8000)
    ends_cleanly("link_map list", lambda: program_symbols.link_map_bases([ld_so], mem.read))


class LinkerModule:
    """ld.so mapped at `base`, its _r_debug at ELF address 0."""

    def __init__(self, base: int) -> None:
        self.vma = Vma(0, base, base + 0x1000, VM_READ, 0, 0x801, 9, "/lib64/ld-linux-x86-64.so.2")
        self.elf = self

    @staticmethod
    def addresses_of(names):
        return {"_r_debug": 0} if "_r_debug" in names else {}

    @staticmethod
    def vaddr_for_file_offset(offset: int) -> int:
        return offset


# -- glibc heap --------------------------------------------------------------------------

HEAP = 0x55_0000_0000


@FUZZ
@given(sizes=st.lists(st.sampled_from([0x20, 0x30, 0x90, 0x290, 0x410]), max_size=20),
       mutations=st.lists(st.tuples(st.integers(0, 0x1000 // 8 - 1), WORD), max_size=6))
def test_heap_walks_of_broken_chunks_end_with_chunks_or_a_heap_error(sizes, mutations):
    mem = Flat([(HEAP, HEAP + 0x1000)])
    pos = HEAP
    for size in sizes:
        if pos + size + 0x20 > HEAP + 0x1000:
            break
        mem.words[pos + 8] = size | glibc_heap.PREV_INUSE
        pos += size
    mem.words[pos + 8] = (HEAP + 0x1000 - pos) | glibc_heap.PREV_INUSE
    for word, value in mutations:
        mem.words[HEAP + 8 * word] = value
    ends_cleanly("heap chunks", lambda: glibc_heap.main_heap_chunks(mem.read, HEAP, HEAP + 0x1000))
    ends_cleanly("mmapped chunks", lambda: glibc_heap.mmapped_chunks(mem.read, [(HEAP, HEAP + 0x1000)]))
    ends_cleanly("main arena", lambda: glibc_heap.find_main_arena(mem.read, [(HEAP, HEAP + 0x1000)], HEAP,
                                                                  HEAP + 0x1000))


@FUZZ
@given(stored=st.lists(WORD | st.integers(0, 0x1000), min_size=1, max_size=10))
def test_free_list_walks_with_loops_misalignment_and_wild_links_end(stored):
    mem = Flat([(HEAP, HEAP + 0x1000)])
    nodes = [HEAP + 0x40 * i for i in range(len(stored))]
    for node, value in zip(nodes, stored):
        target = nodes[value % len(nodes)] if value < 0x1000 else value
        mem.words[node] = glibc_heap.reveal(target, node) if value % 3 else value
    ends_cleanly("free lists", lambda: glibc_heap._follow(mem.read, nodes[0], 0, "tcache bin 0"))


ARENA_DATA = 0x7F00_0000_0000
THREAD_HEAP = 0x7E00_0000_0000          # aligned to HEAP_MAX_SIZE, as glibc aligns its heaps


def arena_memory(mutations: list[tuple[int, int]]) -> tuple[Flat, glibc_heap.MainArena]:
    """main_arena in libc's data, linked to one thread arena whose heap holds a few chunks."""
    mem = Flat([(ARENA_DATA, ARENA_DATA + 0x1000), (THREAD_HEAP, THREAD_HEAP + 0x4000)])
    main = glibc_heap.MainArena(ARENA_DATA, HEAP + 0x100, HEAP, HEAP + 0x1000)
    arena = THREAD_HEAP + glibc_heap.HEAP_INFO_SIZE
    mem.words[ARENA_DATA + glibc_heap.ARENA_NEXT] = arena
    mem.words[arena + glibc_heap.ARENA_NEXT] = ARENA_DATA
    mem.words[THREAD_HEAP] = arena                                  # heap_info.ar_ptr
    mem.words[THREAD_HEAP + 16] = 0x4000                            # heap_info.size
    pos = (arena + glibc_heap.ARENA_SIZE + 15) & ~15
    for size in (0x290, 0x30, 0x50):
        mem.words[pos + 8] = size | glibc_heap.PREV_INUSE | glibc_heap.NON_MAIN_ARENA
        pos += size
    mem.words[pos + 8] = (THREAD_HEAP + 0x4000 - pos) | glibc_heap.PREV_INUSE
    mem.words[arena + glibc_heap.ARENA_TOP] = pos
    for word, value in mutations:
        region = ARENA_DATA if word % 2 else THREAD_HEAP
        mem.words[region + 8 * (word // 2 % 0x200)] = value
    return mem, main


@FUZZ
@given(mutations=st.lists(st.tuples(st.integers(0, 0x800), WORD | st.integers(0, 0x4000)), max_size=6))
def test_arena_walks_of_broken_arena_lists_and_heaps_end(mutations):
    mem, main = arena_memory(mutations)

    def walk():
        for arena in glibc_heap.other_arenas(mem.read, main):
            glibc_heap.arena_chunks(mem.read, arena)
            glibc_heap.fastbin_chunks(mem.read, arena)
    ends_cleanly("arenas and their heaps", walk)
    ends_cleanly("thread tcaches", lambda: glibc_heap.thread_tcaches(
        mem.read, [THREAD_HEAP + 0x1000, 0, 1 << 63], [glibc_heap.Chunk(THREAD_HEAP + 0x8d0, 0x290, True)]))
    where = counters.MallocLocations(main.address, ARENA_DATA + 0x400)
    ends_cleanly("heap counters", lambda: counters.heap_counters(mem.read, where))
    ends_cleanly("heap counters", lambda: counters.find_malloc_par(mem.read, [(ARENA_DATA, ARENA_DATA + 0x1000)],
                                                                   mem.words.get(ARENA_DATA + 0x460, HEAP)))


# -- user stacks ---------------------------------------------------------------------------

LIBC_VMA = Vma(0, 0x7FFF_F7E0_0000, 0x7FFF_F7F8_0000, VM_READ | VM_EXEC, 0, 0, 1, "/lib/x86_64-linux-gnu/libc.so.6")
MODULES = ModuleMap([LIBC_VMA], SymbolCache("/"))
UNWINDER = Unwinder(X86_64)
STACK = 0x7FFF_FFFF_0000


@FUZZ
@given(words=st.lists(WORD | st.integers(LIBC_VMA.start, LIBC_VMA.end) | st.integers(STACK, STACK + 0x1000),
                      min_size=1, max_size=64),
       pc=st.integers(LIBC_VMA.start, LIBC_VMA.end) | WORD, rbp=WORD | st.integers(STACK, STACK + 0x1000))
def test_unwinding_garbage_stacks_ends_within_the_depth(words, pc, rbp):
    mem = Flat([(STACK, STACK + 0x1000)])
    for i, w in enumerate(words):
        mem.words[STACK + 8 * i] = w

    def unwind():
        pcs = UNWINDER.unwind(frame_registers(X86_64, pc, STACK, rbp), mem.read, MODULES, 16)
        assert 1 <= len(pcs) <= 16 and pcs[0] == pc
    ends_cleanly("user stacks", unwind)


# -- tracking-mode allocation maps ---------------------------------------------------------

CALL = st.tuples(st.sampled_from(sorted(alloctrack.FAMILY)), st.lists(WORD | st.integers(0, 64), min_size=4,
                                                                         max_size=4),
                 st.integers(0, 3), st.one_of(st.none(), WORD | st.integers(0, 64)), st.booleans())


@FUZZ
@given(calls=st.lists(CALL, max_size=40))
def test_any_sequence_of_calls_and_returns_keeps_a_consistent_map(calls):
    tracker = alloctrack.AllocationTracker()
    tracker.track(1, complete=True)

    def run():
        for via, args, tid, result, nested in calls:
            rsp = 0x7000 - (0x100 if nested else 0)
            tracker.entry(1, tid, via, args, rsp, (1, 2), from_allocator=nested)
            if result is not None:
                tracker.returned(1, tid, rsp, result, lambda address: address ^ 0x5A)
        proc = tracker.processes[1]
        assert all(address == block.address for address, block in proc.blocks.items())
        assert not set(proc.blocks) & set(proc.freed)
        assert len(proc.pending) <= 4
    ends_cleanly("allocation maps", run)


# -- leak classification -------------------------------------------------------------------

@FUZZ
@given(blocks=st.lists(st.tuples(st.integers(0, 60), st.integers(1, 8)), min_size=1, max_size=20,
                       unique_by=lambda b: b[0]),
       words=st.lists(st.tuples(st.integers(0, 0x800 // 8 - 1), st.integers(0, 0x800)), max_size=60))
def test_classification_gives_every_block_a_kind_and_respects_root_pointers(blocks, words):
    base = 0x10000
    mem = Flat([(base, base + 0x800)])
    objs, taken = [], set()
    for slot, length in sorted(blocks):
        start = base + 0x100 + slot * 0x10
        cells = set(range(start, start + length * 8, 8))
        if cells & taken or start + length * 8 > base + 0x800:
            continue
        taken |= cells
        objs.append(leaks.Block(start, length * 8))
    for word, value in words:
        mem.words[base + 8 * word] = base + value
    root = leaks.Region(base, base + 0x100, "root")

    def check(spans: bool):
        index = leaks.classify([leaks.Block(b.address, b.size) for b in objs], mem.read, [root], [], spans=spans)
        rooted = {mem.words.get(a) for a in range(base, base + 0x100, 8)}
        for b in index.blocks:
            assert b.kind is not None
            if b.address in rooted:
                assert b.kind is leaks.Kind.REACHABLE
    ends_cleanly("leak classification", lambda: check(False))
    ends_cleanly("leak classification reading spans", lambda: check(True))


# -- dentry paths ------------------------------------------------------------------------

DNAMES = {0xFFFF_FFFF_8130_0000 + 0x100 * i: name for i, name in enumerate(DNAME_FORMATS)}
LAYOUT = PathLayout(d_parent=0x18, d_name_len=0x24, d_name_ptr=0x28, d_hash_pprev=0x10, d_op=0x30, d_inode=0x38,
                    d_fsdata=0x40, op_d_dname=0x8, i_ino=0x40, mnt_in_mount=0x20, mnt_parent=0x10,
                    mnt_mountpoint=0x18, mnt_root=0x0, dnames=DNAMES, dmabuf_name=0x10)
OPS = 0x1800                    # each dentry's own dentry_operations, 0x10 apart
POINTER = WORD | st.integers(0x1000, 0x9000)


@FUZZ
@given(parents=st.lists(st.integers(0, 8), min_size=1, max_size=8),
       lengths=st.lists(WORD, min_size=8, max_size=8),
       d_dnames=st.lists(st.sampled_from([0, *DNAMES]) | WORD, min_size=8, max_size=8),
       wild_ops=st.lists(st.none() | WORD, min_size=8, max_size=8),
       pointers=st.lists(POINTER, min_size=8, max_size=8))
def test_path_walks_over_looping_dentries_and_wild_d_dnames_end(parents, lengths, d_dnames, wild_ops, pointers):
    mem = Flat([(0x1000, 0x9000)])
    dentries = [0x2000 + 0x100 * i for i in range(len(parents))]
    for i, d in enumerate(dentries):
        mem.words[d + LAYOUT.d_parent] = dentries[parents[i] % len(dentries)]
        mem.words[d + 0x20] = (lengths[i] & 0xFFFF_FFFF) << 32          # qstr.len
        mem.words[d + LAYOUT.d_name_ptr] = 0x8000
        mem.words[d + LAYOUT.d_inode] = mem.words[d + LAYOUT.d_fsdata] = pointers[i]
        if d_dnames[i]:
            mem.words[d + LAYOUT.d_op] = OPS + 0x10 * i if wild_ops[i] is None else wild_ops[i]
            mem.words[OPS + 0x10 * i + LAYOUT.op_d_dname] = d_dnames[i]
    mount = 0x1000
    mem.words[mount + LAYOUT.mnt_parent] = mount
    resolver = PathResolver(mem.read, LAYOUT, mount + LAYOUT.mnt_in_mount, 0x1)
    ends_cleanly("dentry paths", lambda: resolver.d_path(mount + LAYOUT.mnt_in_mount, dentries[0]))


# -- SLUB, vmalloc areas, modules, the stack depot -------------------------------------------

SLUB_REGIONS = [(slab_objects.VMEMMAP, slab_objects.VMEMMAP + slab_objects.MAX_PFN * 64),
                (slab_objects.DIRECT_MAP + 0x1000, slab_objects.DIRECT_MAP + 0x2000),
                (slab_objects.DIRECT_MAP + 8 * slab_objects.PAGE, slab_objects.DIRECT_MAP + 13 * slab_objects.PAGE)]


@FUZZ
@given(version=st.sampled_from(["6.1", "6.12"]),
       mutations=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 0x5000 // 8), WORD | st.integers(0, 1 << 16)),
                          min_size=1, max_size=6))
def test_slab_walks_of_corrupt_memmaps_lists_and_freelists_end(version, mutations):
    slub, _ = slab_objects.standard(version)
    for region, word, value in mutations:
        lo, hi = SLUB_REGIONS[region]
        slub.ram.u64_at(lo + (8 * word) % (hi - lo), value)

    def walk():
        allocator = slub.allocator()
        allocator.all_stats()
        for cache in allocator.caches:
            allocator.objects(cache)
        allocator.object_at(slab_objects.DIRECT_MAP + 9 * slab_objects.PAGE + 72)
    ends_cleanly("slab caches", walk)


@FUZZ
@given(links=st.lists(st.integers(0, 12), min_size=1, max_size=12), wild=st.one_of(st.none(), WORD),
       fields=st.lists(WORD, min_size=4, max_size=4))
def test_vmalloc_and_module_list_walks_with_loops_and_wild_pointers_end(links, wild, fields):
    mem = Flat([(0x1000, 0x4000)])
    nodes = [0x1000 + 0x100 * i for i in range(len(links))]
    for node, target in zip(nodes, links):
        mem.words[node] = nodes[target % len(nodes)] if target < len(nodes) else (wild or 0)
        for i, value in enumerate(fields):
            mem.words[node + 8 + 8 * i] = value if value % 3 else 0x3000
    vmalloc = VmallocReader.__new__(VmallocReader)
    vmalloc.va = {"va_start": 0x10, "va_end": 0x18, "list": 0, "vm": 0x20}
    vmalloc.vm = {"addr": 0, "size": 8, "flags": 16, "pages": 24, "nr_pages": 32, "caller": 40}
    vmalloc.vm_size, vmalloc.heads, vmalloc.other_heads = 48, (lambda read: [nodes[0]]), (lambda read: [nodes[0]])
    ends_cleanly("vmalloc areas", lambda: (vmalloc.areas(mem.read), vmalloc.idle_records(mem.read)))
    modules = ModuleReader.__new__(ModuleReader)
    modules.head, modules.list, modules.name, modules.size = nodes[0], 0, 0x10, 0x40
    modules.mem, modules.layout = None, (0x20, {"base": 0, "size": 8, "text_size": 12, "ro_size": 16,
                                                "ro_after_init_size": 20})
    modules.kallsyms, modules.ks = 0x28, {"symtab": 0, "num_symtab": 8, "strtab": 16}
    ends_cleanly("module list", lambda: (modules.regions(mem.read), modules.functions(mem.read)))


@FUZZ
@given(handle=st.integers(0, (1 << 32) - 1), pools=st.lists(WORD | st.integers(0x1000, 0x3000), min_size=4,
                                                              max_size=4))
def test_stack_depot_lookups_of_wild_handles_end(handle, pools):
    mem = Flat([(0x1000, 0x4000)])
    for i, pool in enumerate(pools):
        mem.words[0x1000 + 8 * i] = pool
    depot = StackDepot.__new__(StackDepot)
    depot.plus_one, depot.pools, depot.index_bits = bool(handle & 1), 0x1000, 17
    depot.size, depot.entries, depot.handle = 0xC, 0x20, 0x10
    ends_cleanly("stack depot", lambda: depot.stack(mem.read, handle))


# -- dump files ----------------------------------------------------------------------------

def small_guest_dumps(directory: Path) -> dict[str, bytes]:
    """An ELF and a flattened kdump of a few pages and two vCPUs, as bytes."""
    pages = {a: bytes([a >> 12]) * 2048 + bytes(2048) for a in range(0, 0x8000, 0x1000)}
    pages[0x10_0000] = bytes(0x1000)
    cpus = [{"cr3": 0x10_0000, "cr0": 0x8005_0033, "cr4": 0x6B0, "rip": 1}, {"cr3": 0x10_0000, "rsp": 2}]
    return {"elf": write_elf(directory / "g.elf", pages, cpus).read_bytes(),
            "kdump": write_kdump(directory / "g.kdump", pages, cpus).read_bytes()}


DUMP_TMP = tempfile.TemporaryDirectory(prefix="memcheck-fuzz-dumps-")       # removed when the run ends
DUMP_DIR = Path(DUMP_TMP.name)
DUMPS = small_guest_dumps(DUMP_DIR)


@FUZZ
@given(kind=st.sampled_from(sorted(DUMPS)), flips=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)),
                                                          max_size=8),
       cut=st.none() | st.integers(0, 1 << 16), reads=st.lists(st.integers(0, 0x11_0000), max_size=6))
def test_dump_files_with_bytes_changed_or_cut_open_and_read_or_give_a_dump_error(kind, flips, cut, reads):
    data = bytearray(DUMPS[kind])
    for at, value in flips:
        data[at % len(data)] = value
    path = DUMP_DIR / f"mutated.{kind}"
    path.write_bytes(bytes(data[:cut] if cut is not None else data))

    def read_all():
        opened = open_dump(str(path))
        try:
            for addr in reads:
                opened.read_physical(addr, 0x1800)
        finally:
            opened.close()
    ends_cleanly("dump files", read_all)
