"""The bar rule's two forms (crypto_lambda.bars) agree: Spark and pandas, trades -> minute and minute -> day, on
the shipped sample, and both equal what Binance recorded."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from crypto_lambda import readers
from crypto_lambda.bars import bars_from_trades, daily_bars, daily_from_minutes, minute_bars
from crypto_lambda.config import SAMPLE_1M, SAMPLE_DAILY
from crypto_lambda.schema import KLINE_SCHEMA
from crypto_lambda.timeutil import MINUTES_PER_DAY
from replay_exchange.recording import Recording
from replay_exchange.streams import LOT, MinuteTable, StreamKnobs, minute_trades

pytestmark = pytest.mark.timeout(300)

OHLC = ("open", "high", "low", "close")


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)


@pytest.fixture(scope="module")
def sample_minutes() -> pd.DataFrame:
    """The shipped 1-minute sample through the project's reader (validated, canonical schema)."""
    frames = [readers.load(path).good for path in sorted(SAMPLE_1M.glob("*.feather"))]
    return pd.concat(frames, ignore_index=True)


def binance_daily(symbol: str) -> pd.DataFrame:
    frame = pd.read_csv(SAMPLE_DAILY / f"{symbol}_1d.csv")
    return frame.assign(date=pd.to_datetime(frame["timestamp"]).dt.date).set_index("date")


def test_spark_and_pandas_daily_bars_agree_and_equal_binance_on_complete_days(spark, sample_minutes):
    minutes = pa.Table.from_pandas(sample_minutes, schema=KLINE_SCHEMA, preserve_index=False)
    by_spark = daily_bars(spark.createDataFrame(minutes)).toPandas().set_index(["symbol", "date"]).sort_index()
    groups = sample_minutes.groupby(["symbol", sample_minutes["open_time"].dt.date])
    assert len(by_spark) == groups.ngroups == 2 * 91
    complete = 0
    for (symbol, day), part in groups:
        spark_bar, pandas_bar = by_spark.loc[(symbol, day)], daily_from_minutes(part)
        assert tuple(spark_bar[c] for c in OHLC) == tuple(pandas_bar[c] for c in OHLC), (symbol, day)
        assert close(spark_bar["volume"], pandas_bar["volume"]), (symbol, day)
        assert spark_bar["minutes_present"] == pandas_bar["minutes"] == len(part)
        if pandas_bar["minutes"] < MINUTES_PER_DAY:  # the sample's last day ends mid-day
            continue
        recorded = binance_daily(symbol).loc[day]
        assert tuple(pandas_bar[c] for c in OHLC) == tuple(recorded[c] for c in OHLC), (symbol, day)
        assert close(pandas_bar["volume"], recorded["volume"]), (symbol, day)
        complete += 1
    assert complete == 2 * 90


def synthetic_trades(recording: Recording, minutes: int) -> pd.DataFrame:
    """The replay exchange's trades for ``minutes`` recorded minutes of each symbol, with a Kafka position (two
    partitions) and one trade delivered twice (the producer is at-least-once)."""
    rows = []
    for n, symbol in enumerate(recording.symbols):
        table = MinuteTable(recording, symbol, StreamKnobs(trades_per_minute=30))
        for i in range(1000, 1000 + minutes):
            rows += [(symbol, t, tid, price, lots / LOT, maker, n % 2)
                     for t, tid, price, lots, maker in minute_trades(table, i)]
    frame = pd.DataFrame(rows, columns=["symbol", "trade_time_ms", "trade_id", "price", "qty", "buyer_maker",
                                        "partition"])
    frame = pd.concat([frame, frame.iloc[[len(frame) // 2]]], ignore_index=True)
    return frame.assign(offset=np.arange(len(frame)))


def test_spark_and_pandas_minute_bars_agree_and_reproduce_the_recorded_minutes(spark, recording):
    from pyspark.sql import functions as F

    trades = synthetic_trades(recording, minutes=180)
    events = spark.createDataFrame(trades).withColumn("trade_ts", F.timestamp_millis("trade_time_ms"))
    by_spark = (minute_bars(events).withColumn("open_ms", F.unix_millis("open_time")).drop("open_time", "date")
                .toPandas().sort_values(["symbol", "open_ms"]).reset_index(drop=True))
    by_pandas = bars_from_trades(trades)
    by_pandas = by_pandas.assign(open_ms=by_pandas["open_time"].astype("int64"))
    assert len(by_spark) == len(by_pandas) == 2 * 180
    assert (by_spark["source"] == "stream").all()
    for col in ("symbol", "open_ms", *OHLC, "trades"):
        assert by_spark[col].tolist() == by_pandas[col].tolist(), col
    for col in ("volume", "quote_volume", "taker_buy_base", "taker_buy_quote"):
        assert all(map(close, by_spark[col], by_pandas[col])), col
    assert by_pandas["trades"].sum() == len(trades) - 1  # the duplicate counted once
    for symbol, bars in by_pandas.groupby("symbol"):  # the synthesised trades rebuild each recorded minute
        recorded = recording.recorded_minutes(symbol)
        index = np.searchsorted(recorded.open_ms, bars["open_ms"].to_numpy())
        for col in OHLC:
            assert bars[col].tolist() == recorded.cols[col][index].tolist(), (symbol, col)
        assert all(map(close, bars["volume"], recorded.cols["volume"][index])), symbol
