"""Bar building, once: trades -> 1-minute bars -> daily bars, in Spark and in pandas side by side.

The rule (both forms follow it; tests/integration/test_bars.py checks they agree on the shipped sample):

* **trades -> 1-minute bar**, per (symbol, minute of the trade time): open = price of the first trade, close =
  of the last, high/low = max/min price, volume = sum of quantities, quote volume = sum of price x quantity,
  trades = count, taker buy base/quote = the same sums over trades whose buyer was the taker. "First" and
  "last" are by :data:`TRADE_ORDER` (trade time, then trade id; the Spark form then Kafka partition and
  offset), so a replay gives identical bars. A trade id seen twice for a symbol counts once (the producer is
  at-least-once).
* **1-minute -> daily bar**, per (symbol, UTC date of the open time): open = open of the first minute by open
  time, close = close of the last, high = max, low = min, volume, quote volume and trades summed,
  ``minutes_present`` = number of minutes. (symbol, open_time) is the key of every minute table, so there is
  no tie. This is how Binance builds its 1d klines: the two agree to the last digit on O/H/L/C.

The Spark forms (:func:`minute_bars`, :func:`daily_bars`) run in the batch and speed layers; the pandas forms
(:func:`bars_from_trades`, :func:`daily_from_minutes`) in the live page and the sensors, which must not start
a JVM: pyspark is imported inside the Spark functions only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from crypto_lambda.schema import DAILY_SCHEMA
from crypto_lambda.timeutil import MINUTE_MS

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

# Columns of a 1-minute bar built from trades (Spark adds ``source`` and ``date``, as raw_klines_1m has them).
MINUTE_BAR_COLUMNS = ("symbol", "open_time", "open", "high", "low", "close", "volume", "quote_volume", "trades",
                      "taker_buy_base", "taker_buy_quote")
# Columns of a daily bar built from minutes: daily_ohlcv's, less ``source`` (the caller says where from).
DAILY_COLUMNS = tuple(name for name in DAILY_SCHEMA.names if name != "source")
# Which trade is first/last in its minute (pandas has no Kafka position; its trade ids are unique per symbol).
TRADE_ORDER = ("trade_time_ms", "trade_id")
SPARK_TRADE_ORDER = ("trade_ts", "trade_id", "partition", "offset")
DEDUP_KEY = ("symbol", "trade_id")


# -- trades -> 1-minute bars ---------------------------------------------------------------------------------

def minute_bars(trades: DataFrame, watermark: str = "2 minutes", dedup: bool = True) -> DataFrame:
    """1-minute bars from valid trades (symbol, trade_ts, trade_id, price, qty, buyer_maker, partition,
    offset): event-time windows with a watermark, so a streaming query can append them; a static DataFrame
    gives the same bars."""
    from pyspark.sql import functions as F

    trades = trades.withWatermark("trade_ts", watermark)
    if dedup:  # a static DataFrame (tests, a re-read) has no watermark state: a plain dropDuplicates
        trades = (trades.dropDuplicatesWithinWatermark(list(DEDUP_KEY)) if trades.isStreaming
                  else trades.dropDuplicates(list(DEDUP_KEY)))
    order = F.struct(*SPARK_TRADE_ORDER)
    price, qty, taker = F.col("price"), F.col("qty"), ~F.col("buyer_maker")
    bars = trades.groupBy(F.window("trade_ts", "1 minute").alias("w"), "symbol").agg(
        F.min_by("price", order).alias("open"), F.max("price").alias("high"), F.min("price").alias("low"),
        F.max_by("price", order).alias("close"), F.sum("qty").alias("volume"),
        F.sum(price * qty).alias("quote_volume"), F.count(F.lit(1)).alias("trades"),
        F.sum(F.when(taker, qty).otherwise(0.0)).alias("taker_buy_base"),
        F.sum(F.when(taker, price * qty).otherwise(0.0)).alias("taker_buy_quote"),
    )
    return bars.select(
        *[F.col("w.start").alias(c) if c == "open_time" else c for c in MINUTE_BAR_COLUMNS],
        F.lit("stream").alias("source"),
        F.to_date("w.start").alias("date"))  # a DATE, as in raw_klines_1m (the session zone is UTC)


def bars_from_trades(trades: pd.DataFrame) -> pd.DataFrame:
    """The same rule in pandas; ``trades`` has symbol, trade_time_ms, trade_id, price, qty and optionally
    buyer_maker (without it the taker columns are left out)."""
    frame = trades.sort_values(["symbol", *TRADE_ORDER], kind="stable")
    frame = frame.drop_duplicates(list(DEDUP_KEY), keep="first")
    notional = frame["price"] * frame["qty"]
    frame = frame.assign(open_ms=frame["trade_time_ms"] - frame["trade_time_ms"] % MINUTE_MS, notional=notional)
    sums = {"quote_volume": ("notional", "sum")}
    if "buyer_maker" in frame:
        taker = ~frame["buyer_maker"].astype(bool)
        frame = frame.assign(taker_base=frame["qty"].where(taker, 0.0), taker_quote=notional.where(taker, 0.0))
        sums.update(taker_buy_base=("taker_base", "sum"), taker_buy_quote=("taker_quote", "sum"))
    out = frame.groupby(["symbol", "open_ms"], sort=True).agg(
        open=("price", "first"), high=("price", "max"), low=("price", "min"), close=("price", "last"),
        volume=("qty", "sum"), trades=("trade_id", "count"), **sums).reset_index()
    out["open_time"] = pd.to_datetime(out.pop("open_ms"), unit="ms", utc=True).astype("datetime64[ms, UTC]")
    return out[[c for c in MINUTE_BAR_COLUMNS if c in out]]


# -- 1-minute -> daily bars ----------------------------------------------------------------------------------

def daily_agg_columns(time_col: str = "open_time") -> list[Column]:
    """Aggregations turning minute rows into one daily bar (use with groupBy(symbol, date))."""
    from pyspark.sql import functions as F

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
    from pyspark.sql import functions as F

    with_date = minutes.withColumn("date", F.to_date(F.col(time_col)))
    return with_date.groupBy("symbol", "date").agg(*daily_agg_columns(time_col)).select(*DAILY_COLUMNS)


def daily_from_minutes(minutes: pd.DataFrame) -> dict | None:
    """The same rule in pandas, for one symbol-day's minute bars: a dict of open, high, low, close, volume,
    minutes, trades (None without the column), first_minute and last_minute; None when there are none."""
    if minutes is None or not len(minutes):
        return None
    minutes = minutes.sort_values("open_time", kind="stable")
    return {"open": float(minutes["open"].iloc[0]), "high": float(minutes["high"].max()),
            "low": float(minutes["low"].min()), "close": float(minutes["close"].iloc[-1]),
            "volume": float(minutes["volume"].sum()), "minutes": int(len(minutes)),
            "trades": int(minutes["trades"].fillna(0).sum()) if "trades" in minutes else None,
            "first_minute": minutes["open_time"].iloc[0], "last_minute": minutes["open_time"].iloc[-1]}
