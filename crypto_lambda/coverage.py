"""What the lake holds, measured against the quality rules (:mod:`crypto_lambda.quality`): missing days,
the complete series' gaps, duplicate or misdated minutes. Sensors, checks, backfill and ``status`` call these;
they read the committed tables with delta-rs (no JVM).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from crypto_lambda.config import Settings
from crypto_lambda.lake import read as lake_read
from crypto_lambda.lake.tables import DAILY_FILLED, DAILY_OHLCV, RAW_KLINES
from crypto_lambda.quality import is_complete_day
from crypto_lambda.timeutil import day_range, yesterday_utc


def missing_days(settings: Settings, symbol: str, first: dt.date | None = None,
                 last: dt.date | None = None) -> list[dt.date]:
    """Days of [first, last] (default: the first minute day..yesterday) whose raw minutes or daily bar is
    absent from the tables' current version (the lake is the truth, not Dagster's memory)."""
    first = max(first or settings.first_minute_day, settings.first_minute_day)
    last = last or yesterday_utc()
    raw = set(lake_read.days(settings.lake, RAW_KLINES, symbol))
    bars = set(lake_read.days(settings.lake, DAILY_OHLCV, symbol))
    return [d for d in day_range(first, last) if d not in raw or d not in bars]


def incomplete_days(settings: Settings, symbol: str, last: dt.date) -> list[tuple[dt.date, int]]:
    """(day, minutes present) of the symbol's daily bars from the first minute day to ``last`` that are not
    complete days."""
    bars = lake_read.read(settings.lake, DAILY_OHLCV, [symbol], start=settings.first_minute_day, end=last,
                          columns=["date", "minutes_present"])
    minutes = bars["minutes_present"].fillna(0).astype(int)
    return [(day, int(m)) for day, m, ok in zip(bars["date"], minutes, is_complete_day(minutes), strict=True)
            if not ok]


def gap_report(settings: Settings, last_day: dt.date | None = None) -> dict[str, dict]:
    """Per symbol: days absent from daily_filled, forward-filled days in the minute range, and minute
    partitions below the completeness threshold."""
    last_day = last_day or yesterday_utc()
    report: dict[str, dict] = {}
    for symbol in settings.symbols:
        frame = lake_read.read(settings.lake, DAILY_FILLED, [symbol],
                               columns=["date", "is_filled", "minutes_present"])
        expected = set(day_range(settings.first_minute_day, last_day))
        if not len(frame):
            report[symbol] = {"absent": len(expected), "filled": 0, "incomplete": 0, "examples": ["no series"]}
            continue
        dates = set(frame["date"])
        first = min(dates) if dates else settings.first_minute_day
        absent = sorted(set(day_range(first, last_day)) - dates)
        in_minutes = frame[frame["date"] >= settings.first_minute_day]
        filled = sorted(in_minutes.loc[in_minutes["is_filled"], "date"])
        partial = in_minutes[(~in_minutes["is_filled"]) & ~is_complete_day(in_minutes["minutes_present"].fillna(0))]
        examples = [f"absent {d}" for d in absent[:5]] + [f"filled {d}" for d in filled[:5]] + [
            f"incomplete {d} ({m} min)" for d, m in zip(partial["date"][:5], partial["minutes_present"][:5],
                                                          strict=False)]
        report[symbol] = {"absent": len(absent), "filled": len(filled), "incomplete": len(partial),
                          "examples": examples}
    return report


def minute_stats(settings: Settings, symbols: Sequence[str] | None = None, start: dt.date | None = None,
                 end: dt.date | None = None) -> dict[str, int]:
    """Rows, duplicate (symbol, open_time) and misdated rows (``date`` not the UTC day of ``open_time``) of
    ``raw_klines_1m`` in the given symbols x [start, end] (the whole table by default)."""
    scope = {} if symbols is None else {"symbols": list(symbols), "start": start, "end": end}
    rows = lake_read.read_arrow(settings.lake, RAW_KLINES, columns=["symbol", "open_time", "date"], **scope)
    distinct = rows.group_by(["symbol", "open_time"]).aggregate([]).num_rows
    utc_day = pc.cast(pc.cast(rows.column("open_time"), pa.timestamp("ms")), pa.date32())
    misdated = pc.sum(pc.not_equal(utc_day, rows.column("date"))).as_py() or 0
    return {"rows": rows.num_rows, "duplicate_minutes": rows.num_rows - distinct, "misdated_rows": int(misdated)}
