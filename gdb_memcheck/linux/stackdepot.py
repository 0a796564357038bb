"""The kernel's stack depot: the whole stack behind a depot_stack_handle_t, as
slub_debug=U stores one with each object's alloc and free track (the kernel's own
scripts/gdb lx-slabtrace reads them the same way).  The handle's bit fields are probed
from union handle_parts; a decoded record must carry the handle it was asked for."""
from __future__ import annotations

from typing import Callable

from ..target import Target, TargetError, u32, u64

HANDLE_BITS = 32
OFFSET_BITS = 10                # DEPOT_POOL_ORDER 2 + PAGE_SHIFT 12 - DEPOT_STACK_ALIGN 4 (6.1 and 6.12)
STACK_ALIGN = 4
MAX_FRAMES = 64

Reader = Callable[[int, int], bytes]


class StackDepot:
    """Decodes handles into lists of return addresses."""

    def __init__(self, target: Target) -> None:
        parts = target.layout("union handle_parts")
        record = target.layout("struct stack_record")
        extra = 5                                                   # STACK_DEPOT_EXTRA_BITS
        valid = 1 if parts.has("valid") else 0
        # 6.8 dropped the valid bit and stores pool_index_plus_1 (0 means no handle); 6.3 renamed
        # stack_slabs to stack_pools
        self.plus_one = parts.has("pool_index_plus_1")
        self.pools = target.symbol_address("stack_pools" if target.has_symbol("stack_pools") else "stack_slabs")
        self.index_bits = HANDLE_BITS - OFFSET_BITS - valid - extra
        self.size, self.entries = record.offset("size"), record.offset("entries")
        self.handle = record.offset("handle")

    def stack(self, read: Reader, handle: int) -> tuple[int, ...]:
        """The return addresses saved under `handle` (empty for handle 0)."""
        if not handle:
            return ()
        index = handle & ((1 << self.index_bits) - 1)
        offset = (handle >> self.index_bits) & ((1 << OFFSET_BITS) - 1)
        if self.plus_one:
            index -= 1
        pool = u64(read(self.pools + 8 * index, 8)) if index >= 0 else 0
        if not pool:
            raise TargetError(f"stack depot handle {handle:#x} names no pool")
        record = pool + (offset << STACK_ALIGN)
        if u32(read(record + self.handle, 4)) != handle:
            raise TargetError(f"stack depot handle {handle:#x}: the record at {record:#x} carries another handle")
        count = min(u32(read(record + self.size, 4)), MAX_FRAMES)
        raw = read(record + self.entries, 8 * count)
        return tuple(u64(raw, 8 * i) for i in range(count))
