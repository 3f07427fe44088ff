"""Serving layer: precedence batch (complete) > speed > batch (incomplete) > forward fill, provenance in
``source``, MAs over the merged series; and the query command over the resulting views."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from crypto_lambda import lake as lk
from crypto_lambda.config import load_settings
from crypto_lambda.schema import FILLED_SCHEMA, SPEED_DAILY_SCHEMA
from crypto_lambda.timeutil import today_utc, yesterday_utc

SAMPLE = Path(__file__).resolve().parent.parent / "crypto_lambda" / "sample" / "daily" / "BTCUSDT_1d.csv"
N = 40


def real_bars(last: dt.date) -> pd.DataFrame:
    """The last N real Binance 1d bars, re-dated to end on ``last``."""
    frame = pd.read_csv(SAMPLE).iloc[-N - 2:-2].reset_index(drop=True)
    frame["date"] = [last - dt.timedelta(days=N - 1 - i) for i in range(N)]
    frame["symbol"] = "BTCUSDT"
    return frame


@pytest.fixture()
def layered(lambda_home, monkeypatch):
    monkeypatch.setenv("CRYPTO_LAMBDA_SYMBOLS", "BTCUSDT")
    settings = load_settings()
    last = yesterday_utc()
    bars = real_bars(last)
    days = list(bars["date"])
    missing_batch, incomplete, speed_only_gap = days[-3], days[-5], days[-8]
    batch = bars.assign(quote_volume=None, trades=None, minutes_present=1440, source="minutes", is_filled=False,
                        ma7=None, ma30=None)
    batch.loc[batch["date"] == incomplete, "minutes_present"] = 700
    batch = batch[~batch["date"].isin([missing_batch, speed_only_gap])]
    lk.write_frame(batch[list(FILLED_SCHEMA.names)], lk.symbol_path(settings.lake, lk.DAILY_FILLED, "BTCUSDT"),
                   FILLED_SCHEMA)
    speed_rows = bars[bars["date"].isin([missing_batch, incomplete, days[-1]])].copy()
    speed_rows["close"] = speed_rows["close"] * 1.0001  # distinguishable from the batch bar
    speed_rows = pd.concat([speed_rows, bars.iloc[[-1]].assign(date=today_utc())])
    for row in speed_rows.itertuples(index=False):
        frame = pd.DataFrame([{"symbol": "BTCUSDT", "date": row.date, "open": row.open, "high": row.high * 1.001,
                               "low": row.low, "close": row.close, "volume": row.volume, "trades": 5,
                               "minutes_covered": 1440 if row.date < today_utc() else 600,
                               "is_provisional": row.date >= today_utc(), "source": "speed"}])
        lk.write_frame(frame, lk.partition_path(settings.lake, lk.SPEED_DAILY, "BTCUSDT", row.date),
                       SPEED_DAILY_SCHEMA)
    return settings, bars, {"missing_batch": missing_batch, "incomplete": incomplete, "gap": speed_only_gap}


def test_merge_precedence_and_provenance(layered, spark):
    from crypto_assets.assets.serving.daily import build_serving_daily, read_serving

    settings, bars, days = layered
    meta = build_serving_daily(spark, settings, ["BTCUSDT"])
    served = read_serving(settings, "BTCUSDT").set_index("date")
    assert list(served.index) == list(bars["date"]) + [today_utc()]
    source = served["source"]
    assert source[days["missing_batch"]] == "speed"
    assert source[days["incomplete"]] == "speed"  # a complete speed bar beats an incomplete batch bar
    assert source[days["gap"]] == "filled" and served.loc[days["gap"], "is_filled"]
    assert source[bars["date"].iloc[-1]] == "batch"  # complete batch beats speed on the same day
    assert source[today_utc()] == "speed" and served.loc[today_utc(), "is_provisional"]
    previous = served.index[served.index.get_loc(days["gap"]) - 1]
    assert served.loc[days["gap"], "close"] == served.loc[previous, "close"]
    assert meta["days_by_source"]["BTCUSDT"]["filled"] == 1
    assert (served["ma7"] - served["close"].rolling(7).mean()).abs().max() < 1e-6


def test_batch_replaces_a_day_served_from_speed(layered, spark):
    from crypto_assets.assets.serving.daily import build_serving_daily, read_serving

    settings, bars, days = layered
    build_serving_daily(spark, settings, ["BTCUSDT"])
    assert read_serving(settings, "BTCUSDT").set_index("date").loc[days["missing_batch"], "source"] == "speed"
    path = lk.symbol_path(settings.lake, lk.DAILY_FILLED, "BTCUSDT")
    batch = pd.read_parquet(path)
    row = bars[bars["date"] == days["missing_batch"]].assign(
        quote_volume=None, trades=None, minutes_present=1440, source="minutes", is_filled=False, ma7=None, ma30=None)
    table = pa.Table.from_pandas(pd.concat([batch, row[list(FILLED_SCHEMA.names)]]).sort_values("date"),
                                 schema=FILLED_SCHEMA, preserve_index=False)
    lk.atomic_write_table(table, path)
    build_serving_daily(spark, settings, ["BTCUSDT"])
    served = read_serving(settings, "BTCUSDT").set_index("date")
    assert served.loc[days["missing_batch"], "source"] == "batch"
    expected = bars.set_index("date").loc[days["missing_batch"], "close"]
    assert served.loc[days["missing_batch"], "close"] == expected


def test_query_views_and_sql_errors(layered, spark, capsys):
    from crypto_assets.assets.serving.daily import build_serving_daily
    from crypto_lambda.cli import main

    build_serving_daily(spark, layered[0], ["BTCUSDT"])
    assert main(["query", "SELECT source, count(*) AS n FROM serving_daily GROUP BY source ORDER BY source",
                 "--format", "json"]) == 0
    rows = {r["source"]: r["n"] for r in json.loads(capsys.readouterr().out)}
    assert rows == {"batch": N - 3, "filled": 1, "speed": 3}  # 40 - 2 absent - 1 incomplete
    assert main(["query", "SELECT * FROM no_such_view"]) == 2
    err = capsys.readouterr().err
    assert "SQL error" in err and "serving_daily" in err
    assert main(["query", "SELEC 1"]) == 2
