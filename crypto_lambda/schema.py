"""Every schema of the project, and the canonical 1-minute kline's validation: the one module every reader and
writer uses. Arrow schemas are the source; Spark's are derived from them (:func:`spark_ddl`), except the Kafka
events' JSON (:data:`KAFKA_EVENT_SCHEMA`), which has no table behind it.

A row is valid when no required value is NaN or infinite, its open time is aligned to the minute, not after
now + 1 minute and not before the symbol's listing floor (:func:`listing_floor_ms`), inside the period a
file declares (``period_ms``), its close time (when the source has one) is open time + interval - 1 ms,
every price is > 0, ``low <= min(open, close) <= max(open, close) <= high``, volumes >= 0 and trades >= 0.
Invalid rows are returned separately with a reason so callers can quarantine them; a bad row never takes a
good neighbour down with it. The REST path and every file reader apply these rules; the streaming parse
(``streaming_service/events.py``) applies the listing floor, close-time and trade-count rules to its events.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from crypto_lambda.config import SYMBOL_RE
from crypto_lambda.quality import OHLC_VIOLATION, ohlc_consistent
from crypto_lambda.timeutil import MINUTE_MS, day_start_ms, now_ms

PRICE_COLUMNS = ("open", "high", "low", "close")
REQUIRED_FLOATS = (*PRICE_COLUMNS, "volume")
OPTIONAL_FLOATS = ("quote_volume", "taker_buy_base", "taker_buy_quote")
KLINE_COLUMNS = (
    "symbol", "open_time", *REQUIRED_FLOATS, "quote_volume", "trades", "taker_buy_base", "taker_buy_quote",
    "source",
)

KLINE_SCHEMA = pa.schema([
    pa.field("symbol", pa.string(), nullable=False),
    pa.field("open_time", pa.timestamp("ms", tz="UTC"), nullable=False),
    pa.field("open", pa.float64(), nullable=False),
    pa.field("high", pa.float64(), nullable=False),
    pa.field("low", pa.float64(), nullable=False),
    pa.field("close", pa.float64(), nullable=False),
    pa.field("volume", pa.float64(), nullable=False),
    pa.field("quote_volume", pa.float64()),
    pa.field("trades", pa.int64()),
    pa.field("taker_buy_base", pa.float64()),
    pa.field("taker_buy_quote", pa.float64()),
    pa.field("source", pa.string(), nullable=False),
])

QUARANTINE_SCHEMA = pa.schema([
    pa.field("source_file", pa.string()),
    pa.field("symbol", pa.string()),
    pa.field("open_time_ms", pa.int64()),
    pa.field("reason", pa.string()),
    pa.field("raw", pa.string()),
])

# Rows of the minute tables (raw_klines_1m, speed_klines_1m): the kline plus its UTC ``date``.
RAW_SCHEMA = KLINE_SCHEMA.append(pa.field("date", pa.date32(), nullable=False))
# The lake's shared quarantine table: the rows of every kind of input (``kind``) that failed validation.
LAKE_QUARANTINE_SCHEMA = pa.schema([pa.field("kind", pa.string(), nullable=False), *QUARANTINE_SCHEMA,
                                    pa.field("quarantined_at", pa.timestamp("us", tz="UTC"))])


# How far ahead of the local clock an open time may be: the exchange's current minute while it is in progress,
# plus clock skew. Anything later is a bad timestamp, not market data.
FUTURE_TOLERANCE_MS = MINUTE_MS
# Conservative listing floors: no market data can predate them, so an earlier open time is a unit or parse
# error. Keyed by base-asset prefix (a longer token with the same prefix was listed later, so the floor stays
# conservative); any other symbol gets the global floor, 2010-01-01 (before the first bitcoin exchange opened
# in March 2010: Bitstamp/Kaggle BTC history from 2011-12 is still accepted).
GLOBAL_LISTING_FLOOR = dt.date(2010, 1, 1)
LISTING_FLOORS = {"ETH": dt.date(2015, 7, 30),  # Ethereum genesis block
                  "BNB": dt.date(2017, 6, 26),  # BNB ICO; Binance opened 2017-07-14
                  "SOL": dt.date(2020, 3, 16)}  # Solana mainnet beta


def listing_floor_ms(symbol: str) -> int:
    """The earliest plausible open time (epoch ms) for ``symbol``."""
    floor = next((d for prefix, d in LISTING_FLOORS.items() if symbol.startswith(prefix)), GLOBAL_LISTING_FLOOR)
    return day_start_ms(floor)


def close_time_offset_ms(interval_ms: int) -> int:
    """Binance's close time is the last millisecond of the bar: open time + interval - 1 ms (59,999 for 1m)."""
    return interval_ms - 1


