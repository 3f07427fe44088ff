"""Serving layer: precedence batch (complete) > speed > batch (incomplete) > forward fill, provenance in
``source``, MAs over the merged series; and the query command over the resulting views."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from crypto_lambda.config import (
    SAMPLE_DIR,  # noqa: I001
    load_settings,
)
from crypto_lambda.lake import read as lr
from crypto_lambda.lake import tables as lt
from crypto_lambda.lake import write as lw
from crypto_lambda.timeutil import today_utc, yesterday_utc

SAMPLE = SAMPLE_DIR / "daily" / "BTCUSDT_1d.csv"
N = 40


def real_bars(last: dt.date) -> pd.DataFrame:
    """The last N real Binance 1d bars, re-dated to end on ``last``."""
    frame = pd.read_csv(SAMPLE).iloc[-N - 2:-2].reset_index(drop=True)
    frame["date"] = [last - dt.timedelta(days=N - 1 - i) for i in range(N)]
    frame["symbol"] = "BTCUSDT"
    return frame


def batch_rows(bars: pd.DataFrame) -> pd.DataFrame:
    return bars.assign(quote_volume=None, trades=None, minutes_present=1440, source="minutes", is_filled=False,
                       ma7=None, ma30=None)


@pytest.fixture()
def layered(lambda_home, monkeypatch, spark):
    monkeypatch.setenv("CRYPTO_LAMBDA_SYMBOLS", "BTCUSDT")
    settings = load_settings()
    last = yesterday_utc()
    bars = real_bars(last)
    days = list(bars["date"])
    missing_batch, incomplete, speed_only_gap = days[-3], days[-5], days[-8]
    batch = batch_rows(bars)
    batch.loc[batch["date"] == incomplete, "minutes_present"] = 700
    batch = batch[~batch["date"].isin([missing_batch, speed_only_gap])]
    lw.replace(spark, settings.lake, lt.DAILY_FILLED, batch, symbols=["BTCUSDT"])
    speed_rows = bars[bars["date"].isin([missing_batch, incomplete, days[-1]])].copy()
    speed_rows["close"] = speed_rows["close"] * 1.0001  # distinguishable from the batch bar
    speed_rows = pd.concat([speed_rows, bars.iloc[[-1]].assign(date=today_utc())])
    speed = pd.DataFrame([{"symbol": "BTCUSDT", "date": row.date, "open": row.open, "high": row.high * 1.001,
                           "low": row.low, "close": row.close, "volume": row.volume, "trades": 5,
                           "minutes_covered": 1440 if row.date < today_utc() else 600,
                           "is_provisional": row.date >= today_utc(), "source": "speed"}
                          for row in speed_rows.itertuples(index=False)])
    lw.replace(spark, settings.lake, lt.SPEED_DAILY, speed, symbols=["BTCUSDT"])
    return settings, bars, {"missing_batch": missing_batch, "incomplete": incomplete, "gap": speed_only_gap}


def test_merge_precedence_and_provenance(layered, spark):
    from crypto_lambda.serving import build_serving_daily, read_serving

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


def test_batch_replaces_a_day_served_from_speed_and_time_travel_keeps_the_old_bar(layered, spark):
    from crypto_lambda.serving import build_serving_daily, read_serving

    settings, bars, days = layered
    first = build_serving_daily(spark, settings, ["BTCUSDT"])["commit"]
    assert read_serving(settings, "BTCUSDT").set_index("date").loc[days["missing_batch"], "source"] == "speed"
    day = days["missing_batch"]
    row = batch_rows(bars[bars["date"] == day])
    lw.replace(spark, settings.lake, lt.DAILY_FILLED, row, symbols=["BTCUSDT"], start=day, end=day)  # backfill
    again = build_serving_daily(spark, settings, ["BTCUSDT"], run_id="rerun")["commit"]
    assert again.version == first.version + 1 and again.rows == len(bars) + 1  # one commit, whole series
    served = read_serving(settings, "BTCUSDT").set_index("date")
    assert served.loc[day, "source"] == "batch" and not served.index.duplicated().any()
    assert served.loc[day, "close"] == bars.set_index("date").loc[day, "close"]
    before = read_serving(settings, "BTCUSDT", as_of=first.version).set_index("date")
    assert before.loc[day, "source"] == "speed" and before.loc[day, "close"] != served.loc[day, "close"]
    assert len(before) == len(served)
    assert lr.history(settings.lake, lt.SERVING_DAILY, limit=1)[0]["user_metadata"]["run_id"] == "rerun"


def test_query_views_and_sql_errors(layered, spark, capsys):
    from crypto_lambda.serving import build_serving_daily
    from crypto_lambda_app.cli import main

    build_serving_daily(spark, layered[0], ["BTCUSDT"])
    assert main(["query", "SELECT source, count(*) AS n FROM serving_daily GROUP BY source ORDER BY source",
                 "--format", "json"]) == 0
    rows = {r["source"]: r["n"] for r in json.loads(capsys.readouterr().out)}
    assert rows == {"batch": N - 3, "filled": 1, "speed": 3}  # 40 - 2 absent - 1 incomplete
    version = lr.version(layered[0].lake, lt.SERVING_DAILY)
    assert main(["query", "SELECT count(*) AS n FROM serving_daily", "--format", "json",
                 "--as-of", f"serving_daily={version - 1}"]) == 0  # before the write: the empty new table
    assert json.loads(capsys.readouterr().out) == [{"n": 0}]
    assert main(["query", "SELECT 1 FROM serving_daily", "--as-of", "2000-01-01"]) == 2  # nothing existed then
    assert "SQL error" in capsys.readouterr().err
    table = layered[0].lake / lt.SERVING_DAILY
    assert main(["query", f"DESCRIBE HISTORY delta.`{table}`", "--format", "json"]) == 0  # reads the log: allowed
    assert {r["version"] for r in json.loads(capsys.readouterr().out)} == set(range(version + 1))
    for writes in (f"OPTIMIZE delta.`{table}`", f"VACUUM delta.`{table}`"):
        assert main(["query", writes]) == 2, writes
        assert "query refused" in capsys.readouterr().err
    assert main(["query", "SELECT * FROM no_such_view"]) == 2
    err = capsys.readouterr().err
    assert "SQL error" in err and "serving_daily" in err
    assert main(["query", "SELEC 1"]) == 2
