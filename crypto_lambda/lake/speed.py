"""The speed layer's Delta tables, and reading them without Spark (delta-rs).

Four tables under ``CRYPTO_LAMBDA_HOME/lake``, specified in :data:`crypto_lambda.lake.tables.TABLES` (schemas in
:mod:`crypto_lambda.schema`):

* ``speed_klines_1m``: committed 1-minute bars, written by the bars query through Delta's streaming sink
  (append; its checkpoint and the table's ``txn`` actions make it exactly once). Same schema and
  partitioning (symbol, month) as ``raw_klines_1m``, so a reader of one reads the other; but ``month`` is a
  plain column the query sets, not a generated one (measured: with a generated column the sink loses the
  query's watermark, and no bar is ever emitted).
* ``speed_provisional_1m``: the kline stream's newest update of each minute, appended raw per micro-batch
  (one row per symbol-minute and batch) and reduced newest-wins on read (:func:`read_provisional`). Appending
  instead of rewriting keeps each batch one small commit; maintenance compacts the files.
* ``speed_gaps``: the producer's gap markers (minutes the REST refill must fetch).
* ``speed_quarantine``: every invalid record with its raw bytes and Kafka position. A table of its own, not
  the shared ``quarantine``: that one holds text (``raw`` string) and file positions, a Kafka record is bytes
  (not always UTF-8) at (topic, partition, offset), and the stream's reasons are its own.

The side query appends to the last three with :func:`crypto_lambda.lake.write.append_once` keyed by the
micro-batch id, so a re-run batch is skipped. Readers see committed versions only: a batch killed mid-write
leaves files no version references, and nobody reads them.

This module imports neither Spark nor :mod:`streaming_service` (which does): the live page and the sensors
use it. Today's daily bar follows :mod:`crypto_lambda.bars` (its pandas form).
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from crypto_lambda.bars import daily_from_minutes
from crypto_lambda.config import Settings, validate_symbol
from crypto_lambda.lake import read as lake_read
from crypto_lambda.lake.tables import SPEED_BARS, SPEED_GAPS, SPEED_PROVISIONAL, SPEED_QUARANTINE
from crypto_lambda.schema import PROVISIONAL_SCHEMA, RAW_SCHEMA


def utc_ms(series: pd.Series) -> pd.Series:
    series = pd.to_datetime(series)
    if series.dt.tz is None:
        series = series.dt.tz_localize("UTC")
    return series.dt.tz_convert("UTC").astype("datetime64[ms, UTC]")


def _symbols(symbol: str | list[str] | tuple[str, ...] | None) -> list[str] | None:
    if symbol is None:
        return None
    return [validate_symbol(s) for s in ([symbol] if isinstance(symbol, str) else symbol)]


def read_speed_bars(settings: Settings, symbol: str | list[str] | None = None, day: dt.date | None = None,
                    end: dt.date | None = None) -> pd.DataFrame:
    """Committed streaming minute bars (optionally of one symbol or a list, and of UTC days [day, end];
    ``end`` defaults to ``day``), sorted by symbol and open time."""
    frame = lake_read.read(settings.lake, SPEED_BARS, _symbols(symbol), day, end or day)
    frame["open_time"] = utc_ms(frame["open_time"])
    return frame


# -- provisional minutes -------------------------------------------------------------------------------------

def newest_wins(updates: pd.DataFrame) -> pd.DataFrame:
    """One row per (symbol, minute): the newest update by event time, a closed kline last (what the exchange
    sends last), so replays and reordering across batches give the same result."""
    ordered = updates.sort_values(["symbol", "open_time", "event_ms", "closed"], kind="stable")
    return ordered.drop_duplicates(["symbol", "open_time"], keep="last").reset_index(drop=True)


def read_provisional(settings: Settings, symbol: str | list[str] | None = None, day: dt.date | None = None,
                     end: dt.date | None = None) -> pd.DataFrame:
    """Newest kline-stream state of each minute (may include minutes already committed)."""
    frame = lake_read.read(settings.lake, SPEED_PROVISIONAL, _symbols(symbol), day, end or day)
    frame["open_time"] = utc_ms(frame["open_time"])
    return newest_wins(frame)


_DAY_COLS = ["open_time", "open", "high", "low", "close", "volume", "trades"]


def combine_day(symbol: str, day: dt.date, committed: pd.DataFrame, provisional: pd.DataFrame) -> dict | None:
    """"Today so far" of one symbol-day: its committed minutes plus provisional minutes not committed yet."""
    fresh = provisional[~provisional["open_time"].isin(committed["open_time"])]
    minutes = pd.concat([committed[_DAY_COLS], fresh[_DAY_COLS]], ignore_index=True) if len(fresh) \
        else committed[_DAY_COLS]
    bar = daily_from_minutes(minutes)
    if bar is None:
        return None
    bar.update(symbol=symbol, date=day, committed_minutes=int(len(committed)),
               provisional_minutes=int(len(fresh)),
               as_of_ms=int(provisional["event_ms"].max()) if len(provisional) else None)
    return bar


def _by_day(frame: pd.DataFrame) -> dict[tuple[str, dt.date], pd.DataFrame]:
    if not len(frame):
        return {}
    return {(s, d): part for (s, d), part in frame.groupby(["symbol", "date"], sort=False)}


def provisional_daily_bars(settings: Settings, symbols: list[str], start: dt.date,
                           end: dt.date) -> dict[tuple[str, dt.date], dict]:
    """:func:`combine_day` of every (symbol, day) in symbols x [start, end] with data; one read per table."""
    committed = _by_day(read_speed_bars(settings, symbols, start, end))
    provisional = _by_day(read_provisional(settings, symbols, start, end))
    empty_c, empty_p = RAW_SCHEMA.empty_table().to_pandas(), PROVISIONAL_SCHEMA.empty_table().to_pandas()
    bars = {}
    for key in sorted(set(committed) | set(provisional)):
        bar = combine_day(key[0], key[1], committed.get(key, empty_c), provisional.get(key, empty_p))
        if bar is not None:
            bars[key] = bar
    return bars


def provisional_daily_bar(settings: Settings, symbol: str, day: dt.date,
                          committed: pd.DataFrame | None = None) -> dict | None:
    """"Today so far" of one symbol-day (``committed``: its minute bars, if the caller has read them)."""
    if committed is None:
        committed = read_speed_bars(settings, symbol, day)
    return combine_day(symbol, day, committed, read_provisional(settings, symbol, day))


# -- gap markers and quarantine ------------------------------------------------------------------------------

def read_gaps(settings: Settings, symbol: str | None = None) -> pd.DataFrame:
    """Gap markers (symbol, from_ms, to_ms, reason): minutes in [from, to] need a REST refill."""
    frame = lake_read.read(settings.lake, SPEED_GAPS, _symbols(symbol))
    return frame.drop_duplicates(["symbol", "from_ms", "to_ms"]).sort_values(["symbol", "from_ms"]).reset_index(
        drop=True)


def gap_minutes(gaps: pd.DataFrame) -> pd.DataFrame:
    """The (symbol, minute open time) pairs the batch layer should refill for the given gap markers."""
    rows = [(g.symbol, m) for g in gaps.itertuples()
            for m in range(g.from_ms - g.from_ms % 60_000, g.to_ms + 1, 60_000)]
    frame = pd.DataFrame(rows, columns=["symbol", "open_ms"]).drop_duplicates()
    frame["open_time"] = pd.to_datetime(frame["open_ms"], unit="ms", utc=True)
    return frame.reset_index(drop=True)


def read_stream_quarantine(settings: Settings) -> pd.DataFrame:
    return lake_read.read(settings.lake, SPEED_QUARANTINE)