@dataclass
class Validated:
    """Result of validation: typed good rows, quarantined rows, and how many duplicates collapsed."""

    good: pd.DataFrame
    bad: pd.DataFrame
    duplicates: int = 0


def empty_klines() -> pd.DataFrame:
    return KLINE_SCHEMA.empty_table().to_pandas()


def empty_quarantine() -> pd.DataFrame:
    return QUARANTINE_SCHEMA.empty_table().to_pandas()


def _raw_repr(frame: pd.DataFrame) -> pd.Series:
    if "_raw" in frame.columns:
        return frame["_raw"].astype(str)
    cols = [c for c in KLINE_COLUMNS if c in frame.columns]
    return frame[cols].astype(str).agg(",".join, axis=1) if len(frame) else pd.Series([], dtype=str)


def validate(frame: pd.DataFrame, *, source_file: str, interval_ms: int = MINUTE_MS,
             period_ms: tuple[int, int] | None = None, now: int | None = None) -> Validated:
    """Coerce a reader's frame to the canonical schema and split it into good and quarantined rows.

    ``frame`` needs ``symbol``, ``open_time_ms`` (int-like epoch ms), the OHLCV columns and ``source``;
    optional columns may be absent or hold unparseable text (which becomes a quarantine reason, not a crash).
    ``close_time_ms`` (epoch ms, NaN where the source has none) is checked against ``interval_ms``;
    ``period_ms`` = [start, end) is the span a dump file's name declares; ``now`` (epoch ms) is for tests.
    """
    n = len(frame)
    if n == 0:
        return Validated(empty_klines(), empty_quarantine())
    raw = _raw_repr(frame)
    out = pd.DataFrame(index=frame.index)
    out["symbol"] = frame["symbol"].astype(str)
    open_ms = pd.to_numeric(frame["open_time_ms"], errors="coerce")
    for col in REQUIRED_FLOATS + OPTIONAL_FLOATS:
        out[col] = pd.to_numeric(frame[col], errors="coerce") if col in frame.columns else np.nan
    trades = pd.to_numeric(frame["trades"], errors="coerce") if "trades" in frame.columns else np.nan
    out["source"] = frame["source"].astype(str) if "source" in frame.columns else "unknown"

    reason = pd.Series(pd.NA, index=frame.index, dtype="object")

    def flag(mask: pd.Series, why: str) -> None:
        reason.loc[mask & reason.isna()] = why

    flag(open_ms.isna(), "unparseable_open_time")
    flag(out[list(REQUIRED_FLOATS)].isna().any(axis=1), "nan_or_unparseable_value")
    flag(~np.isfinite(out[list(REQUIRED_FLOATS)].fillna(0)).all(axis=1), "infinite_value")
    flag((open_ms.fillna(0) % MINUTE_MS) != 0, "open_time_not_minute_aligned")
    flag(open_ms > (now_ms() if now is None else now) + FUTURE_TOLERANCE_MS, "open_time_in_future")
    floors = out["symbol"].map({s: listing_floor_ms(s) for s in out["symbol"].unique()})
    flag(open_ms < floors, "open_time_before_listing")
    if period_ms is not None:
        flag((open_ms < period_ms[0]) | (open_ms >= period_ms[1]), "outside_file_period")
    if "close_time_ms" in frame.columns:  # NaN = the source has no close time; -1 = unparseable (readers)
        close_ms = pd.to_numeric(frame["close_time_ms"], errors="coerce")
        flag(close_ms.notna() & (close_ms != open_ms + close_time_offset_ms(interval_ms)), "close_time_mismatch")
    flag((out[list(PRICE_COLUMNS)] <= 0).any(axis=1), "non_positive_price")
    flag(~ohlc_consistent(out), OHLC_VIOLATION)
    flag((out[["volume", *OPTIONAL_FLOATS]] < 0).any(axis=1), "negative_volume")
    optional = [c for c in (*OPTIONAL_FLOATS, "trades") if c in frame.columns]
    parsed = out[list(OPTIONAL_FLOATS)].assign(trades=trades)
    # an optional value may be absent (null), but text that is not a number is a bad row, not a silent null
    flag((frame[optional].notna() & parsed[optional].isna()).any(axis=1), "nan_or_unparseable_value")
    flag(~np.isfinite(parsed.fillna(0)).all(axis=1), "infinite_value")
    if isinstance(trades, pd.Series):
        flag(trades < 0, "negative_trades")
        flag(trades.notna() & ((trades % 1 != 0) | (trades >= 2**62)), "invalid_trade_count")
    symbol_ok = out["symbol"].str.fullmatch(SYMBOL_RE.pattern)
    flag(~symbol_ok, "invalid_symbol")

    bad_mask = reason.notna()
    bad = pd.DataFrame({
        "source_file": source_file,
        "symbol": out.loc[bad_mask, "symbol"],
        "open_time_ms": open_ms[bad_mask].astype("Int64"),
        "reason": reason[bad_mask].astype(str),
        "raw": raw[bad_mask],
    }).reset_index(drop=True)

    good = out.loc[~bad_mask].copy()
    good["open_time"] = pd.to_datetime(open_ms[~bad_mask].astype("int64"), unit="ms", utc=True).astype(
        "datetime64[ms, UTC]")
    good["trades"] = (trades[~bad_mask] if isinstance(trades, pd.Series) else pd.Series(
        np.nan, index=good.index)).astype("Int64")
    good = good[list(KLINE_COLUMNS)]
    good, dups = dedup(good)
    return Validated(good.reset_index(drop=True), bad, dups)


