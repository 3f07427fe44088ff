"""What the live page shows, read from the streaming consumer's Delta tables with delta-rs (no JVM, no
pyspark import).

Minute bars come from :func:`crypto_lambda.lake.speed.read_speed_bars` (one committed table version, so
a half-written micro-batch never shows up), the day's bar from :func:`provisional_daily_bar` (committed
minutes plus the kline stream's in-progress minutes). Which days exist comes from the tables' add actions
(partition values and ``date`` statistics, no Parquet opened); then only the last day or two of one symbol
are read per request, so the cost of the data read does not grow with the history the stream has written.
:class:`SnapshotCache` keeps a result for a few seconds so many open browsers cost one scan.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import time
from collections.abc import Callable

import pandas as pd

from crypto_lambda.config import Settings
from crypto_lambda.lake import read as lake_read
from crypto_lambda.lake.speed import provisional_daily_bar, read_speed_bars
from crypto_lambda.lake.tables import SPEED_BARS, SPEED_PROVISIONAL
from crypto_lambda.timeutil import MINUTE_MS

MAX_MINUTES = 1440
DEFAULT_MINUTES = 120


def _ms(value) -> int | None:
    """Timestamp-like (pandas/datetime) -> epoch milliseconds; None stays None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return int(pd.Timestamp(value).value // 1_000_000)


def _num(value) -> float | None:
    """JSON has no NaN: missing numbers become null rather than an invalid document."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value


def table_days(settings: Settings, name: str, symbol: str) -> list[dt.date]:
    """UTC days a speed table has rows for ``symbol``, from its add actions (no Parquet is opened)."""
    return sorted(day for sym, day in lake_read.snapshot_partitions(settings.lake, name) if sym == symbol)


def bar_dict(row) -> dict:
    """One minute bar as the page's JSON: epoch-ms open time plus O/H/L/C/V and trade count."""
    return {"t": _ms(row.open_time), "o": _num(row.open), "h": _num(row.high), "l": _num(row.low),
            "c": _num(row.close), "v": _num(row.volume),
            "n": None if pd.isna(row.trades) else int(row.trades)}


def daily_dict(bar: dict | None) -> dict | None:
    if bar is None:
        return None
    return {"date": bar["date"].isoformat(), "o": _num(bar["open"]), "h": _num(bar["high"]),
            "l": _num(bar["low"]), "c": _num(bar["close"]), "v": _num(bar["volume"]),
            "minutes": int(bar["minutes"]), "committed_minutes": int(bar["committed_minutes"]),
            "provisional_minutes": int(bar["provisional_minutes"]), "as_of_ms": bar.get("as_of_ms"),
            "first_minute_ms": _ms(bar["first_minute"]), "last_minute_ms": _ms(bar["last_minute"])}


def snapshot(settings: Settings, symbol: str, minutes: int = DEFAULT_MINUTES) -> dict:
    """The last ``minutes`` committed 1-minute bars of ``symbol`` plus the newest day's provisional bar.

    The provisional day is the newest day with either committed bars or in-progress minutes, so just after
    midnight UTC the page shows the new day as soon as its first kline update arrives.
    """
    days = table_days(settings, SPEED_BARS, symbol)
    wanted = days[-(minutes // MAX_MINUTES + 2):]  # enough whole days to cover ``minutes`` bars
    bars = read_speed_bars(settings, symbol, wanted[0], wanted[-1]) if wanted else None
    rows = [bar_dict(r) for r in bars.tail(minutes).itertuples(index=False)] if bars is not None else []
    day = max([*days[-1:], *table_days(settings, SPEED_PROVISIONAL, symbol)[-1:]], default=None)
    committed = bars[bars["date"] == day] if bars is not None and day in wanted else None
    daily = daily_dict(provisional_daily_bar(settings, symbol, day, committed=committed)) if day else None
    candidates = [rows[-1]["t"] + MINUTE_MS] if rows else []  # a bar is complete at its close
    if daily and daily["as_of_ms"] is not None:
        candidates.append(int(daily["as_of_ms"]))
    return {"symbol": symbol, "minutes": minutes, "bars": rows, "latest": rows[-1] if rows else None,
            "daily": daily, "data_time_ms": max(candidates, default=None)}


class SnapshotCache:
    """Results per key kept for ``ttl`` seconds; concurrent requests for the same key share one read.

    Reads run in a worker thread (pyarrow releases the GIL), so a slow scan never blocks the event loop
    that serves the page and the health check.
    """

    def __init__(self, ttl: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.clock = ttl, clock
        self._values: dict[tuple, tuple[float, dict]] = {}
        self._locks: dict[tuple, asyncio.Lock] = {}
        self.reads = 0  # how many times the loader ran (tests and /healthz use it)

    async def get(self, key: tuple, loader: Callable[[], dict]) -> dict:
        hit = self._values.get(key)
        if hit and self.clock() - hit[0] < self.ttl:
            return hit[1]
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            hit = self._values.get(key)
            if hit and self.clock() - hit[0] < self.ttl:
                return hit[1]
            value = await asyncio.get_running_loop().run_in_executor(None, loader)
            self.reads += 1
            self._values[key] = (self.clock(), value)
            if len(self._values) > 256:  # bounded: keys are (symbol, minutes) from validated input
                oldest = min(self._values, key=lambda k: self._values[k][0])
                self._values.pop(oldest, None)
                self._locks.pop(oldest, None)
            return value
