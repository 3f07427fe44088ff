"""Time and partition arithmetic: the one place that converts between dates, epoch ms and partition keys.

Everything is UTC. A *day* is a `datetime.date`; its partition key is ``YYYY-MM-DD``; its bounds are the
half-open interval [00:00, next 00:00) in epoch milliseconds, matching Binance's open-time semantics.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator

MINUTE_MS = 60_000
DAY_MS = 86_400_000
MINUTES_PER_DAY = 1_440
UTC = dt.UTC
_UNIT_MS = {"m": MINUTE_MS, "h": 60 * MINUTE_MS, "d": DAY_MS, "w": 7 * DAY_MS}


def parse_day(text: str, *, what: str = "date") -> dt.date:
    """Parse ``YYYY-MM-DD`` with an error that names the offending input."""
    try:
        return dt.date.fromisoformat(text.strip())
    except (ValueError, AttributeError) as exc:
        raise ValueError(f"{what} {text!r} is not a valid date (expected YYYY-MM-DD)") from exc


def day_key(day: dt.date) -> str:
    return day.isoformat()


def today_utc() -> dt.date:
    return dt.datetime.now(UTC).date()


def yesterday_utc() -> dt.date:
    return today_utc() - dt.timedelta(days=1)


def now_ms() -> int:
    return int(dt.datetime.now(UTC).timestamp() * 1000)


def day_start_ms(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def day_bounds_ms(day: dt.date) -> tuple[int, int]:
    """[start, end) of a UTC day in epoch milliseconds."""
    start = day_start_ms(day)
    return start, start + DAY_MS


def ms_to_day(ms: int) -> dt.date:
    return dt.datetime.fromtimestamp(ms / 1000, UTC).date()


def ms_to_datetime(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, UTC)


def day_range(start: dt.date, end: dt.date) -> Iterator[dt.date]:
    """Days from start to end, both inclusive."""
    day = start
    while day <= end:
        yield day
        day += dt.timedelta(days=1)


def contiguous_runs(days: Iterable[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """Group days into inclusive (first, last) runs of consecutive days, so a set of missing days becomes
    as few range backfills as possible."""
    runs: list[tuple[dt.date, dt.date]] = []
    for day in sorted(set(days)):
        if runs and (day - runs[-1][1]).days == 1:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def normalize_epoch_to_ms(value: int) -> int:
    """Binance dumps switched from ms to µs open times on 2025-01-01; detect the unit by magnitude.

    Seconds (< 1e11, i.e. before year 5138 in s but only 1973 in ms), ms (< 1e14) and µs (< 1e17) are
    unambiguous for any plausible market timestamp.
    """
    if value < 100_000_000_000:
        return value * 1000
    if value < 100_000_000_000_000:
        return value
    if value < 100_000_000_000_000_000:
        return value // 1000
    return value // 1_000_000

def interval_ms(interval: str) -> int:
    """Length in ms of a Binance kline interval (``1m``, ``4h``, ``1d``, ``1w``); ``1M``/``1s`` refused."""
    match = re.fullmatch(r"([1-9][0-9]*)([mhdw])", interval or "")
    if not match:
        raise ValueError(f"kline interval {interval!r} is not supported (expected e.g. 1m, 1h, 1d)")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def iso_ms(ms: int) -> str:
    """ISO-8601 UTC text for log and error messages."""
    return ms_to_datetime(ms).strftime("%Y-%m-%dT%H:%M:%SZ")
