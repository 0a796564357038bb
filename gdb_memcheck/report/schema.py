"""The JSON that `--json` prints and the event log writes: one versioned schema, defined
here, checked by the tests and rendered into docs/json-schema.md (`python3 -m
gdb_memcheck.report.schema` prints that part of the document).

Addresses and other 64-bit values are hex strings, exact in jq and JavaScript, whose
numbers are doubles; sizes and counts are numbers."""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field

SCHEMA_VERSION = 1

HEX = "hex"            # "0x1f16d000"
INT = "int"
NUMBER = "number"
STR = "str"
BOOL = "bool"

_HEX = re.compile(r"0x[0-9a-f]+\Z")


@dataclass(frozen=True)
class Opt:
    """The type, or null."""

    of: object


@dataclass(frozen=True)
class Arr:
    """An array whose items are all of one type."""

    of: object


@dataclass(frozen=True)
class Enum:
    """One of these strings."""

    values: tuple[str, ...]


@dataclass(frozen=True)
class Ref:
    """A named shape."""

    name: str


@dataclass(frozen=True)
class Counts:
    """An object from names to integers."""


@dataclass(frozen=True)
class Shape:
    """An object with exactly these fields (optional ones may be absent)."""

    doc: str
    fields: dict[str, tuple[object, str]]
    optional: frozenset[str] = field(default_factory=frozenset)


