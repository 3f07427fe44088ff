"""OHLCV and indicator math on Spark DataFrames, shared by the batch, speed and serving layers.

Pure functions from DataFrame to DataFrame: no I/O, no session creation. The daily bar of a set of minutes
is open = first open by open_time, close = last close, high = max, low = min, volumes summed — exactly how
Binance builds its 1d klines, so the two agree to the last digit on O/H/L/C.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

DAILY_COLUMNS = (
    "symbol", "date", "open", "high", "low", "close", "volume", "quote_volume", "trades", "minutes_present",
)


def daily_agg_columns(time_col: str = "open_time") -> list[Column]:
    """Aggregations turning minute rows into one daily bar (use with groupBy(symbol, date))."""
    t = F.col(time_col)
    return [
        F.min_by("open", t).alias("open"),
        F.max("high").alias("high"),
        F.min("low").alias("low"),
        F.max_by("close", t).alias("close"),
        F.sum("volume").alias("volume"),
        F.sum("quote_volume").alias("quote_volume"),
        F.sum("trades").alias("trades"),
        F.count(F.lit(1)).cast("int").alias("minutes_present"),
    ]


def daily_bars(minutes: DataFrame, time_col: str = "open_time") -> DataFrame:
    """1-minute klines -> one row per (symbol, UTC date). Expects a UTC session time zone."""
    with_date = minutes.withColumn("date", F.to_date(F.col(time_col)))
    return with_date.groupBy("symbol", "date").agg(*daily_agg_columns(time_col)).select(*DAILY_COLUMNS)


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
