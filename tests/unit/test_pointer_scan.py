"""The pointer scan of leak classification: searching the words' high halves finds exactly
the words a loop over every word finds, and reading neighbouring blocks as one span
classifies exactly as reading each block on its own."""
from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gdb_memcheck.leakcheck import leaks

# Blocks on both sides of a 4 GiB line, so two high halves are searched for; at 0x5555555555555000
# every address byte is 0x55, so matches overlap one another and the words' high halves.
BASE = 0x5555_5555_ffff_f000
SAME_BYTES = 0x5555_5555_5555_5000
FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
BYTE_SOUP = st.lists(st.sampled_from([0x00, 0x55, 0x56, 0xf0, 0xff]), min_size=8, max_size=8).map(
    lambda bs: int.from_bytes(bytes(bs), "little"))
NEAR_BLOCKS = st.integers(BASE - 0x100, BASE + 0x2200) | st.integers(SAME_BYTES - 0x100, SAME_BYTES + 0x1200)
WORD = st.integers(0, (1 << 64) - 1)


def line_of_blocks() -> leaks.BlockIndex:
    """32 blocks of 0x100 bytes from BASE and 16 from SAME_BYTES, 16 bytes apart."""
    return leaks.BlockIndex([leaks.Block(BASE + 0x110 * i, 0x100) for i in range(32)] +
                            [leaks.Block(SAME_BYTES + 0x110 * i, 0x100) for i in range(16)])


def every_word(index: leaks.BlockIndex, data: bytes) -> list[tuple[int, int]]:
    words = [w for (w,) in struct.iter_unpack("<Q", data[:len(data) // 8 * 8])]
    return [(k, w) for k, w in enumerate(words) if index.lo <= w < index.hi]


@FUZZ
@given(words=st.lists(st.one_of(NEAR_BLOCKS, BYTE_SOUP, WORD, st.just(0)), min_size=64, max_size=400),
       tail=st.binary(max_size=7))
def test_the_high_half_search_finds_exactly_the_words_a_loop_over_every_word_finds(words, tail):
    index = line_of_blocks()
    data = struct.pack(f"<{len(words)}Q", *words) + tail
    assert index.words_in_range(data) == every_word(index, data)


def test_a_match_overlapping_a_words_high_half_does_not_hide_it():
    index = line_of_blocks()
    pointer = SAME_BYTES + 0x500                # bytes 00 55 55 55 55 55 55 55: a match at byte 1 first
    data = struct.pack("<64Q", pointer, *[0] * 63)
    assert index.words_in_range(data) == [(0, pointer)]


def memory(blocks: list[leaks.Block], pointers: list[tuple[int, int, int]], end: int):
    """Memory from BASE to `end` holding, at word `slot` of block `source`, a pointer into block
    `target` (some at its start; every fifth in the root region before BASE instead)."""
    heap = bytearray(end - BASE + 8)
    root = bytearray(0x100)
    for b in blocks:                    # a pointer in the word a block ends inside: not the block's
        if b.size % 8:
            struct.pack_into("<Q", heap, b.address - BASE + b.size // 8 * 8, blocks[0].address)
    for i, (source, slot, target) in enumerate(pointers):
        b, t = blocks[source % len(blocks)], blocks[target % len(blocks)]
        value = t.address + (slot * 8 if slot % 3 else 0) % max(t.size, 1)
        if source % 5 == 0:
            struct.pack_into("<Q", root, 8 * (i % 32), value)
        elif b.size >= 8:
            struct.pack_into("<Q", heap, b.address - BASE + 8 * (slot % (b.size // 8)), value)

    def read(addr: int, size: int) -> bytes:
        if addr < BASE:
            return bytes(root[addr - (BASE - 0x100):addr - (BASE - 0x100) + size])
        return bytes(heap[addr - BASE:addr - BASE + size])
    return read


@FUZZ
@given(layout=st.lists(st.tuples(st.sampled_from([0, 16, 0x100, 0x10010]), st.integers(1, 300)),
                       min_size=1, max_size=24),
       pointers=st.lists(st.tuples(st.integers(0, 100), st.integers(0, 100), st.integers(0, 100)), max_size=60))
def test_reading_blocks_as_spans_classifies_exactly_as_reading_each_block(layout, pointers):
    blocks, at = [], BASE
    for gap, size in layout:
        at += gap
        blocks.append(leaks.Block(at, size))
        at = (at + size + 15) & ~15
    read = memory(blocks, pointers, at)
    root = [leaks.Region(BASE - 0x100, BASE, "root")]

    def classified(spans: bool) -> list[tuple]:
        copies = [leaks.Block(b.address, b.size) for b in blocks]
        index = leaks.classify(copies, read, root, [], spans=spans)
        return [(b.address, b.kind, b.indirect, b.start_pointed, b.interior_pointed) for b in index.blocks]
    assert classified(True) == classified(False)