SHAPES: dict[str, Shape] = {
    "info": Shape("What gdb_memcheck found; the kernel facts are null before the kernel can be read.", {
        "summary": (STR, "the load line"), "release": (Opt(STR), "uname -r"), "machine": (Opt(STR), "uname -m"),
        "paging": (Opt(STR), "paging mode, e.g. \"4-level paging\""),
        "kaslr_slide": (Opt(HEX), "KASLR slide, null when not measured"), "vcpus": (Opt(INT), "vCPUs"),
        "physical_path": (Opt(STR), "qemu-mem, phymemmode or directmap")}),
    "ps": Shape("Processes, or with -t every thread.", {
        "threads": (BOOL, "one row per thread (-t)"), "tasks": (Arr(Ref("task")), "the rows")}),
    "task": Shape("One process or thread.", {
        "pid": (INT, "thread-group id"), "tid": (INT, "thread id"), "ppid": (INT, "parent's pid"),
        "state": (STR, "one letter, as /proc/PID/stat"), "comm": (STR, "task->comm"),
        "exe": (STR, "executable path, \"\" for kernel threads"), "vsz_kib": (INT, "virtual size, kB"),
        "rss_kib": (INT, "resident size counted from the page tables, kB"),
        "mm": (Opt(HEX), "struct mm_struct address, null without one"), "task": (HEX, "struct task_struct address"),
        "kernel_thread": (BOOL, "PF_KTHREAD"), "cpu": (Opt(INT), "vCPU it runs on, null when not running")}),
    "maps": Shape("A process's memory map.", {
        "pid": (INT, "the process"), "comm": (STR, "its comm"), "maps": (Arr(Ref("mapping")), "in address order")}),
    "mapping": Shape("One mapping.", {
        "start": (HEX, "first address"), "end": (HEX, "address after the last"),
        "perms": (STR, "rwxp or rwxs, as /proc/PID/maps"), "offset": (INT, "offset into the file, bytes"),
        "dev": (INT, "the kernel's dev_t: major << 20 | minor"), "inode": (INT, "inode number, 0 when anonymous"),
        "name": (STR, "path or [special] name, \"\" when none"), "line": (STR, "the /proc/PID/maps line"),
        "rss_kib": (Opt(INT), "resident kB (with --rss, else null)"),
        "anonymous_kib": (Opt(INT), "of those, anonymous kB (with --rss, else null)")}),
    "pagetable": Shape("Mapped ranges of one set of page tables; with paging off, root is null.", {
        "root": (Opt(HEX), "physical address of the (first) top-level table"),
        "levels": (INT, "3, 4 or 5; 0 with paging off"),
        "tables": (Arr(Ref("table")), "each top-level table walked and the addresses it maps (AArch64 has two)"),
        "ranges": (Arr(Ref("range")), "in virtual order")}),
    "table": Shape("A top-level page table and the part of the address space it maps.", {
        "root": (HEX, "its physical address"), "start": (HEX, "first virtual address it maps"),
        "end": (HEX, "last virtual address it maps")}),
    "range": Shape("Pages alike and contiguous, virtually and physically.", {
        "start": (HEX, "first virtual address"), "end": (HEX, "virtual address after the last"),
        "physical": (HEX, "physical address of start"), "size": (INT, "bytes"), "page_size": (INT, "bytes"),
        "user": (BOOL, "user-accessible at every level"), "writable": (BOOL, "writable at every level"),
        "executable": (BOOL, "no level sets NX")}),
    "vtop": Shape("A page walk; with paging off, physical equals virtual and there are no steps.", {
        "virtual": (HEX, "the address"), "physical": (Opt(HEX), "where it lands, null when the walk stops"),
        "stop": (Opt(STR), "why the walk stopped"), "steps": (Arr(Ref("step")), "top level first")}),
    "step": Shape("One level of a walk.", {
        "level": (STR, "PML5, PML4, PDPT, PD or PT"), "table": (HEX, "physical address of the table"),
        "index": (INT, "entry index"), "entry": (HEX, "the entry"), "flags": (Arr(STR), "P W U A D PS G NX")}),
    "addr": Shape("What an address is.", {
        "address": (HEX, "the address"), "pid": (Opt(INT), "the process, null for a kernel address"),
        "comm": (STR, "its comm, or \"kernel\""), "mapping": (Opt(STR), "the /proc/PID/maps line"),
        "file_offset": (Opt(INT), "offset into the mapped file"), "symbol": (Opt(STR), "symbol+offset"),
        "source": (Opt(STR), "file:line"), "physical": (Opt(HEX), "physical address, null when not in memory"),
        "note": (Opt(STR), "why something is missing")}),
    "leak_report": Shape("One process's leaks, as `leaks check` finds them or `leaks report` kept them.", {
        "pid": (INT, "the process"), "comm": (STR, "its comm"), "mode": (Enum(("scan", "tracking")), "the source"),
        "header": (STR, "what was walked or tracked"), "blocks": (Arr(Ref("block")), "every reported block"),
        "loss_records": (Arr(Ref("loss_record")), "in valgrind's order"),
        "bad_frees": (Arr(Ref("bad_free")), "invalid and double frees"),
        "summary": (Ref("leak_summary"), "valgrind's LEAK SUMMARY")}),
    "block": Shape("A live heap block.", {
        "address": (HEX, "user address"), "size": (INT, "bytes (usable size in scan mode)"),
        "kind": (Opt(Enum(("definitely lost", "indirectly lost", "possibly lost", "still reachable"))),
                 "leak kind"),
        "indirect_bytes": (INT, "definitely lost: bytes lost through it"),
        "origin": (Enum(("own", "inherited", "transition", "preexisting")), "where it came from"),
        "via": (Opt(STR), "the allocating function"), "stack": (Arr(Ref("frame")), "allocation stack")}),
    "loss_record": Shape("Blocks of one kind and one stack.", {
        "kind": (STR, "leak kind"), "origin": (STR, "block origin"), "blocks": (INT, "how many"),
        "total_bytes": (INT, "direct and indirect"), "direct_bytes": (INT, "its blocks' bytes"),
        "indirect_bytes": (INT, "bytes lost through them"), "addresses": (Arr(HEX), "its blocks")}),
    "leak_summary": Shape("Bytes and blocks of each kind.", {
        kind: (Ref("amount"), kind) for kind in ("definitely lost", "indirectly lost", "possibly lost",
                                                 "still reachable")}),
    "amount": Shape("An amount of leaked memory.", {"bytes": (INT, "bytes"), "blocks": (INT, "blocks")}),
    "frame": Shape("One symbolized frame; inlined calls at the same pc follow in inlined_into.", {
        "pc": (HEX, "program counter"), "module": (Opt(STR), "guest path of the module"),
        "offset": (Opt(HEX), "address in the module's ELF file, as addr2line takes it"),
        "function": (Opt(STR), "function"), "file": (Opt(STR), "source file"), "line": (Opt(INT), "source line"),
        "directory": (Opt(STR), "compilation directory"), "inlined_into": (Arr(Ref("frame")), "callers inlined")}),
    "bad_free": Shape("A free of a pointer that is not a live block.", {
        "pid": (INT, "process"), "tid": (INT, "thread"), "kind": (Enum(("double free", "invalid free")), "what"),
        "via": (STR, "free or realloc"), "address": (HEX, "the pointer"),
        "block_size": (Opt(INT), "size of the block it was, for a double free"),
        "stack": (Arr(Ref("frame")), "the bad free"), "freed_by": (Arr(Ref("frame")), "the first free"),
        "allocated_by": (Arr(Ref("frame")), "the block's allocation")}),
    "leaks_status": Shape("Leak tracking's state and cost.", {
        "active": (BOOL, "breakpoints are placed"), "exec_paths": (Arr(STR), "programs followed from exec"),
        "stops": (INT, "debug stops handled"), "repeated_hits": (INT, "hits seen twice"),
        "malloc_stops": (Enum(("call", "return", "watch")), "set memcheck malloc-stops"),
        "free_stops": (BOOL, "set memcheck free-stops"),
        "handler_ms_per_stop": (NUMBER, "Python time per stop"), "errors": (INT, "handler errors"),
        "last_error": (Opt(STR), "the last one"), "breakpoints": (Ref("tracking_breakpoints"), "placed now"),
        "processes": (Arr(Ref("tracked_process")), "tracked now"), "reports": (Arr(INT), "pids with exit reports"),
        "untracked": (Arr(STR), "processes left alone, and why"), "bad_frees": (Arr(Ref("bad_free")), "seen"),
        "event_path": (Ref("event_path"), "how breakpoint events are taken")}),
    "tracking_breakpoints": Shape("Breakpoints leak tracking holds.", {
        "user": (INT, "malloc-family entries"), "return_sites": (INT, "return sites"),
        "kernel": (INT, "kernel hooks")}),
    "tracked_process": Shape("A tracked process.", {
        "pid": (INT, "process"), "blocks": (INT, "live blocks"), "calls": (INT, "malloc-family calls"),
        "returns": (INT, "returns seen"), "in_main": (BOOL, "main has been reached"),
        "complete": (BOOL, "tracked since exec")}),
    "trace_status": Shape("Live tracing's state and cost.", {
        "active": (BOOL, "hooks are placed"), "hits": (INT, "breakpoint hits"), "events": (INT, "events logged"),
        "repeated_hits": (INT, "hits seen twice"), "counts": (Counts(), "events of each kind"),
        "handler_ms_per_hit": (NUMBER, "Python time per hit"), "errors": (INT, "handler errors"),
        "last_error": (Opt(STR), "the last one"), "mapping_reads": (INT, "VMA lists read"),
        "mapping_cache_hits": (INT, "VMA lists served from the cache"), "hooks": (Arr(Ref("hook")), "placed"),
        "missing": (Arr(STR), "hooks this kernel lacks"), "stop_on": (Arr(Ref("stop_rule")), "stop-on rules"),
        "event_path": (Ref("event_path"), "how breakpoint events are taken")}),
    "event_path": Shape("How breakpoint events are taken, on any number of vCPUs.", {
        "vcpus": (INT, "the guest's vCPUs"), "handled_in": (STR, "where: Breakpoint.stop()"),
        "interrupted_handlers": (INT, "Ctrl-Cs held back until a handler finished"),
        "taken_at_stops": (INT, "hits taken at a stop that landed on a hooked instruction")}),
    "hook": Shape("A kernel function hooked for a group of events.", {
        "group": (STR, "event group"), "symbol": (STR, "function"), "address": (HEX, "its address"),
        "reason": (STR, "why this one")}),
    "stop_rule": Shape("A stop-on rule.", {"kind": (STR, "event"), "pattern": (STR, "pid, comm or path")}),
    "trace_table": Shape("The traced process table.", {"processes": (Arr(Ref("traced_process")), "by pid")}),
    "traced_process": Shape("What the trace knows of a process.", {
        "pid": (INT, "process"), "ppid": (INT, "parent"), "comm": (STR, "comm"), "image": (STR, "executable"),
        "mm": (Opt(HEX), "struct mm_struct, null once it exited"), "threads": (Arr(INT), "thread ids"),
        "execs": (INT, "execs seen"), "exiting": (BOOL, "its last thread entered do_exit")}),
    "trace_maps": Shape("A process's mappings as the trace keeps them.", {
        "pid": (INT, "process"), "maps": (Arr(Ref("mapping")), "in address order")}),
    "events": Shape("The event log.", {"events": (Arr(Ref("event")), "oldest first")}),
    "event": Shape("One traced kernel event; the fields after `event` depend on its kind.", {
        "seq": (INT, "sequence number"), "time": (NUMBER, "when it was handled, Unix seconds"),
        "cpu": (INT, "vCPU"), "pid": (INT, "process"), "tid": (INT, "thread"), "comm": (STR, "comm"),
        "event": (Enum(("fork", "clone", "exec", "exit", "thread-exit", "mmap", "munmap", "mprotect", "brk")),
                  "kind"),
        "child": (INT, "fork, clone: the new task's id"), "mm": (HEX, "fork: the child's mm"),
        "path": (STR, "exec: the image; mmap: the file"), "offset": (INT, "mmap: file offset"),
        "start": (HEX, "mmap, munmap, mprotect: first address"),
        "end": (HEX, "mmap, munmap, mprotect: the address after the range"),
        "flags": (INT, "mmap: MAP_* flags"), "prot": (INT, "mprotect: PROT_* bits"), "brk": (HEX, "brk: requested"),
        "code": (INT, "exit, thread-exit: exit code")},
        frozenset({"child", "mm", "path", "offset", "start", "end", "flags", "prot", "brk", "code"})),
    "slab": Shape("SLUB caches; with CACHE, that cache's slabs and objects (else both arrays are empty).", {
        "caches": (Arr(Ref("slab_cache")), "as /proc/slabinfo lists them"),
        "slabs": (Arr(Ref("slab_page")), "the cache's slabs, by address"),
        "objects": (Arr(Ref("slab_object")), "every object of the cache, in use or free")}),
    "slab_cache": Shape("One cache's counts, from its slabs in the memmap and its lists.", {
        "name": (STR, "cache name"), "address": (HEX, "struct kmem_cache"), "object_size": (INT, "bytes"),
        "size": (INT, "stride between objects, metadata included"), "objects_per_slab": (INT, "kmem_cache.oo"),
        "order": (INT, "page order of a slab (kmem_cache.oo)"), "objects": (INT, "objects in all its slabs"),
        "in_use": (INT, "objects allocated"), "free": (INT, "objects on freelists"), "slabs": (INT, "slabs"),
        "cpu_slabs": (INT, "slabs CPUs allocate from (c->slab)"),
        "cpu_partial_slabs": (INT, "slabs on CPUs' partial lists (c->partial)"),
        "node_partial_slabs": (INT, "slabs on the nodes' partial lists"),
        "nr_partial": (INT, "kmem_cache_node.nr_partial, summed over nodes"),
        "slabinfo_active": (INT, "/proc/slabinfo's active_objs: objects not free on a node's partial list"),
        "hardened": (BOOL, "freelist pointers are XORed (CONFIG_SLAB_FREELIST_HARDENED)"),
        "stores_tracks": (BOOL, "slub_debug=U keeps alloc and free tracks"),
        "error": (Opt(STR), "where the walk of this cache stopped")}),
    "slab_page": Shape("One slab.", {
        "address": (HEX, "struct slab"), "pfn": (INT, "its first page"), "base": (HEX, "its memory"),
        "where": (STR, "cpu N, cpu N partial, node N partial, or full"), "objects": (INT, "objects"),
        "free": (INT, "free objects")}),
    "slab_object": Shape("One object of a cache.", {
        "address": (HEX, "object start"), "free": (BOOL, "on a freelist"), "slab": (HEX, "its struct slab")}),
    "kmem": Shape("What a kernel address is; fields that do not apply are null.", {
        "address": (HEX, "the address"),
        "kind": (Enum(("slab object", "page", "vmalloc", "task stack", "per-CPU", "module", "kernel image", "memmap",
                       "fixmap", "cpu entry area", "vsyscall page", "unknown")), "what it is"),
        "detail": (STR, "more words on it"), "cache": (Opt(STR), "slab object: its cache"),
        "object_start": (Opt(HEX), "slab object: its start"),
        "offset": (Opt(INT), "into the object, area, stack or per-CPU area"),
        "object_size": (Opt(INT), "slab object: the cache's object size"),
        "free": (Opt(BOOL), "slab object: on a freelist"), "range_start": (Opt(HEX), "area, stack or module range"),
        "range_end": (Opt(HEX), "its end"), "caller": (Opt(HEX), "vmalloc: who allocated it"),
        "caller_symbol": (Opt(STR), "the caller's function"), "section": (Opt(STR), "image section or module part"),
        "symbol": (Opt(STR), "kernel image or static per-CPU data: symbol+offset"),
        "pid": (Opt(INT), "task stack: the task"),
        "comm": (Opt(STR), "its comm"), "physical": (Opt(HEX), "physical address"),
        "page": (Opt(Ref("page_info")), "its struct page"),
        "alloc_stack": (Arr(Ref("kernel_frame")), "slab object: where it was allocated (slub_debug=U)")}),
    "page_info": Shape("A struct page.", {
        "pfn": (INT, "page frame"), "head_pfn": (INT, "its compound head"), "flags": (Arr(STR), "PG_ flags set"),
        "order": (INT, "compound order"), "refcount": (INT, "_refcount"), "mapping": (HEX, "page->mapping")}),
    "kernel_frame": Shape("A kernel return address.", {
        "pc": (HEX, "address"), "function": (Opt(STR), "symbol+offset")}),
    "kleaks": Shape("A leak scan of the kernel by kmemleak's method.", {
        "header": (STR, "what was scanned"), "seconds": (NUMBER, "how long the scan took"),
        "objects": (Arr(Ref("kernel_object")), "the reported objects"),
        "caches": (Arr(Ref("kernel_leak_counts")), "lost objects by cache"),
        "roots": (Counts(), "bytes scanned as roots, by kind"), "notes": (Arr(STR), "what was left out"),
        "summary": (Ref("leak_summary"), "bytes and objects of each kind")}),
    "kernel_object": Shape("A slab object or vmalloc area and its leak kind.", {
        "address": (HEX, "start"), "size": (INT, "bytes (the cache's object size)"),
        "cache": (STR, "cache name, or vmalloc"),
        "kind": (Enum(("definitely lost", "indirectly lost", "possibly lost", "still reachable")), "leak kind"),
        "indirect_bytes": (INT, "definitely lost: bytes lost through it"),
        "preview": (STR, "its first bytes, hex"), "stack": (Arr(Ref("kernel_frame")), "allocation stack")}),
    "kernel_leak_counts": Shape("Lost objects of one cache.", {
        "cache": (STR, "cache name or vmalloc"), "definitely lost": (INT, "objects"),
        "indirectly lost": (INT, "objects"), "possibly lost": (INT, "objects")}),
    "event_log_line": Shape("A line of `set memcheck event-log FILE`: an event and the schema version.", {}),
    "previous": Shape("The earlier look a --delta or diff compares with.", {
        "source": (STR, "\"live\", or the dump it was read from"),
        "seconds_ago": (Opt(NUMBER), "how long before this look it was taken (null in a diff)")}),
    "ps_delta": Shape("Processes new, gone or resized since the previous ps; with no previous ps, previous is null "
                      "and every process is new.", {
        "previous": (Opt(Ref("previous")), "the look compared with"),
        "changes": (Arr(Ref("process_change")), "new and resized in ps order, then gone")}),
    "process_change": Shape("A process new, gone, or whose VSZ or RSS changed; a gone one shows what it was.", {
        "change": (Enum(("new", "gone", "resized")), "what happened"), "pid": (INT, "thread-group id"),
        "ppid": (INT, "parent's pid"), "state": (STR, "one letter"), "comm": (STR, "task->comm"),
        "exe": (STR, "executable path"), "kernel_thread": (BOOL, "PF_KTHREAD"), "vsz_kib": (INT, "VSZ, kB"),
        "rss_kib": (INT, "RSS, kB"), "vsz_change_kib": (INT, "VSZ change, kB"),
        "rss_change_kib": (INT, "RSS change, kB")}),
    "maps_delta": Shape("What changed in a process's map since the previous look; with none, previous is null and "
                        "every mapping is added.", {
        "pid": (INT, "the process"), "comm": (STR, "its comm"), "previous": (Opt(Ref("previous")), "the look compared with"),
        "changes": (Arr(Ref("map_change")), "in address order")}),
    "map_change": Shape("A range added, removed or changed (other permissions or file), a mapping resized, or a "
                        "mapping whose Rss alone changed.", {
        "change": (Enum(("added", "removed", "changed", "resized", "rss")), "what happened"),
        "start": (HEX, "first address"), "end": (HEX, "address after the last"),
        "line": (STR, "the range's /proc/PID/maps line (as it was, when removed)"),
        "was": (Opt(STR), "changed, resized: the line before"), "rss_kib": (Opt(INT), "Rss now, kB, when known"),
        "rss_change_kib": (Opt(INT), "Rss change, kB, when known")}),
    "leak_delta": Shape("Loss records new or grown since the process's previous check in the same mode, as "
                        "valgrind's `leak_check full increased` selects them; with no previous check, previous is "
                        "null and every record is new.", {
        "pid": (INT, "the process"), "comm": (STR, "its comm"), "mode": (Enum(("scan", "tracking")), "the source"),
        "header": (STR, "what was walked or tracked"), "previous": (Opt(Ref("previous")), "the check compared with"),
        "records": (Arr(Ref("record_delta")), "new or grown, in valgrind's order"),
        "summary": (Ref("summary_delta"), "LEAK SUMMARY with changes")}),
    "record_delta": Shape("A loss record now and how it changed.", {
        "number": (INT, "its number among the records"), "of": (INT, "how many records"),
        "new": (BOOL, "it had no blocks before"), "kind": (STR, "leak kind"), "origin": (STR, "block origin"),
        "blocks": (INT, "blocks now"), "blocks_change": (INT, "change in blocks"),
        "total_bytes": (INT, "direct and indirect bytes now"), "total_change": (INT, "change"),
        "direct_bytes": (INT, "its blocks' bytes"), "direct_change": (INT, "change"),
        "indirect_bytes": (INT, "bytes lost through it"), "indirect_change": (INT, "change"),
        "addresses": (Arr(HEX), "its blocks"), "stack": (Arr(Ref("frame")), "allocation stack (tracking mode)")}),
    "summary_delta": Shape("Bytes and blocks of each kind and their changes.", {
        kind: (Ref("amount_delta"), kind) for kind in ("definitely lost", "indirectly lost", "possibly lost",
                                                       "still reachable")}),
    "amount_delta": Shape("An amount and its change.", {
        "bytes": (INT, "bytes"), "blocks": (INT, "blocks"), "bytes_change": (INT, "change in bytes"),
        "blocks_change": (INT, "change in blocks")}),
    "diff": Shape("What changed between two dumps.", {
        "a": (STR, "the earlier dump"), "b": (STR, "the later dump"),
        "processes": (Arr(Ref("process_change")), "processes new, gone or resized"),
        "maps": (Arr(Ref("maps_delta")), "each process in both whose map changed (or each one asked for)"),
        "leaks": (Arr(Ref("leak_delta")), "with --leaks: each process's scan-mode records new or grown")}),
    "watch": Shape("A timeline: each sample's processes.", {
        "every": (NUMBER, "requested interval, seconds"), "duration": (NUMBER, "requested length, seconds"),
        "interrupted": (BOOL, "ended early by Ctrl-C or another stop"),
        "elapsed": (NUMBER, "seconds the watch took"), "running": (NUMBER, "of those, seconds the guest ran"),
        "skipped": (INT, "samples skipped: sampling took longer than the interval"),
        "csv": (Opt(STR), "the CSV written"),
        "plot": (Opt(STR), "the picture written"), "samples": (Arr(Ref("sample")), "in time order")}),
    "sample": Shape("One stop of the guest, taken by an interrupt.", {
        "sample": (INT, "its number, from 0"), "time": (NUMBER, "Unix seconds"),
        "seconds": (NUMBER, "since the watch began"), "processes": (Arr(Ref("process_sample")), "by pid")}),
    "process_sample": Shape("A process at one sample.", {
        "pid": (INT, "the process"), "comm": (STR, "its comm"), "rss_kib": (INT, "RSS, kB"),
        "vsz_kib": (INT, "VSZ, kB"),
        "heap_bytes": (Opt(INT), "heap in use from glibc's counters, null without a glibc heap")}),
    "error": Shape("What a failing command prints under --json, before gdb's error.", {
        "error": (STR, "the message, as the error line says it")}),
}

