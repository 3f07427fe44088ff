"""Daily series on Spark DataFrames, shared by the batch and serving layers: the calendar of every day, forward
fill over missing days, trailing moving averages, and one row per day when several sources have it.

Pure functions from DataFrame to DataFrame: no I/O, no session creation. The daily bars themselves are built
by :mod:`crypto_lambda.bars`.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F


def calendar(spark: SparkSession, symbols_first_last: dict[str, tuple[dt.date, dt.date]]) -> DataFrame:
    """Every (symbol, date) from each symbol's first to last day, inclusive."""
    rows = [(s, first, last) for s, (first, last) in symbols_first_last.items()]
    frame = spark.createDataFrame(rows, "symbol string, first date, last date")
    return frame.select("symbol", F.explode(F.sequence("first", "last")).alias("date"))


def forward_fill(daily: DataFrame, days: DataFrame) -> DataFrame:
    """Left-join bars onto the calendar; missing days take the previous close as O/H/L/C with zero volume,
    and are flagged ``is_filled`` so nobody mistakes them for traded days."""
    joined = days.join(daily, ["symbol", "date"], "left")
    w = Window.partitionBy("symbol").orderBy("date").rowsBetween(Window.unboundedPreceding, 0)
    prev_close = F.last("close", ignorenulls=True).over(w)
    filled = F.col("close").isNull()
    out = joined.withColumn("is_filled", filled).withColumn("_prev_close", prev_close)
    for col in ("open", "high", "low", "close"):
        out = out.withColumn(col, F.coalesce(F.col(col), F.col("_prev_close")))
    out = out.withColumn("volume", F.coalesce("volume", F.lit(0.0)))
    out = out.withColumn("minutes_present", F.coalesce("minutes_present", F.lit(0)))
    return out.drop("_prev_close")


def with_moving_averages(daily: DataFrame, windows: tuple[int, ...] = (7, 30)) -> DataFrame:
    """Trailing simple moving averages of close (``ma7``, ``ma30``); null until a full window exists."""
    out = daily
    for n in windows:
        w = Window.partitionBy("symbol").orderBy("date").rowsBetween(-(n - 1), 0)
        count = F.count("close").over(w)
        out = out.withColumn(f"ma{n}", F.when(count >= n, F.avg("close").over(w)))
    return out


def prefer(frame: DataFrame, rank: Column, keys: tuple[str, ...] = ("symbol", "date")) -> DataFrame:
    """Keep one row per key: the one with the lowest ``rank`` (ties by source name, so the result is
    deterministic; ``orderBy().dropDuplicates()`` is not guaranteed to keep the first row)."""
    w = Window.partitionBy(*keys).orderBy(rank, F.col("source"))
    return frame.withColumn("_n", F.row_number().over(w)).filter("_n = 1").drop("_n")
