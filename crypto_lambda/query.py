"""Spark SQL over the lake: every dataset is registered as a temporary view named after its asset.

Views that have no data yet are simply not registered, so a query names a missing view with Spark's own
"table or view not found" error instead of failing at start-up. The streaming 1-minute bars are read
through Spark's file-sink reader, which honours ``_spark_metadata`` (committed files only).
"""

from __future__ import annotations

import pandas as pd
from pyspark.sql import SparkSession

from crypto_lambda import lake as lk
from crypto_lambda.config import Settings

SPEED_BARS = "speed_klines_1m"
# view name -> glob under the lake (per-day datasets have a symbol folder, per-symbol ones do not)
GLOBS = {
    lk.RAW_KLINES: "*/*.parquet",
    lk.DAILY_OHLCV: "*/*.parquet",
    lk.DAILY_HISTORY: "*.parquet",
    lk.DAILY_FILLED: "*.parquet",
    lk.SPEED_DAILY: "*/*.parquet",
    lk.SERVING_DAILY: "*.parquet",
    "realized_vol_daily": "*/*.parquet",  # day files and each symbol's range history
    "forecast_metrics": "*.parquet",  # price and volatility rows, told apart by ``target``
}


def register_views(spark: SparkSession, settings: Settings) -> list[str]:
    """Register every dataset that has data; returns the registered view names."""
    names = []
    for name, pattern in GLOBS.items():
        folder = settings.lake / name
        files = [str(f) for f in sorted(folder.glob(pattern))] if folder.is_dir() else []
        if files:
            spark.read.parquet(*files).createOrReplaceTempView(name)
            names.append(name)
    speed = settings.lake / SPEED_BARS
    if (speed / "_spark_metadata").is_dir():
        spark.read.parquet(str(speed)).createOrReplaceTempView(SPEED_BARS)
        names.append(SPEED_BARS)
    return names


def run_query(spark: SparkSession, settings: Settings, sql: str, limit: int | None = None) -> pd.DataFrame:
    """Run SQL against the registered views. SQL errors become ValueError with Spark's message."""
    from pyspark.errors import PySparkException

    views = register_views(spark, settings)
    try:
        frame = spark.sql(sql)
        if limit is not None:
            frame = frame.limit(limit)
        return frame.toPandas()
    except PySparkException as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"SQL error: {first} (views: {', '.join(views) or 'none yet'})") from None


def format_frame(frame: pd.DataFrame, fmt: str) -> str:
    if fmt == "csv":
        return frame.to_csv(index=False)
    if fmt == "json":
        return frame.to_json(orient="records", date_format="iso", indent=2)
    with pd.option_context("display.max_rows", 500, "display.max_columns", 50, "display.width", 200):
        return frame.to_string(index=False) if len(frame) else "(no rows)"
