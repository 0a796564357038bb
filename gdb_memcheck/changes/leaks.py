"""Loss records new or grown since a process's previous leak check, as valgrind's gdbserver
command `leak_check full increased` selects them (memcheck/mc_leakcheck.c
get_printing_rules: a record is shown when its direct bytes, indirect bytes or block
count grew).  Records are matched by what groups them: kind, origin
and allocation stack, or the block size where stacks are unknown (scan mode)."""
from __future__ import annotations

from dataclasses import dataclass

from ..leakcheck.leaks import Kind, LeakReport, LossRecord


@dataclass(frozen=True)
class Amounts:
    """A loss record's size: direct bytes, bytes lost through it, blocks."""

    bytes: int = 0
    indirect: int = 0
    blocks: int = 0

    @property
    def total(self) -> int:
        return self.bytes + self.indirect


def record_key(record: LossRecord) -> tuple:
    """What makes two checks' records the same record (as leaks.loss_records groups blocks)."""
    return record.kind, record.origin, record.stack, None if record.stack else record.blocks[0].size


def amounts(record: LossRecord) -> Amounts:
    return Amounts(record.bytes, record.indirect_bytes, len(record.blocks))


@dataclass(frozen=True)
class LeakLook:
    """What one check found: every record's amounts and the LEAK SUMMARY, with forgiven
    blocks (all_origins) and without."""

    comm: str
    records: dict[tuple, Amounts]
    summaries: dict[bool, dict[Kind, tuple[int, int]]]


def leak_look(report: LeakReport) -> LeakLook:
    records = report.records(True)
    return LeakLook(report.comm, {record_key(r): amounts(r) for r in records},
                    {all_origins: report.summary(all_origins) for all_origins in (False, True)})


@dataclass(frozen=True)
class RecordDelta:
    """A loss record now, its number among the records shown, and its amounts before."""

    record: LossRecord
    number: int
    of: int
    before: Amounts

    @property
    def now(self) -> Amounts:
        return amounts(self.record)

    @property
    def is_new(self) -> bool:
        return self.before.blocks == 0

    @property
    def increased(self) -> bool:
        """valgrind's LCD_Increased rule."""
        now, before = self.now, self.before
        return now.bytes > before.bytes or now.indirect > before.indirect or now.blocks > before.blocks


def increased_records(records: list[LossRecord], before: LeakLook | None) -> list[RecordDelta]:
    """The records (numbered among all of `records`, in their order, valgrind's) that are new or grew."""
    previous = before.records if before is not None else {}
    deltas = [RecordDelta(r, n, len(records), previous.get(record_key(r), Amounts()))
              for n, r in enumerate(records, 1)]
    return [d for d in deltas if d.increased]
