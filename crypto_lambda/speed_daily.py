"""``speed_daily``: one bar per (day, symbol) from the streaming service's committed minute bars plus the
in-progress (provisional) minutes, so today's bar exists seconds after a tick. The bars are computed in pandas
(a day is at most 1,440 rows; the two speed tables are read once per run with delta-rs) and written as one
``replaceWhere`` commit of the run's rectangle (symbols x [first day, last day]) to the Delta table
``speed_daily``: a (symbol, day) of the rectangle without data loses its stale bar in the same commit."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from crypto_lambda.config import Settings
from crypto_lambda.lake import SPEED_DAILY
from crypto_lambda.lake import read as lake_read
from crypto_lambda.lake import write as lake_write
from crypto_lambda.lake.speed import provisional_daily_bars
from crypto_lambda.quality import is_full_day
from crypto_lambda.timeutil import today_utc


def speed_row(bar: dict) -> dict:
    """A provisional daily bar -> a ``speed_daily`` row: provisional while the day runs or misses minutes."""
    covered = int(bar["minutes"])
    return {"symbol": bar["symbol"], "date": bar["date"], "open": bar["open"], "high": bar["high"],
            "low": bar["low"], "close": bar["close"], "volume": bar["volume"], "trades": bar["trades"],
            "minutes_covered": covered, "is_provisional": bar["date"] >= today_utc() or not is_full_day(covered),
            "source": "speed"}


def build_speed_daily(spark, settings: Settings, days_by_symbol: dict[str, list[dt.date]],
                      run_id: str | None = None) -> dict:
    """Rebuild the run's partitions. A run's partitions need not fill their bounding rectangle (one sensor
    run is one partition; a backfill is a range x symbols, i.e. the rectangle); the rectangle's other days
    are rebuilt from the same tables too, which gives them the bar a run of their own would write."""
    symbols = sorted(s for s, days in days_by_symbol.items() if days)
    if not symbols:
        return {"bars_written": 0, "provisional_bars": 0, "stale_bars_removed": 0}
    start = min(min(days_by_symbol[s]) for s in symbols)
    end = max(max(days_by_symbol[s]) for s in symbols)
    rows = [speed_row(bar) for bar in provisional_daily_bars(settings, symbols, start, end).values()]
    before = lake_read.read(settings.lake, SPEED_DAILY, symbols, start, end, columns=["symbol", "date"])
    fresh = {(r["symbol"], r["date"]) for r in rows}
    removed = sum((s, d) not in fresh for s, d in zip(before["symbol"], before["date"], strict=True))
    commit = lake_write.replace(spark, settings.lake, SPEED_DAILY, pd.DataFrame(rows), symbols=symbols,
                                start=start, end=end, run_id=run_id)
    return {"bars_written": len(rows), "provisional_bars": sum(r["is_provisional"] for r in rows),
            "stale_bars_removed": int(removed), **commit.metadata()}
