"""A run's daily x symbol partitions as rectangles (symbols x [start, end]): the unit of one Delta commit.

Why: a ``replaceWhere`` clears everything its predicate covers, so the predicate must be exactly the run's
partitions. Every range run (single-run backfill, repair) is one full rectangle; an odd selection of keys
(e.g. picked by hand in the UI) falls back to one rectangle per symbol and run of consecutive days.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from crypto_lambda.lake.tables import rectangle
from crypto_lambda.timeutil import contiguous_runs, day_range, parse_day

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
PARTITION = "dagster/partition"


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


def from_tags(tags: Mapping[str, str], symbols: Sequence[str]) -> Rect | None:
    """The rectangle a run's tags name (a range run, or one ``date|symbol`` partition); None if neither,
    e.g. a run of a per-symbol job."""
    if RANGE_START in tags and RANGE_END in tags and "|" in tags[RANGE_START]:
        (d0, s0), (d1, s1) = (tags[RANGE_START].split("|"), tags[RANGE_END].split("|"))
        chosen = tuple(s for s in sorted(symbols) if s0 <= s <= s1)
        return Rect(chosen, parse_day(d0), parse_day(d1)) if chosen else None
    if "|" in tags.get(PARTITION, ""):
        day, symbol = tags[PARTITION].split("|")
        return Rect((symbol,), parse_day(day), parse_day(day))
    return None