# Command -> the shape of its --json output (each also carries `schema_version` and `command`).
COMMANDS: dict[str, str] = {
    "info": "info", "ps": "ps", "maps": "maps", "pagetable": "pagetable", "vtop": "vtop", "addr": "addr",
    "leaks check": "leak_report", "leaks report": "leak_report", "leaks status": "leaks_status",
    "trace status": "trace_status", "trace table": "trace_table", "trace maps": "trace_maps", "events": "events",
    "slab": "slab", "kmem": "kmem", "kleaks": "kleaks",
    "ps --delta": "ps_delta", "maps --delta": "maps_delta", "leaks check --delta": "leak_delta", "diff": "diff",
    "watch": "watch",
}
ENVELOPE = {"schema_version": (INT, f"{SCHEMA_VERSION}, this schema's version"),
            "command": (STR, "the command, e.g. \"leaks report\"")}


def document(command: str, body: dict) -> dict:
    """A --json output: the schema version, the command and its fields."""
    return {"schema_version": SCHEMA_VERSION, "command": command, **body}


def hexa(value: int | None) -> str | None:
    """An address or 64-bit value as the schema writes it."""
    return None if value is None else hex(value)


# -- validation ---------------------------------------------------------------------
def validate(doc: object) -> list[str]:
    """What is wrong with a --json output or an event-log line (nothing: an empty list)."""
    if not isinstance(doc, dict):
        return ["$: not an object"]
    if "command" not in doc:
        return _check_shape(doc, _event_log_line(), "$")
    command = doc.get("command")
    if "error" in doc:
        shape = Shape("", {**ENVELOPE, **SHAPES["error"].fields})
    elif command in COMMANDS:
        shape = Shape("", {**ENVELOPE, **SHAPES[COMMANDS[command]].fields})
    else:
        return [f"$.command: unknown command {command!r}"]
    return _check_shape(doc, shape, "$")


