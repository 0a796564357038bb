"""gdb convenience functions, for use in any expression: $memcheck_pid("comm"),
$memcheck_phys(va[, pid or "comm"]) and $memcheck_task(pid or "comm")."""
from __future__ import annotations

import gdb

from ..target import TargetError
from . import scripting


def _spec(value: gdb.Value) -> int | str:
    """A pid, or a comm given as a string."""
    kind = value.type.strip_typedefs()
    if kind.code in (gdb.TYPE_CODE_ARRAY, gdb.TYPE_CODE_PTR) and kind.target().sizeof == 1:
        return value.string()
    return int(value)


class MemcheckFunction(gdb.Function):
    """Base: a failure becomes one gdb error that names the function."""

    name = ""

    def __init__(self) -> None:
        super().__init__(self.name)

    def invoke(self, *args: gdb.Value) -> gdb.Value | int:
        try:
            return self.compute(*args)
        except TypeError:
            raise gdb.GdbError(f"${self.name}: usage: {self.__doc__.split(': ', 1)[0]}") from None
        except (TargetError, gdb.error) as e:
            raise gdb.GdbError(f"${self.name}: {e}") from None

    def compute(self, *args: gdb.Value) -> gdb.Value | int:
        raise NotImplementedError


class PidFunction(MemcheckFunction):
    """$memcheck_pid("comm"): the pid of the one process with that comm."""

    name = "memcheck_pid"

    def compute(self, comm: gdb.Value) -> int:
        return scripting.process(str(_spec(comm))).tgid


class PhysFunction(MemcheckFunction):
    """$memcheck_phys(va[, pid or "comm"]): the physical address of va in that process
    (default: through the selected vCPU's CR3)."""

    name = "memcheck_phys"

    def compute(self, address: gdb.Value, process: gdb.Value | None = None) -> int:
        spec = None if process is None else _spec(process)
        return scripting.translate(int(address), spec).physical


class TaskFunction(MemcheckFunction):
    """$memcheck_task(pid or "comm"): that task's struct task_struct *, for
    `p $memcheck_task(1)->comm` or `p *$memcheck_task("wl-leak")->mm`."""

    name = "memcheck_task"

    def compute(self, process: gdb.Value) -> gdb.Value:
        spec = _spec(process)
        task = next((t for p in scripting.processes() for t in scripting.threads(p) if t.pid == spec), None) \
            if isinstance(spec, int) else scripting.process(spec)
        if task is None:
            raise TargetError(f"no task with pid {spec}")
        return gdb.Value(task.addr).cast(gdb.lookup_type("struct task_struct").pointer())


def register() -> list[gdb.Function]:
    return [PidFunction(), PhysFunction(), TaskFunction()]
