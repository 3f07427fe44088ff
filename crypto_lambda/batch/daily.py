"""Daily bars from minutes (``daily_ohlcv``), older history from the exchange's 1d klines
(``daily_history_1d``), and the complete series (``daily_filled``), each a Delta table.

Why two sources: Binance's 1d klines equal the aggregated 1-minute klines exactly (verified on the shipped
sample), so days before the first minute partition can come from one cheap 1d request instead of 1,440
minutes each. ``daily_filled`` marks each bar's ``source`` (``minutes`` or ``exchange_1d``) and flags
forward-filled days, so the choice is visible in the data.

Writes: ``daily_ohlcv`` replaces the run's rectangle in one commit (a day without minutes ends with no bar,
because the replace clears it); the per-symbol tables replace the run's symbols whole, in one commit.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from crypto_lambda.bars import daily_bars
from crypto_lambda.batch.rect import rectangles
from crypto_lambda.config import Settings
from crypto_lambda.exchange.client import BinanceClient
from crypto_lambda.lake import quarantine
from crypto_lambda.lake import read as lake_read
from crypto_lambda.lake import write as lake_write
from crypto_lambda.lake.tables import (
    DAILY_FILLED,
    DAILY_HISTORY,
    DAILY_OHLCV,
    RAW_KLINES,
    rectangle,
)
from crypto_lambda.schema import DAILY_SCHEMA, FILLED_SCHEMA, spark_type
from crypto_lambda.series import calendar, forward_fill, prefer, with_moving_averages
from crypto_lambda.timeutil import day_start_ms, yesterday_utc


def conform(frame: DataFrame, schema: pa.Schema) -> DataFrame:
    """Spark columns cast to the table's types (Delta refuses e.g. a BIGINT into an INT column)."""
    return frame.select(*[F.col(f.name).cast(spark_type(f.type)).alias(f.name) for f in schema])


def commits_metadata(commits: list[lake_write.Commit]) -> dict:
    """Version and file count of the table after the run's last commit, plus the commit count."""
    meta: dict = {"commits": len(commits)}
    for commit in commits[-1:]:
        meta.update(commit.metadata())
    return meta


def build_daily_ohlcv(spark: SparkSession, settings: Settings, days_by_symbol: dict[str, list[dt.date]],
                      run_id: str | None = None) -> dict:
    """Aggregate the run's raw partitions into one daily bar each and replace the run's rectangle with them."""
    raw = lake_write.spark_read(spark, settings.lake, RAW_KLINES)
    commits = []
    for rect in rectangles(days_by_symbol):
        bars = DAILY_SCHEMA.empty_table()
        if raw is not None:
            bars = conform(daily_bars(raw.where(rect.predicate)).withColumn("source", F.lit("minutes")),
                           DAILY_SCHEMA)
        commits.append(lake_write.replace(spark, settings.lake, DAILY_OHLCV, bars, symbols=rect.symbols,
                                          start=rect.start, end=rect.end, run_id=run_id))
    written = sum(c.rows for c in commits)
    partitions = sum(len(d) for d in days_by_symbol.values())
    return {"bars_written": written, "empty_days": partitions - written, **commits_metadata(commits)}


def build_daily_history(spark: SparkSession, client: BinanceClient, settings: Settings, symbols: list[str],
                        run_id: str | None = None) -> dict:
    """Fetch 1d klines from ``start`` up to the first minute partition; one commit for the run's symbols."""
    end = settings.first_minute_day
    counts, frames = {}, []
    for symbol in symbols:
        frame = pd.DataFrame(columns=DAILY_SCHEMA.names)
        if settings.start < end:
            result = client.klines(symbol, day_start_ms(settings.start), day_start_ms(end), interval="1d")
            good = result.good
            frame = pd.DataFrame({
                "symbol": good["symbol"], "date": good["open_time"].dt.date,
                "open": good["open"], "high": good["high"], "low": good["low"], "close": good["close"],
                "volume": good["volume"], "quote_volume": good["quote_volume"], "trades": good["trades"],
                "minutes_present": None, "source": "exchange_1d",
            })
            quarantine.append(settings.lake, "rest_1d", result.bad, run_id)
        frames.append(frame)
        counts[symbol] = len(frame)
    rows = [f for f in frames if len(f)]
    table = (pa.Table.from_pandas(pd.concat(rows, ignore_index=True)[DAILY_SCHEMA.names], schema=DAILY_SCHEMA,
                                  preserve_index=False) if rows else DAILY_SCHEMA.empty_table())
    commit = lake_write.replace(spark, settings.lake, DAILY_HISTORY, table, symbols=symbols, run_id=run_id)
    return {"history_days": counts, **commits_metadata([commit])}


def _read_daily(spark: SparkSession, settings: Settings, symbols: list[str]) -> DataFrame | None:
    """Both daily tables' rows of ``symbols``, unranked (see :func:`_preferred`)."""
    parts = [conform(df.where(rectangle(symbols)), DAILY_SCHEMA) for name in (DAILY_OHLCV, DAILY_HISTORY)
             if (df := lake_write.spark_read(spark, settings.lake, name)) is not None]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else parts[0].unionByName(parts[1])


def _preferred(frame: DataFrame) -> DataFrame:
    """One bar per day: minute-derived bars win over exchange 1d bars for the same day."""
    return prefer(frame, F.when(F.col("source") == "minutes", 0).otherwise(1))


def build_daily_filled(spark: SparkSession, settings: Settings, symbols: list[str],
                       last_day: dt.date | None = None, run_id: str | None = None) -> dict:
    """Complete series per symbol: every day from its first bar to yesterday, gaps forward-filled; the run's
    symbols are replaced whole in one commit (a symbol without bars is cleared)."""
    daily = _read_daily(spark, settings, symbols)
    last_day = last_day or yesterday_utc()
    result: DataFrame | pa.Table = FILLED_SCHEMA.empty_table()
    if daily is not None:
        # first day per symbol from the bare union (statistics-only work), not the ranked frame
        firsts = {r["symbol"]: r["first"]
                  for r in daily.groupBy("symbol").agg(F.min("date").alias("first")).collect()}
        spans = {s: (max(firsts[s], settings.start), last_day) for s in symbols if s in firsts}
        if spans:
            filled = with_moving_averages(forward_fill(_preferred(daily), calendar(spark, spans)))
            filled = filled.withColumn("source", F.when(F.col("is_filled"), F.lit("filled"))
                                       .otherwise(F.col("source")))
            result = conform(filled, FILLED_SCHEMA)
    commit = lake_write.replace(spark, settings.lake, DAILY_FILLED, result, symbols=symbols, run_id=run_id)
    written = lake_read.read(settings.lake, DAILY_FILLED, symbols, columns=["symbol", "date", "is_filled"])
    summary = {symbol: {"days": len(part), "filled": int(part["is_filled"].sum()),
                        "first": str(part["date"].min()), "last": str(part["date"].max())}
               for symbol, part in written.groupby("symbol")}
    return {"days": summary, **commits_metadata([commit])}