def _event_log_line() -> Shape:
    event = SHAPES["event"]
    return Shape("", {"schema_version": ENVELOPE["schema_version"], **event.fields}, event.optional)


def _check(value: object, kind: object, path: str) -> list[str]:
    if isinstance(kind, Opt):
        return [] if value is None else _check(value, kind.of, path)
    if isinstance(kind, Ref):
        return _check_shape(value, SHAPES[kind.name], path)
    if isinstance(kind, Arr):
        if not isinstance(value, list):
            return [f"{path}: not an array"]
        return [e for i, item in enumerate(value) for e in _check(item, kind.of, f"{path}[{i}]")]
    if isinstance(kind, Enum):
        return [] if value in kind.values else [f"{path}: {value!r} is not one of {kind.values}"]
    if isinstance(kind, Counts):
        ok = isinstance(value, dict) and all(isinstance(v, int) and not isinstance(v, bool) for v in value.values())
        return [] if ok else [f"{path}: not an object of counts"]
    return [] if _scalar_ok(value, kind) else [f"{path}: {value!r} is not {_TYPE_NAMES[kind]}"]


def _scalar_ok(value: object, kind: object) -> bool:
    if kind == HEX:
        return isinstance(value, str) and bool(_HEX.match(value))
    if kind == INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == NUMBER:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, {STR: str, BOOL: bool}[kind])


