"""Every dataset of the lake, once: its name, schema (from :mod:`crypto_lambda.schema`), partition columns and
key, in :data:`TABLES`; the batch, speed, serving and forecast tables alike. Other modules import the names.

Each dataset is a Delta Lake table at ``CRYPTO_LAMBDA_HOME/lake/<name>``, written by Spark (with Delta's jars
from ``jvm/pom.xml``) and read either by Spark or, where a JVM is too heavy (live page, status, sensors,
tests), by delta-rs (:mod:`crypto_lambda.lake.read`). This module imports neither, so both sides share it.

Partitioning is for file size, not for lookups (Delta's statistics prune files by ``date`` anyway):
* minute tables by ``symbol`` and ``month``: a month of one symbol's minutes is 43,200 rows, ~1.5 MB zstd,
  against 62 KB for the old file per day (14 years of BTC: 170 files instead of 5,077). ``month`` is a
  generated column (``trunc(date, 'MM')``), so a filter on ``date`` prunes months too and writers never set it;
* daily tables by ``symbol`` only: 14 years of daily bars are ~5,100 rows, one file per symbol after OPTIMIZE.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from crypto_lambda.config import validate_symbol
from crypto_lambda.schema import (
    DAILY_SCHEMA,
    FILLED_SCHEMA,
    GAP_SCHEMA,
    LAKE_QUARANTINE_SCHEMA,
    PROVISIONAL_SCHEMA,
    RAW_SCHEMA,
    REALIZED_VOL_SCHEMA,
    SERVING_SCHEMA,
    SPEED_DAILY_SCHEMA,
    STREAM_QUARANTINE_SCHEMA,
    spark_ddl,
)

RAW_KLINES = "raw_klines_1m"
DAILY_OHLCV = "daily_ohlcv"
DAILY_HISTORY = "daily_history_1d"
DAILY_FILLED = "daily_filled"
SPEED_DAILY = "speed_daily"
SERVING_DAILY = "serving_daily"
REALIZED_VOL = "realized_vol_daily"
QUARANTINE = "quarantine"
# The speed layer's tables (written by streaming_service.consumer, read by crypto_lambda.lake.speed).
SPEED_BARS = "speed_klines_1m"
SPEED_GAPS = "speed_gaps"
SPEED_PROVISIONAL = "speed_provisional_1m"
SPEED_QUARANTINE = "speed_quarantine"
# The forecasts' tables (written by crypto_lambda.forecast.outputs), one set of rows per symbol.
FORECASTS = "forecasts"  # the newest champion forecast per symbol
FORECAST_METRICS = "forecast_metrics"  # the newest metrics of both targets; also the name of the query view
VOL_FORECASTS = "volatility_forecasts"  # the newest volatility forecast per symbol

MONTH = "month"
MONTH_EXPR = "trunc(date, 'MM')"

# Properties every table is created with. Deletion vectors stay off: delta-rs 1.6 refuses to read a table with
# that reader feature (checked by tests/integration/test_lake.py), and the live page and sensors read with it.
TABLE_PROPERTIES: dict[str, str] = {
    "delta.enableDeletionVectors": "false",
    # Files VACUUM may delete once no version younger than this references them (time travel window).
    "delta.deletedFileRetentionDuration": "interval 7 days",
    "delta.logRetentionDuration": "interval 30 days",
}


@dataclass(frozen=True)
class Table:
    """One lake dataset. ``schema`` excludes the generated ``month``; ``None`` = the writer's frame decides
    (forecast outputs: their columns follow the models, a new metric or model family adds a column, and Delta
    merges new columns in, ``mergeSchema``)."""

    name: str
    schema: pa.Schema | None
    partition_by: tuple[str, ...] = ("symbol",)
    key: tuple[str, ...] = ("symbol", "date")
    # False: ``month`` is a plain column the writer sets (``trunc(date, 'MM')``). For tables Delta's streaming
    # sink writes: with a generated column the sink re-plans each batch, and the query's watermark and input
    # metrics never see its rows (the watermark stays at 0, an append-mode aggregation emits nothing).
    generated_month: bool = True
    # Delta writes a checkpoint (a Spark job, synchronously after the commit) every this many commits. The
    # speed layer's tables commit every trigger, so they checkpoint every 100: with 10, every tenth
    # micro-batch of the bars query took 2.4 s longer (6,000-trade batches: p90 1.68 s -> 1.45 s, max
    # 2.81 s -> 2.04 s with 100; 2 cores). Reads replay at most that many small JSON commits.
    checkpoint_interval: int = 10

    @property
    def by_month(self) -> bool:
        return MONTH in self.partition_by

    def properties(self) -> dict[str, str]:
        """The Delta table properties this table is created with."""
        return {**TABLE_PROPERTIES, "delta.checkpointInterval": str(self.checkpoint_interval)}


TABLES: dict[str, Table] = {t.name: t for t in (
    Table(RAW_KLINES, RAW_SCHEMA, ("symbol", MONTH), ("symbol", "open_time")),
    Table(DAILY_OHLCV, DAILY_SCHEMA),
    Table(DAILY_HISTORY, DAILY_SCHEMA),
    Table(DAILY_FILLED, FILLED_SCHEMA),
    Table(SPEED_DAILY, SPEED_DAILY_SCHEMA),
    Table(SERVING_DAILY, SERVING_SCHEMA),
    Table(REALIZED_VOL, REALIZED_VOL_SCHEMA),
    Table(QUARANTINE, LAKE_QUARANTINE_SCHEMA, ("kind",), ()),
    # The speed layer's. Every trigger commits to these: checkpoints every 100 commits (Table.checkpoint_interval).
    # speed_klines_1m: raw_klines_1m's schema and partitioning, so a reader of one reads the other; ``month``
    # stored, not generated: the streaming sink cannot write a generated column and keep the query's watermark.
    Table(SPEED_BARS, RAW_SCHEMA, ("symbol", MONTH), ("symbol", "open_time"), generated_month=False,
          checkpoint_interval=100),
    Table(SPEED_PROVISIONAL, PROVISIONAL_SCHEMA, ("symbol", MONTH), ("symbol", "open_time", "event_ms"),
          checkpoint_interval=100),
    Table(SPEED_GAPS, GAP_SCHEMA, ("symbol",), ("symbol", "from_ms", "to_ms")),
    Table(SPEED_QUARANTINE, STREAM_QUARANTINE_SCHEMA, ("topic",), ("topic", "partition", "offset")),
    # The forecasts': no schema, the writer's frame decides (see Table.schema).
    Table(FORECASTS, None, ("symbol",), ("symbol", "date")),
    Table(FORECAST_METRICS, None, ("symbol",), ("symbol", "target", "model", "horizon")),
    Table(VOL_FORECASTS, None, ("symbol",), ("symbol", "date")),
)}


def table(name: str) -> Table:
    try:
        return TABLES[name]
    except KeyError:
        raise ValueError(f"unknown lake table {name!r}; known: {', '.join(sorted(TABLES))}") from None


def table_path(lake: Path, name: str) -> Path:
    """``lake/<name>``; the name must be a known table (no path tricks through a dataset name)."""
    table(name)
    return lake / name


def is_table(path: Path) -> bool:
    return (path / "_delta_log").is_dir() and any((path / "_delta_log").glob("*.json"))


def ddl_columns(spec: Table) -> str:
    """Column list of ``CREATE TABLE`` for ``spec`` (NOT NULL where the Arrow field says so)."""
    assert spec.schema is not None
    cols = [spark_ddl(spec.schema, not_null=True)]
    if spec.by_month:
        cols.append(f"`{MONTH}` DATE GENERATED ALWAYS AS ({MONTH_EXPR})" if spec.generated_month
                    else f"`{MONTH}` DATE NOT NULL")
    return ", ".join(cols)


def rectangle(symbols: list[str] | tuple[str, ...] | None = None, start: dt.date | None = None,
              end: dt.date | None = None) -> str:
    """The SQL predicate of a Dagster run's partitions: symbols x [start, end] (inclusive), either optional."""
    parts = []
    if symbols:
        parts.append("symbol IN (" + ", ".join(f"'{validate_symbol(s)}'" for s in symbols) + ")")
    if start is not None:
        parts.append(f"date >= DATE'{start.isoformat()}'")
    if end is not None:
        parts.append(f"date <= DATE'{end.isoformat()}'")
    return " AND ".join(parts) or "true"