def dedup(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Collapse duplicates on (symbol, open_time) to one row (the last seen wins) and sort by time."""
    before = len(frame)
    frame = frame.drop_duplicates(subset=["symbol", "open_time"], keep="last")
    frame = frame.sort_values(["symbol", "open_time"], kind="stable")
    return frame, before - len(frame)


def to_table(frame: pd.DataFrame) -> pa.Table:
    """Canonical Arrow table for a validated frame (column order and types enforced)."""
    return pa.Table.from_pandas(frame[list(KLINE_COLUMNS)], schema=KLINE_SCHEMA, preserve_index=False)


def merge_klines(*frames: pd.DataFrame) -> pd.DataFrame:
    """Union validated frames; later frames win on (symbol, open_time) collisions."""
    parts = [f for f in frames if f is not None and len(f)]
    if not parts:
        return empty_klines()
    return dedup(pd.concat(parts, ignore_index=True))[0].reset_index(drop=True)


def _day_bar_fields() -> list[pa.Field]:
    """symbol, date and OHLCV: the leading columns every daily dataset shares."""
    return [
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("date", pa.date32(), nullable=False),
        *(pa.field(name, pa.float64()) for name in REQUIRED_FLOATS),
    ]


# Daily bars: one row per (symbol, UTC date). ``minutes_present`` is null for bars that came from the
# exchange's 1d klines (no minute data behind them); ``source`` says where each bar came from.
DAILY_SCHEMA = pa.schema([
    *_day_bar_fields(),
    pa.field("quote_volume", pa.float64()),
    pa.field("trades", pa.int64()),
    pa.field("minutes_present", pa.int32()),
    pa.field("source", pa.string()),
])

FILLED_SCHEMA = pa.schema([
    *DAILY_SCHEMA,
    pa.field("is_filled", pa.bool_(), nullable=False),
    pa.field("ma7", pa.float64()),
    pa.field("ma30", pa.float64()),
])

# The speed layer's daily bar: ``minutes_covered`` of 1,440, provisional for today or an incomplete day.
SPEED_DAILY_SCHEMA = pa.schema([
    *_day_bar_fields(),
    pa.field("trades", pa.int64()),
    pa.field("minutes_covered", pa.int32()),
    pa.field("is_provisional", pa.bool_()),
    pa.field("source", pa.string()),
])

# The serving view: one row per symbol and day, ``source`` in {batch, speed, filled}.
SERVING_SCHEMA = pa.schema([
    *_day_bar_fields(),
    pa.field("minutes_present", pa.int32()),
    pa.field("source", pa.string()),
    pa.field("is_provisional", pa.bool_()),
    pa.field("is_filled", pa.bool_()),
    pa.field("ma7", pa.float64()),
    pa.field("ma30", pa.float64()),
])

# Daily variance per (symbol, UTC date), ``crypto_lambda.volatility``: realized from 1-minute returns
# (``rv``, ``rvol`` = sqrt, ``minutes_used``) and Garman-Klass from the day's bar (``range_var``); ``variance``
# and ``source`` (``minutes`` | ``range_gk``) are the estimate a forecast should use for that day.
REALIZED_VOL_SCHEMA = pa.schema([
    pa.field("symbol", pa.string(), nullable=False),
    pa.field("date", pa.date32(), nullable=False),
    pa.field("rv", pa.float64()),
    pa.field("rvol", pa.float64()),
    pa.field("minutes_used", pa.int32()),
    pa.field("range_var", pa.float64()),
    pa.field("variance", pa.float64()),
    pa.field("source", pa.string()),
])


# -- the speed layer ------------------------------------------------------------------------------------------

# speed_provisional_1m: each micro-batch's newest kline-stream update of a minute (reduced newest-wins on read).
PROVISIONAL_SCHEMA = pa.schema([
    ("symbol", pa.string()), ("open_time", pa.timestamp("ms", tz="UTC")), ("open", pa.float64()),
    ("high", pa.float64()), ("low", pa.float64()), ("close", pa.float64()), ("volume", pa.float64()),
    ("trades", pa.int64()), ("closed", pa.bool_()), ("event_ms", pa.int64()), ("received_ms", pa.int64()),
    pa.field("date", pa.date32(), nullable=False),
])
# speed_gaps: the producer's gap markers, minutes [from_ms, to_ms] the REST refill must fetch.
GAP_SCHEMA = pa.schema([
    ("symbol", pa.string()), ("from_ms", pa.int64()), ("to_ms", pa.int64()), ("reason", pa.string()),
    ("event_ms", pa.int64()), ("topic", pa.string()), ("partition", pa.int32()), ("offset", pa.int64()),
])
# speed_quarantine: an invalid Kafka record, as bytes (not always UTF-8) at its Kafka position.
STREAM_QUARANTINE_SCHEMA = pa.schema([
    ("topic", pa.string()), ("partition", pa.int32()), ("offset", pa.int64()),
    ("kafka_ts", pa.timestamp("ms", tz="UTC")), ("reason", pa.string()), ("raw", pa.binary()),
    ("batch_id", pa.int64()),
])

# A Kafka record's value (Spark DDL for ``from_json``): a Binance trade or kline event, or a producer gap marker.
KAFKA_EVENT_SCHEMA = (
    "e string, E long, s string, t long, p string, q string, T long, m boolean, "
    "k struct<t:long, T:long, s:string, i:string, f:long, L:long, o:string, c:string, h:string, l:string, "
    "v:string, n:long, x:boolean, q:string, V:string, Q:string>, "
    "`from` long, `to` long, reason string"
)
# The same struct with unambiguous names: Spark resolves field references case-insensitively by default, so
# the parsed struct is cast (positionally) to this before any field is referenced.
KAFKA_EVENT_NAMED_SCHEMA = (
    "struct<e:string, event_ms:long, s:string, trade_id:long, p:string, q:string, trade_ms:long, m:boolean, "
    "k:struct<open_ms:long, close_ms:long, s:string, i:string, first_id:long, last_id:long, o:string, "
    "c:string, h:string, l:string, v:string, n:long, x:boolean, quote:string, taker_base:string, "
    "taker_quote:string>, `from`:long, `to`:long, reason:string>"
)


# -- Spark's form of the Arrow schemas ------------------------------------------------------------------------

_SPARK_TYPES = {pa.string(): "STRING", pa.float64(): "DOUBLE", pa.int64(): "BIGINT", pa.int32(): "INT",
                pa.bool_(): "BOOLEAN", pa.date32(): "DATE", pa.binary(): "BINARY"}


def spark_type(arrow: pa.DataType) -> str:
    """The Spark SQL type of an Arrow type (every timestamp is Spark's TIMESTAMP: UTC instants)."""
    if pa.types.is_timestamp(arrow):
        return "TIMESTAMP"
    try:
        return _SPARK_TYPES[arrow]
    except KeyError:
        raise TypeError(f"no Spark SQL type for {arrow}") from None


def spark_ddl(schema: pa.Schema, *, exclude: tuple[str, ...] = (), not_null: bool = False) -> str:
    """``schema`` as a Spark DDL column list (``spark.read.schema``, ``CREATE TABLE``), without ``exclude``;
    ``not_null``: NOT NULL where the Arrow field says so (a table definition; a reader's schema has none)."""
    return ", ".join(f"`{f.name}` {spark_type(f.type)}{' NOT NULL' if not_null and not f.nullable else ''}"
                     for f in schema if f.name not in exclude)
