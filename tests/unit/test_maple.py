"""The maple-tree reader over nodes recorded from a real 6.1 guest, and over corrupted copies."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from gdb_memcheck.linux import maple
from gdb_memcheck.target import MemoryReadError

DATA = Path(__file__).parent / "data"


def load(name: str) -> dict:
    doc = json.loads((DATA / name).read_text())
    lay = doc["layout"]
    doc["layout"] = maple.MapleLayout(maple.NodeFormat(**lay["range64"]), maple.NodeFormat(**lay["arange64"]),
                                      lay["ma_root"])
    doc["memory"] = {int(a, 16): bytearray.fromhex(h) for a, h in doc["nodes"].items()}
    return doc


def reader(memory: dict[int, bytearray]):
    def read(addr: int, size: int) -> bytes:
        for base, data in memory.items():
            if base <= addr and addr + size <= base + len(data):
                return bytes(data[addr - base:addr - base + size])
        raise MemoryReadError("kernel virtual", addr, size, "not recorded")
    return read


def maps_ranges(maps_text: str) -> list[tuple[int, int]]:
    out = []
    for line in maps_text.splitlines():
        lo, hi = line.split()[0].split("-")
        out.append((int(lo, 16), int(hi, 16)))
    return out


@pytest.mark.parametrize("name", ["maple-wl-maps.json", "maple-wl-manymaps.json"])
def test_entries_cover_exactly_the_guests_proc_maps_ranges(name):
    doc = load(name)
    got = [(first, last + 1) for first, last, _ in maple.entries(reader(doc["memory"]), doc["tree"], doc["layout"])]
    assert got == maps_ranges(doc["maps"])


def test_recorded_big_tree_has_internal_levels():
    doc = load("maple-wl-manymaps.json")
    assert (root_entry(doc) >> 3) & 0xF == maple.ARANGE_64
    assert len(maple_nodes(doc)) > 60


def maple_nodes(doc) -> list[int]:
    return [a for a, d in doc["memory"].items() if len(d) == maple.NODE_SIZE]


def root_entry(doc) -> int:
    return struct.unpack("<Q", bytes(doc["memory"][doc["tree"] + doc["layout"].ma_root][:8]))[0]


def root_node(doc) -> tuple[bytearray, maple.NodeFormat]:
    """The root node's recorded bytes (mutable) and its format."""
    root = root_entry(doc)
    kind = (root >> 3) & 0xF
    fmt = doc["layout"].arange64 if kind == maple.ARANGE_64 else doc["layout"].range64
    return doc["memory"][root & ~maple.NODE_MASK], fmt


def test_a_child_pointing_back_at_the_root_is_reported_as_a_cycle():
    doc = load("maple-wl-manymaps.json")
    data, fmt = root_node(doc)
    struct.pack_into("<Q", data, fmt.slot + 8, root_entry(doc))
    with pytest.raises(maple.MapleTreeError, match="cycle"):
        list(maple.entries(reader(doc["memory"]), doc["tree"], doc["layout"]))


def test_an_unknown_node_type_is_reported():
    doc = load("maple-wl-manymaps.json")
    data, fmt = root_node(doc)
    child = struct.unpack_from("<Q", data, fmt.slot)[0]
    struct.pack_into("<Q", data, fmt.slot, (child & ~maple.NODE_MASK) | (7 << 3))
    with pytest.raises(maple.MapleTreeError, match="unsupported type 7"):
        list(maple.entries(reader(doc["memory"]), doc["tree"], doc["layout"]))


def test_pivots_out_of_order_are_reported():
    doc = load("maple-wl-maps.json")
    data, fmt = root_node(doc)
    first = struct.unpack_from("<Q", data, fmt.pivot)[0]
    struct.pack_into("<Q", data, fmt.pivot + 8, first - 1)
    with pytest.raises(maple.MapleTreeError, match="outside"):
        list(maple.entries(reader(doc["memory"]), doc["tree"], doc["layout"]))


def test_an_unreadable_node_raises_a_memory_error_not_garbage():
    doc = load("maple-wl-manymaps.json")
    victim = maple_nodes(doc)[-1]
    del doc["memory"][victim]
    with pytest.raises(MemoryReadError):
        list(maple.entries(reader(doc["memory"]), doc["tree"], doc["layout"]))


def test_an_empty_tree_has_no_entries():
    memory = {0x1000: bytearray(24)}
    layout = load("maple-wl-maps.json")["layout"]
    assert list(maple.entries(reader(memory), 0x1000, layout)) == []
