"""``serving_daily``: per symbol and day the batch bar when the batch day is complete, else the speed bar,
else the (incomplete) batch bar, else a forward fill — with ``source`` (batch | speed | filled) and MA7/MA30
recomputed over the merged series by the same Spark functions the batch layer uses.

Batch wins because it is rebuilt from the exchange's REST history, which is complete and final; the speed
bar is what we know before that. Once the batch layer backfills a day that was served from speed, the next
materialization serves it from batch.

Inputs and output are Delta tables (``daily_filled``, ``speed_daily`` -> ``serving_daily``). A run rewrites
its symbols' whole series in ONE ``replaceWhere`` commit (``symbol IN (...)``): readers see the previous series
or the new one, and time travel (``read_serving(..., as_of=)``) returns what was served before.
:func:`speed_batch_differences` measures where the two layers disagree on a day both saw complete.
"""

from __future__ import annotations

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from crypto_lambda.config import Settings
from crypto_lambda.lake import read as lake_read
from crypto_lambda.lake import write as lake_write
from crypto_lambda.lake.tables import DAILY_FILLED, SERVING_DAILY, SPEED_DAILY
from crypto_lambda.quality import complete_day_col
from crypto_lambda.schema import SERVING_SCHEMA
from crypto_lambda.series import calendar, forward_fill, prefer, with_moving_averages
from crypto_lambda.timeutil import yesterday_utc

AGREEMENT_FIELDS = ("open", "high", "low", "close", "volume")
BAR_COLS = ("symbol", "date", "open", "high", "low", "close", "volume", "minutes_present", "source",
            "is_provisional", "rank")


def _rows_of(spark: SparkSession, settings: Settings, name: str, symbols: list[str]) -> DataFrame | None:
    """The table's rows of ``symbols`` (partition-pruned), None when the table does not exist yet."""
    frame = lake_write.spark_read(spark, settings.lake, name)
    return None if frame is None else frame.filter(F.col("symbol").isin(symbols))


def _batch_bars(spark: SparkSession, settings: Settings, symbols: list[str]) -> DataFrame | None:
    frame = _rows_of(spark, settings, DAILY_FILLED, symbols)
    if frame is None:
        return None
    frame = frame.filter(~F.col("is_filled"))
    complete = (F.col("source") == "exchange_1d") | complete_day_col(F.col("minutes_present"))
    return frame.select(
        "symbol", "date", "open", "high", "low", "close", "volume", "minutes_present",
        F.lit("batch").alias("source"), F.lit(False).alias("is_provisional"),
        F.when(complete, 0).otherwise(2).alias("rank"))


def _speed_bars(spark: SparkSession, settings: Settings, symbols: list[str]) -> DataFrame | None:
    frame = _rows_of(spark, settings, SPEED_DAILY, symbols)
    if frame is None:
        return None
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


def build_serving_daily(spark: SparkSession, settings: Settings, symbols: list[str],
                        run_id: str | None = None) -> dict:
    """Merge and write the series of ``symbols`` in one commit; days by source per symbol and the commit.

    A symbol with neither batch nor speed bars loses its served rows (its inputs vanished)."""
    merged = merged_series(spark, _batch_bars(spark, settings, symbols), _speed_bars(spark, settings, symbols))
    result = (pd.DataFrame(columns=SERVING_SCHEMA.names) if merged is None
              else merged.select(*SERVING_SCHEMA.names).orderBy("symbol", "date").toPandas())
    commit = lake_write.replace(spark, settings.lake, SERVING_DAILY, result, symbols=symbols, run_id=run_id)
    counts: dict[str, dict[str, int | str]] = {}
    for symbol, part in result.groupby("symbol"):
        counts[symbol] = {k: int(v) for k, v in part["source"].value_counts().items()}
        counts[symbol]["last_day"] = str(part["date"].max())
    return {"days_by_source": counts, "commit": commit}


def read_serving(settings: Settings, symbol: str, as_of: int | str | None = None) -> pd.DataFrame | None:
    """One symbol's served series (delta-rs, no JVM), newest or ``as_of`` a table version or ISO timestamp;
    None when nothing is served for it."""
    frame = lake_read.read(settings.lake, SERVING_DAILY, [symbol], as_of=as_of)
    return frame if len(frame) else None


def speed_batch_differences(settings: Settings) -> pd.DataFrame:
    """Per (symbol, date) with a complete batch bar and a complete speed bar: relative difference by field."""
    symbols = list(settings.symbols)
    batch = lake_read.read(settings.lake, DAILY_FILLED, symbols)
    speed = lake_read.read(settings.lake, SPEED_DAILY, symbols)
    if batch.empty or speed.empty:
        return pd.DataFrame(columns=["symbol", "date", *AGREEMENT_FIELDS])
    batch = batch[(~batch["is_filled"]) & (batch["source"] == "minutes")]
    speed = speed[~speed["is_provisional"].fillna(False).astype(bool)]
    both = batch.merge(speed, on=["symbol", "date"], suffixes=("_batch", "_speed"))
    for field in AGREEMENT_FIELDS:
        both[field] = ((both[f"{field}_speed"] - both[f"{field}_batch"]).abs()
                       / both[f"{field}_batch"].abs().where(both[f"{field}_batch"] != 0))
    return both[["symbol", "date", *AGREEMENT_FIELDS]].reset_index(drop=True)
