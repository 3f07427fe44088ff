"""Partition definitions, built from settings: daily x symbol for minute data, symbol for per-symbol series.

Partition keys of the daily x symbol space look like ``2025-05-20|BTCUSDT`` (dimension names sorted:
``date`` then ``symbol``). A range between two such keys is the date x symbol rectangle, which is what a
single-run backfill over several days and symbols executes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence

import dagster as dg

from crypto_lambda.batch.rect import Rect
from crypto_lambda.config import Settings
from crypto_lambda.timeutil import parse_day

DATE_DIM = "date"
SYMBOL_DIM = "symbol"
# Dagster's run tags of a single-run backfill over a partition range, and of a one-partition run.
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
PARTITION = "dagster/partition"


def daily_symbol_partitions(settings: Settings) -> dg.MultiPartitionsDefinition:
    return dg.MultiPartitionsDefinition({
        DATE_DIM: dg.DailyPartitionsDefinition(start_date=settings.first_minute_day.isoformat(), timezone="UTC"),
        SYMBOL_DIM: dg.StaticPartitionsDefinition(list(settings.symbols)),
    })


def speed_partitions(settings: Settings) -> dg.MultiPartitionsDefinition:
    """Like ``daily_symbol_partitions`` but including today (``end_offset=1``): the speed layer serves the
    current, provisional day."""
    return dg.MultiPartitionsDefinition({
        DATE_DIM: dg.DailyPartitionsDefinition(start_date=settings.first_minute_day.isoformat(), timezone="UTC",
                                               end_offset=1),
        SYMBOL_DIM: dg.StaticPartitionsDefinition(list(settings.symbols)),
    })


def symbol_partitions(settings: Settings) -> dg.StaticPartitionsDefinition:
    return dg.StaticPartitionsDefinition(list(settings.symbols))


def multi_key(day: dt.date, symbol: str) -> str:
    return f"{day.isoformat()}|{symbol}"


def split_key(key: str | dg.MultiPartitionKey) -> tuple[dt.date, str]:
    """``2025-05-20|BTCUSDT`` -> (date, symbol)."""
    if isinstance(key, dg.MultiPartitionKey):
        dims = key.keys_by_dimension
        return parse_day(dims[DATE_DIM]), dims[SYMBOL_DIM]
    day, symbol = str(key).split("|")
    return parse_day(day), symbol


def days_by_symbol(keys: Iterable[str]) -> dict[str, list[dt.date]]:
    """Group a run's daily x symbol partition keys into sorted days per symbol."""
    out: dict[str, list[dt.date]] = {}
    for key in keys:
        day, symbol = split_key(key)
        out.setdefault(symbol, []).append(day)
    return {s: sorted(set(d)) for s, d in sorted(out.items())}


def range_tags(first: dt.date, last: dt.date, symbols: Sequence[str]) -> dict[str, str]:
    """Run tags that make one run cover the date x symbol rectangle (single-run backfill)."""
    ordered = sorted(symbols)
    return {RANGE_START: multi_key(first, ordered[0]), RANGE_END: multi_key(last, ordered[-1])}


def symbol_range_tags(symbols: Sequence[str]) -> dict[str, str]:
    ordered = sorted(symbols)
    return {RANGE_START: ordered[0], RANGE_END: ordered[-1]}


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
