"""A run's daily x symbol partitions as rectangles (symbols x [start, end]): the unit of one Delta commit.

Why: a ``replaceWhere`` clears everything its predicate covers, so the predicate must be exactly the run's
partitions. Every range run (single-run backfill, repair) is one full rectangle; an odd selection of keys
(e.g. picked by hand in the UI) falls back to one rectangle per symbol and run of consecutive days. (The
rectangle a run's tags name is read by ``crypto_assets.lib.partitions.from_tags``.)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from crypto_lambda.lake.tables import rectangle
from crypto_lambda.timeutil import contiguous_runs, day_range


@dataclass(frozen=True)
class Rect:
    symbols: tuple[str, ...]
    start: dt.date
    end: dt.date

    @property
    def predicate(self) -> str:
        return rectangle(self.symbols, self.start, self.end)

    @property
    def partitions(self) -> int:
        return len(self.symbols) * ((self.end - self.start).days + 1)


def rectangles(days_by_symbol: Mapping[str, Sequence[dt.date]]) -> list[Rect]:
    """Cover exactly the given (symbol, day) partitions with as few rectangles as simply possible."""
    wanted = {s: sorted(set(d)) for s, d in days_by_symbol.items() if d}
    if not wanted:
        return []
    first = min(d[0] for d in wanted.values())
    last = max(d[-1] for d in wanted.values())
    full = list(day_range(first, last))
    if all(days == full for days in wanted.values()):
        return [Rect(tuple(sorted(wanted)), first, last)]
    return [Rect((s,), a, b) for s, days in sorted(wanted.items()) for a, b in contiguous_runs(days)]
