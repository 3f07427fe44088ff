"""The quality rules, each written once: when a day of minutes is complete, when it is full, and when a bar's
prices are consistent. Each rule has a pandas/scalar form and, where Spark applies it, a Spark-column form
beside it; :mod:`crypto_lambda.coverage` applies them to what the lake holds (missing days, gap report).

pyspark is imported only inside the Spark forms: the live page, the sensors and the status command use the
pandas forms without a JVM.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pandas as pd

from crypto_lambda.timeutil import MINUTES_PER_DAY

if TYPE_CHECKING:
    from pyspark.sql import Column

# A day with fewer than 99 % of its 1,440 minutes is incomplete: a gap for checks, not a batch-quality bar.
MIN_DAY_COMPLETENESS = 0.99
COMPLETE_DAY_MINUTES = math.ceil(MIN_DAY_COMPLETENESS * MINUTES_PER_DAY)  # 1,426
# Every minute of the day: the stricter rule of :func:`is_full_day`.
FULL_DAY_MINUTES = MINUTES_PER_DAY
OHLC_VIOLATION = "ohlc_violation"  # the quarantine reason of a bar that breaks :func:`ohlc_consistent`


def is_complete_day(minutes):
    """True where a day has enough of its minutes (>= 99 %) for its bar to count as the day's bar: the batch
    bar then wins over the speed bar, its realized variance is used, and the day is no gap to repair.
    Works on a scalar or a pandas Series; a missing count (NaN) is incomplete."""
    return minutes >= COMPLETE_DAY_MINUTES


def complete_day_col(minutes: Column) -> Column:
    """:func:`is_complete_day` as a Spark column expression (a null count is not complete)."""
    from pyspark.sql import functions as F

    return minutes >= F.lit(COMPLETE_DAY_MINUTES)


def is_full_day(minutes):
    """True where a day has all 1,440 minutes. Stricter than :func:`is_complete_day` on purpose: it decides
    whether anything is left to fetch for an imported day (a 99 % day would keep its holes forever) and
    whether a speed bar is final rather than provisional (a stream that dropped minutes must not present its
    bar as final, nor be compared with the batch bar as one). Scalar or pandas Series."""
    return minutes >= FULL_DAY_MINUTES


def ohlc_consistent(frame: pd.DataFrame) -> pd.Series:
    """``low <= min(open, close) <= max(open, close) <= high`` per row of a frame with those columns (NaN in
    open/close is skipped as pandas' min/max do; a NaN low/high fails)."""
    body = frame[["open", "close"]]
    return (frame["low"] <= body.min(axis=1)) & (body.max(axis=1) <= frame["high"])


def ohlc_consistent_col(open_: Column, high: Column, low: Column, close: Column) -> Column:
    """:func:`ohlc_consistent` as a Spark column expression (``least``/``greatest`` skip nulls like pandas)."""
    from pyspark.sql import functions as F

    return (low <= F.least(open_, close)) & (F.greatest(open_, close) <= high)


def bar_violations(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of a daily-bar frame that break :func:`ohlc_consistent`, have a negative volume, or hold NaN."""
    if frame.empty:
        return frame
    bad = ~(ohlc_consistent(frame) & (frame["volume"] >= 0))
    bad |= frame[["open", "high", "low", "close", "volume"]].isna().any(axis=1)
    return frame[bad]
