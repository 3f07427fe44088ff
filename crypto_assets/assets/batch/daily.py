"""Daily bars from minutes (``daily_ohlcv``), older history from the exchange's 1d klines
(``daily_history_1d``), and the complete series (``daily_filled``).

Why two sources: Binance's 1d klines equal the aggregated 1-minute klines exactly (verified on the shipped
sample), so days before the first minute partition can come from one cheap 1d request instead of 1,440
minutes each. ``daily_filled`` marks each bar's ``source`` (``minutes`` or ``exchange_1d``) and flags
forward-filled days, so the choice is visible in the data.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from crypto_lambda import lake as lk
from crypto_lambda.config import Settings
from crypto_lambda.exchange.client import BinanceClient
from crypto_lambda.ohlcv import calendar, daily_bars, forward_fill, prefer, with_moving_averages
from crypto_lambda.schema import DAILY_SCHEMA, FILLED_SCHEMA
from crypto_lambda.timeutil import day_start_ms, yesterday_utc


def _write_daily_rows(frame: pd.DataFrame, schema: pa.Schema, path: Path) -> None:
    table = pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)
    lk.atomic_write_table(table, path)


def build_daily_ohlcv(spark: SparkSession, settings: Settings, days_by_symbol: dict[str, list[dt.date]]) -> dict:
    """Aggregate the raw partitions of this run into one daily bar each (one Spark job for all of them)."""
    paths = [lk.partition_path(settings.lake, lk.RAW_KLINES, s, d) for s, days in days_by_symbol.items()
             for d in days]
    existing = [str(p) for p in paths if p.exists()]
    bars = pd.DataFrame(columns=DAILY_SCHEMA.names)
    if existing:
        bars = daily_bars(spark.read.parquet(*existing)).toPandas()
    bars["source"] = "minutes"
    have = set()
    for row in bars.itertuples(index=False):
        have.add((row.symbol, row.date))
        path = lk.partition_path(settings.lake, lk.DAILY_OHLCV, row.symbol, row.date)
        _write_daily_rows(pd.DataFrame([row._asdict()]), DAILY_SCHEMA, path)
    removed = 0
    for symbol, days in days_by_symbol.items():
        for day in days:  # a day with no minutes has no bar: remove a stale one so fills stay honest
            path = lk.partition_path(settings.lake, lk.DAILY_OHLCV, symbol, day)
            if (symbol, day) not in have and path.exists():
                path.unlink()
                removed += 1
    return {"bars_written": len(bars), "empty_days": sum(len(d) for d in days_by_symbol.values()) - len(bars),
            "stale_bars_removed": removed}


def build_daily_history(client: BinanceClient, settings: Settings, symbols: list[str]) -> dict:
    """Fetch 1d klines from ``start`` up to the first minute partition, one file per symbol."""
    end = settings.first_minute_day
    counts = {}
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
            lk.write_quarantine(settings.quarantine, "rest_1d", result.bad)
        _write_daily_rows(frame, DAILY_SCHEMA, lk.symbol_path(settings.lake, lk.DAILY_HISTORY, symbol))
        counts[symbol] = len(frame)
    return {"history_days": counts}


def _read_daily(spark: SparkSession, settings: Settings, symbols: list[str]) -> DataFrame | None:
    files = []
    for symbol in symbols:
        folder = settings.lake / lk.DAILY_OHLCV / symbol
        files += [str(p) for p in sorted(folder.glob("*.parquet"))] if folder.is_dir() else []
        hist = lk.symbol_path(settings.lake, lk.DAILY_HISTORY, symbol)
        if hist.exists():
            files.append(str(hist))
    if not files:
        return None
    spark_schema = "symbol string, date date, open double, high double, low double, close double, " \
                   "volume double, quote_volume double, trades bigint, minutes_present int, source string"
    frame = spark.read.schema(spark_schema).parquet(*files)
    # minute-derived bars win over exchange 1d bars for the same day
    return prefer(frame, F.when(F.col("source") == "minutes", 0).otherwise(1))


def build_daily_filled(spark: SparkSession, settings: Settings, symbols: list[str],
                       last_day: dt.date | None = None) -> dict:
    """Complete series per symbol: every day from its first bar to yesterday, gaps forward-filled."""
    daily = _read_daily(spark, settings, symbols)
    last_day = last_day or yesterday_utc()
    summary: dict[str, dict] = {}
    if daily is None:
        return {"days": {}}
    firsts = {r["symbol"]: r["first"] for r in daily.groupBy("symbol").agg(F.min("date").alias("first")).collect()}
    spans = {s: (max(firsts[s], settings.start), last_day) for s in symbols if s in firsts}
    if not spans:
        return {"days": {}}
    filled = with_moving_averages(forward_fill(daily, calendar(spark, spans)))
    result = filled.orderBy("symbol", "date").toPandas()
    for symbol, part in result.groupby("symbol"):
        part = part.assign(source=part["source"].where(~part["is_filled"], "filled"))
        _write_daily_rows(part, FILLED_SCHEMA, lk.symbol_path(settings.lake, lk.DAILY_FILLED, symbol))
        summary[symbol] = {"days": len(part), "filled": int(part["is_filled"].sum()),
                           "first": str(part["date"].min()), "last": str(part["date"].max())}
    return {"days": summary}


def read_filled(settings: Settings, symbol: str) -> pd.DataFrame | None:
    path = lk.symbol_path(settings.lake, lk.DAILY_FILLED, symbol)
    return pq.read_table(path).to_pandas() if path.exists() else None
