"""``serving_daily``: per symbol and day the batch bar when the batch day is complete, else the speed bar,
else the (incomplete) batch bar, else a forward fill — with ``source`` (batch | speed | filled) and MA7/MA30
recomputed over the merged series by the same Spark functions the batch layer uses.

Batch wins because it is rebuilt from the exchange's REST history, which is complete and final; the speed
bar is what we know before that. Once the batch layer backfills a day that was served from speed, the next
materialization serves it from batch.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from crypto_lambda import lake as lk
from crypto_lambda.config import MIN_DAY_COMPLETENESS, Settings
from crypto_lambda.ohlcv import calendar, forward_fill, prefer, with_moving_averages
from crypto_lambda.schema import SERVING_SCHEMA
from crypto_lambda.timeutil import MINUTES_PER_DAY, yesterday_utc

BAR_COLS = ("symbol", "date", "open", "high", "low", "close", "volume", "minutes_present", "source",
            "is_provisional", "rank")


def _batch_bars(spark: SparkSession, settings: Settings, symbols: list[str]) -> DataFrame | None:
    files = [str(p) for s in symbols if (p := lk.symbol_path(settings.lake, lk.DAILY_FILLED, s)).exists()]
    if not files:
        return None
    frame = spark.read.parquet(*files).filter(~F.col("is_filled"))
    complete = (F.col("source") == "exchange_1d") | (
        F.col("minutes_present") >= F.lit(MIN_DAY_COMPLETENESS * MINUTES_PER_DAY))
    return frame.select(
        "symbol", "date", "open", "high", "low", "close", "volume", "minutes_present",
        F.lit("batch").alias("source"), F.lit(False).alias("is_provisional"),
        F.when(complete, 0).otherwise(2).alias("rank"))


def _speed_bars(spark: SparkSession, settings: Settings, symbols: list[str]) -> DataFrame | None:
    files = []
    for symbol in symbols:
        folder = settings.lake / lk.SPEED_DAILY / symbol
        files += [str(p) for p in sorted(folder.glob("*.parquet"))] if folder.is_dir() else []
    if not files:
        return None
    frame = spark.read.parquet(*files)
    return frame.select(
        "symbol", "date", "open", "high", "low", "close", "volume",
        F.col("minutes_covered").alias("minutes_present"), F.lit("speed").alias("source"), "is_provisional",
        F.lit(1).alias("rank"))


def merged_series(spark: SparkSession, batch: DataFrame | None, speed: DataFrame | None) -> DataFrame | None:
    """Union of batch and speed bars, one per (symbol, date) by precedence, on a full calendar from each
    symbol's first bar to the later of yesterday and its last bar, gaps forward-filled, MAs recomputed."""
    parts = [p.select(*BAR_COLS) for p in (batch, speed) if p is not None]
    if not parts:
        return None
    bars = parts[0] if len(parts) == 1 else parts[0].unionByName(parts[1])
    chosen = prefer(bars, F.col("rank")).drop("rank")
    spans = {r["symbol"]: (r["first"], max(r["last"], yesterday_utc())) for r in chosen.groupBy("symbol").agg(
        F.min("date").alias("first"), F.max("date").alias("last")).collect()}
    filled = with_moving_averages(forward_fill(chosen, calendar(spark, spans)))
    return filled.withColumn("source", F.when(F.col("is_filled"), F.lit("filled")).otherwise(F.col("source"))) \
        .withColumn("is_provisional", F.coalesce("is_provisional", F.lit(False)))


def build_serving_daily(spark: SparkSession, settings: Settings, symbols: list[str]) -> dict:
    merged = merged_series(spark, _batch_bars(spark, settings, symbols), _speed_bars(spark, settings, symbols))
    if merged is None:
        return {"days_by_source": {}}
    result = merged.orderBy("symbol", "date").toPandas()
    counts: dict[str, dict[str, int]] = {}
    for symbol, part in result.groupby("symbol"):
        table = pa.Table.from_pandas(part[list(SERVING_SCHEMA.names)], schema=SERVING_SCHEMA, preserve_index=False)
        lk.atomic_write_table(table, lk.symbol_path(settings.lake, lk.SERVING_DAILY, symbol))
        counts[symbol] = {k: int(v) for k, v in part["source"].value_counts().items()}
        counts[symbol]["last_day"] = str(part["date"].max())
    return {"days_by_source": counts}


def read_serving(settings: Settings, symbol: str) -> pd.DataFrame | None:
    import pyarrow.parquet as pq

    path = lk.symbol_path(settings.lake, lk.SERVING_DAILY, symbol)
    return pq.read_table(path).to_pandas() if path.exists() else None