def _check_shape(value: object, shape: Shape, path: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{path}: not an object"]
    errors = [f"{path}: unexpected field {k!r}" for k in value if k not in shape.fields]
    for name, (kind, _doc) in shape.fields.items():
        if name in value:
            errors += _check(value[name], kind, f"{path}.{name}")
        elif name not in shape.optional:
            errors.append(f"{path}: missing field {name!r}")
    return errors


# -- documentation ------------------------------------------------------------------
_TYPE_NAMES = {HEX: "hex string", INT: "integer", NUMBER: "number", STR: "string", BOOL: "boolean"}


def type_name(kind: object) -> str:
    if isinstance(kind, Opt):
        return f"{type_name(kind.of)} or null"
    if isinstance(kind, Arr):
        return f"array of {type_name(kind.of)}"
    if isinstance(kind, Ref):
        return f"[{kind.name}](#{kind.name})"
    if isinstance(kind, Enum):
        return " \\| ".join(f'"{v}"' for v in kind.values)
    if isinstance(kind, Counts):
        return "object of integers"
    return _TYPE_NAMES[kind]


def markdown() -> str:
    """The reference part of docs/json-schema.md: each command's output, then each shape."""
    lines = ["| command | output |", "|---|---|"]
    lines += [f"| `memcheck {c}` | [{s}](#{s}) |" for c, s in COMMANDS.items()]
    lines.append("| a failing command | [error](#error) |")
    lines.append("| `set memcheck event-log FILE` | one [event_log_line](#event_log_line) a line |")
    for name, shape in SHAPES.items():
        lines += ["", f"### {name}", "", shape.doc, "", "| field | type | meaning |", "|---|---|---|"]
        if name == "event_log_line":
            lines.append("| schema_version | integer | this schema's version |")
            lines.append("| *every field of* [event](#event) | | |")
        for field_name, (kind, doc) in shape.fields.items():
            optional = " (only where it applies)" if field_name in shape.optional else ""
            lines.append(f"| {field_name} | {type_name(kind)} | {doc}{optional} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
