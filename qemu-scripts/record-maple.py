"""Record a process's maple tree for the unit tests (run inside gdb with the plugin):
   gdb ... -ex 'python PID, OUT = 85, "tests/unit/data/maple-85.json"' -x qemu-scripts/record-maple.py
Writes every node the tree reaches (256 bytes each), the tree's address and the
layout offsets the reader uses, with the guest's own /proc/PID/maps beside it."""
import json

from gdb_memcheck.linux import maple
from gdb_memcheck.frontend.session import SESSION

system = SESSION.system()
proc = system.find(str(PID))  # noqa: F821  (set by the caller)
mm = system.mm(proc)
tree = mm.addr + system.vma_reader.tree_off
layout = system.vma_reader.maple
nodes = {}


def recording_read(addr, size):
    data = system.kmem.read(addr, size)
    if size == maple.NODE_SIZE or addr == tree + layout.ma_root:
        nodes[hex(addr)] = data.hex()
    return data


entries = list(maple.entries(recording_read, tree, layout))
doc = {"pid": PID, "tree": tree, "layout": {  # noqa: F821
    "range64": vars(layout.range64), "arange64": vars(layout.arange64), "ma_root": layout.ma_root},
    "nodes": nodes, "maps": MAPS}  # noqa: F821
with open(OUT, "w") as f:  # noqa: F821
    json.dump(doc, f, indent=0)
print(f"recorded {len(nodes)} nodes, {len(entries)} entries of pid {PID} into {OUT}")  # noqa: F821
