"""``realized_vol_daily``, computed: each day's variance from its 1-minute klines (Spark), and the range-based
estimate for the days older than the minute data. The formulas live in ``crypto_lambda.volatility``; Spark runs them
per (symbol, day) with ``applyInPandas``, so the asset, the forecasts and the tests share one implementation.

Both kinds of row live in the Delta table ``realized_vol_daily``, kept apart by date: rows before the first
minute day (``CRYPTO_LAMBDA_MINUTE_START``) are the range history (``minutes_used`` 0, ``rv`` null, source
``range_gk``), rows from it on belong to the daily x symbol partitions. Days before the minutes have no
partition of their own, so every run rewrites its symbols' history rows from ``daily_history_1d`` in the
same commit as its rectangle: one ``replaceWhere`` over "rectangle OR (symbols, date < first minute day)".
"""

import datetime as dt

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from crypto_lambda.batch.daily import commits_metadata
from crypto_lambda.batch.rect import rectangles
from crypto_lambda.config import Settings
from crypto_lambda.lake import read as lake_read
from crypto_lambda.lake import write as lake_write
from crypto_lambda.lake.tables import DAILY_HISTORY, RAW_KLINES, rectangle
from crypto_lambda.schema import REALIZED_VOL_SCHEMA
from crypto_lambda.volatility import MINUTES, VOL_DATASET, range_rows, realized_day

MINUTE_COLUMNS = ("symbol", "open_time", "open", "high", "low", "close")


def realized_rows(minutes: DataFrame) -> pd.DataFrame:
    """One row per (symbol, UTC day) of the given raw minutes, computed in Spark."""
    grouped = minutes.select(*MINUTE_COLUMNS).groupBy("symbol", F.to_date("open_time").alias("day"))
    return grouped.applyInPandas(realized_day, from_arrow_schema(REALIZED_VOL_SCHEMA)).toPandas()


def _history_rows(settings: Settings, symbols: tuple[str, ...]) -> pd.DataFrame:
    before = settings.first_minute_day - dt.timedelta(days=1)
    bars = lake_read.read(settings.lake, DAILY_HISTORY, symbols, end=before)
    return range_rows(bars) if len(bars) else pd.DataFrame(columns=REALIZED_VOL_SCHEMA.names)


def build_realized_vol(spark: SparkSession, settings: Settings, days_by_symbol: dict[str, list[dt.date]],
                       run_id: str | None = None) -> dict:
    """Replace the run's days (a day without minutes loses its row) and its symbols' range history, one commit
    per rectangle (one in every range run); returns counts for the asset's metadata."""
    raw = lake_write.spark_read(spark, settings.lake, RAW_KLINES)
    before = settings.first_minute_day - dt.timedelta(days=1)
    commits, history, days_written, from_minutes = [], {}, 0, 0
    for rect in rectangles(days_by_symbol):
        days = realized_rows(raw.where(rect.predicate)) if raw is not None else pd.DataFrame()
        new = tuple(s for s in rect.symbols if s not in history)  # a symbol's history once per run
        hist = _history_rows(settings, new) if new else pd.DataFrame()
        history.update({s: int((hist["symbol"] == s).sum()) if len(hist) else 0 for s in new})
        where = rect.predicate + (f" OR ({rectangle(new, end=before)})" if new else "")
        frame = pd.concat([f for f in (days, hist) if len(f)] or [pd.DataFrame(columns=REALIZED_VOL_SCHEMA.names)],
                          ignore_index=True)
        commits.append(lake_write.replace(spark, settings.lake, VOL_DATASET, frame, where=f"({where})",
                                          run_id=run_id))
        days_written += len(days)
        from_minutes += int((days["source"] == MINUTES).sum()) if len(days) else 0
    return {"days_written": days_written, "days_from_minutes": from_minutes, "history_days": history,
            **commits_metadata(commits)}
