"""The Delta lake's write and read contract, on real Spark + Delta and delta-rs."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from crypto_lambda.lake import read as lr
from crypto_lambda.lake import tables as lt
from crypto_lambda.lake import write as lw

D1, D2, D3 = dt.date(2025, 5, 30), dt.date(2025, 5, 31), dt.date(2025, 6, 1)


def bars(symbol: str, days: list[dt.date], close: float) -> pd.DataFrame:
    return pd.DataFrame({"symbol": symbol, "date": days, "open": 1.0, "high": 2.0, "low": 0.5, "close": close,
                         "volume": 10.0, "quote_volume": 20.0, "trades": 5, "minutes_present": 1440,
                         "source": "minutes"})


def test_replace_is_one_idempotent_commit_with_time_travel(spark, tmp_path):
    lake = tmp_path / "lake"
    first = lw.replace(spark, lake, lt.DAILY_OHLCV, bars("BTCUSDT", [D1, D2, D3], 1.0), symbols=["BTCUSDT"],
                       start=D1, end=D3, run_id="run-1")
    lw.replace(spark, lake, lt.DAILY_OHLCV, bars("ETHUSDT", [D1, D2], 9.0), symbols=["ETHUSDT"], start=D1, end=D2)
    again = lw.replace(spark, lake, lt.DAILY_OHLCV, bars("BTCUSDT", [D2], 2.0), symbols=["BTCUSDT"],
                       start=D2, end=D2, run_id="run-2")
    assert again.version == first.version + 2 and again.rows == 1 and again.files_in_table >= 1
    now = lr.read(lake, lt.DAILY_OHLCV)
    assert len(now) == 5 and not now.duplicated(["symbol", "date"]).any()  # one copy after the re-run
    assert now.set_index(["symbol", "date"]).loc[("BTCUSDT", D2), "close"] == 2.0
    assert now.set_index(["symbol", "date"]).loc[("BTCUSDT", D1), "close"] == 1.0  # outside: untouched
    before = lr.read(lake, lt.DAILY_OHLCV, symbols=["BTCUSDT"], as_of=first.version)
    assert before["close"].tolist() == [1.0, 1.0, 1.0]
    log = lr.history(lake, lt.DAILY_OHLCV)
    assert [e["version"] for e in log[:3]] == [again.version, again.version - 1, first.version]
    assert log[0]["user_metadata"]["run_id"] == "run-2" and log[0]["operation"] == "WRITE"
    assert lr.days(lake, lt.DAILY_OHLCV, "ETHUSDT") == [D1, D2]


def test_replace_refuses_rows_outside_its_rectangle(spark, tmp_path):
    lake = tmp_path / "lake"
    lw.replace(spark, lake, lt.DAILY_OHLCV, bars("BTCUSDT", [D1], 1.0), symbols=["BTCUSDT"], start=D1, end=D1)
    with pytest.raises(Exception, match="(?i)replaceWhere|does not conform|DELTA_REPLACE_WHERE"):
        lw.replace(spark, lake, lt.DAILY_OHLCV, bars("BTCUSDT", [D2], 5.0), symbols=["BTCUSDT"], start=D1, end=D1)
    assert lr.read(lake, lt.DAILY_OHLCV)["close"].tolist() == [1.0]


def test_empty_frame_clears_the_rectangle(spark, tmp_path):
    lake = tmp_path / "lake"
    lw.replace(spark, lake, lt.DAILY_OHLCV, bars("BTCUSDT", [D1, D2], 1.0), symbols=["BTCUSDT"], start=D1, end=D2)
    lw.replace(spark, lake, lt.DAILY_OHLCV, bars("BTCUSDT", [], 1.0), symbols=["BTCUSDT"], start=D2, end=D2)
    assert lr.days(lake, lt.DAILY_OHLCV, "BTCUSDT") == [D1]


def test_append_once_skips_a_replayed_transaction(spark, tmp_path):
    lake = tmp_path / "lake"
    rows = pd.DataFrame({"kind": "stream", "source_file": "t", "symbol": "BTCUSDT", "open_time_ms": 1,
                         "reason": "bad", "raw": "x", "quarantined_at": pd.Timestamp.now(tz="UTC")}, index=[0])
    first = lw.append_once(spark, lake, lt.QUARANTINE, rows, app_id="test-stream", txn_version=7)
    replay = lw.append_once(spark, lake, lt.QUARANTINE, rows, app_id="test-stream", txn_version=7)
    assert first.version is not None and replay.version is None
    assert len(lr.read(lake, lt.QUARANTINE)) == 1


def test_month_partitions_and_delta_rs_reads_spark_tables(spark, tmp_path):
    lake = tmp_path / "lake"
    minutes = pd.date_range("2025-05-31 23:58", periods=4, freq="min", tz="UTC")
    frame = pd.DataFrame({"symbol": "BTCUSDT", "open_time": minutes, "open": 1.0, "high": 1.0, "low": 1.0,
                          "close": 1.0, "volume": 1.0, "quote_volume": None, "trades": 1, "taker_buy_base": None,
                          "taker_buy_quote": None, "source": "test", "date": minutes.date})
    lw.replace(spark, lake, lt.RAW_KLINES, frame, symbols=["BTCUSDT"], start=D2, end=D3)
    table = lr.open_table(lake, lt.RAW_KLINES)
    assert table.metadata().partition_columns == ["symbol", "month"]
    assert len(table.file_uris()) == 2  # May and June
    assert "deletionVectors" not in (table.protocol().reader_features or [])
    got = lr.read(lake, lt.RAW_KLINES, start=D3)
    assert got["open_time"].tolist() == list(minutes[2:]) and "month" not in got.columns
    assert spark.read.format("delta").load(str(lake / lt.RAW_KLINES)).where("date = '2025-06-01'").count() == 2
