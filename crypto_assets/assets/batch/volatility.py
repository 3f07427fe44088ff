"""``realized_vol_daily``: each day's variance from its 1-minute klines (Spark), and the range-based estimate
for the days older than the minute data. The formulas live in ``crypto_lambda.volatility``; Spark runs them
per (symbol, day) with ``applyInPandas``, so the asset, the forecasts and the tests share one implementation.

Why the history file: days before the first minute partition have no partition of their own (the partitions
are the minute days), so every run rewrites each of its symbols' range-based rows from ``daily_history_1d``
into ``lake/realized_vol_daily/<SYMBOL>/history.parquet`` (one cheap file, idempotent).
"""

import datetime as dt
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from dagster_pyspark import PySparkResource
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from crypto_assets.partitions import SYMBOL_DIM, daily_symbol_partitions, days_by_symbol
from crypto_assets.resources import LakeResource
from crypto_lambda import lake as lk
from crypto_lambda.config import Settings
from crypto_lambda.schema import REALIZED_VOL_SCHEMA
from crypto_lambda.volatility import HISTORY_FILE, MINUTES, VOL_DATASET, range_rows, realized_day

MINUTE_COLUMNS = ("symbol", "open_time", "open", "high", "low", "close")


def _write(frame: pd.DataFrame, path: Path) -> None:
    table = pa.Table.from_pandas(frame[REALIZED_VOL_SCHEMA.names], schema=REALIZED_VOL_SCHEMA, preserve_index=False)
    lk.atomic_write_table(table, path)


def realized_rows(spark: SparkSession, paths: list[str]) -> pd.DataFrame:
    """One row per (symbol, UTC day) of the given raw minute files, computed in Spark."""
    minutes = spark.read.parquet(*paths).select(*MINUTE_COLUMNS)
    grouped = minutes.groupBy("symbol", F.to_date("open_time").alias("day"))
    return grouped.applyInPandas(realized_day, from_arrow_schema(REALIZED_VOL_SCHEMA)).toPandas()


def build_realized_vol(spark: SparkSession, settings: Settings, days_by_symbol: dict[str, list[dt.date]]) -> dict:
    """Write the run's day files (removing a stale one where the day has no minutes any more) and each symbol's
    range history; returns counts for the asset's metadata."""
    paths = [lk.partition_path(settings.lake, lk.RAW_KLINES, s, d) for s, days in days_by_symbol.items()
             for d in days]
    existing = [str(p) for p in paths if p.exists()]
    rows = realized_rows(spark, existing) if existing else pd.DataFrame(columns=REALIZED_VOL_SCHEMA.names)
    have = set()
    for (symbol, day), row in rows.groupby(["symbol", "date"]):
        have.add((symbol, day))
        _write(row, lk.partition_path(settings.lake, VOL_DATASET, symbol, day))
    removed = 0
    for symbol, days in days_by_symbol.items():
        for day in days:
            path = lk.partition_path(settings.lake, VOL_DATASET, symbol, day)
            if (symbol, day) not in have and path.exists():
                path.unlink()
                removed += 1
    history = {}
    for symbol in days_by_symbol:
        hist_path = lk.symbol_path(settings.lake, lk.DAILY_HISTORY, symbol)
        bars = pq.read_table(hist_path).to_pandas() if hist_path.exists() else pd.DataFrame()
        bars = bars[bars["date"] < settings.first_minute_day] if len(bars) else bars
        if len(bars):
            _write(range_rows(bars), lk.symbol_file(settings.lake, VOL_DATASET, symbol, HISTORY_FILE))
        history[symbol] = len(bars)
    return {"days_written": len(rows), "days_from_minutes": int((rows["source"] == MINUTES).sum()),
            "stale_days_removed": removed, "history_days": history}


def build_volatility_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    """The asset (daily x symbol like the minutes, one run and one Spark session per range)."""
    @dg.asset(
        name=VOL_DATASET, partitions_def=daily_symbol_partitions(settings),
        backfill_policy=dg.BackfillPolicy.single_run(), group_name="batch", kinds={"parquet", "spark"},
        deps=[lk.RAW_KLINES, dg.AssetDep(lk.DAILY_HISTORY, partition_mapping=(
            dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name=SYMBOL_DIM)))],
        description="Each day's realized variance from its 1-minute log returns (sum r^2, sqrt, minutes used) "
                    "with the Garman-Klass range estimate beside it; range-only rows for older days (source).")
    def realized_vol_daily(context: dg.AssetExecutionContext, lake: LakeResource,
                           pyspark: PySparkResource) -> dg.MaterializeResult:
        meta = build_realized_vol(pyspark.spark_session, lake.settings(), days_by_symbol(context.partition_keys))
        context.log.info(f"realized_vol_daily: {meta}")
        return dg.MaterializeResult(metadata={k: dg.MetadataValue.json(v) if isinstance(v, dict) else v
                                              for k, v in meta.items()})

    return [realized_vol_daily]
