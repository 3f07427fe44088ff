"""The speed sensor follows the Delta log: ``touched_partitions`` on Spark-written tables, the sensor's
cursor across ticks, and the live page's read path staying JVM-free."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import dagster as dg
import pandas as pd
import pytest

from crypto_lambda.config import Settings
from crypto_lambda.lake import read as lr
from crypto_lambda.lake import write as lw
from crypto_lambda.lake.speed import provisional_daily_bar, read_provisional
from crypto_lambda.lake.tables import SPEED_BARS, SPEED_PROVISIONAL
from crypto_lambda.timeutil import today_utc

SYMBOLS = ("BTCUSDT", "ETHUSDT")


def minutes(symbol: str, day: dt.date, first: int, count: int, close: float = 1.0) -> pd.DataFrame:
    times = pd.date_range(pd.Timestamp(day, tz="UTC") + pd.Timedelta(minutes=first), periods=count, freq="min")
    return pd.DataFrame({"symbol": symbol, "open_time": times, "open": 1.0, "high": 2.0, "low": 0.5,
                         "close": close, "volume": 1.0, "quote_volume": 1.0, "trades": 3, "taker_buy_base": 0.5,
                         "taker_buy_quote": 0.5, "source": "stream", "date": times.date})


def append(spark, settings: Settings, name: str, frame: pd.DataFrame, n: int) -> int:
    return lw.append_once(spark, settings.lake, name, frame, app_id="test", txn_version=n).version


def test_touched_partitions_reads_the_commits_since_a_version_and_falls_back_after_log_cleanup(spark, tmp_path):
    from deltalake import DeltaTable

    settings = Settings(home=tmp_path / "home", symbols=SYMBOLS)
    d1, d2, d3 = dt.date(2025, 5, 31), dt.date(2025, 6, 1), dt.date(2025, 6, 2)
    assert lr.touched_partitions(settings.lake, SPEED_BARS, None) == (None, set())  # no table yet
    # a micro-batch spanning midnight: one file per (symbol, month) whose date statistics cover both days
    v1 = append(spark, settings, SPEED_BARS, pd.concat([minutes("BTCUSDT", d1, 1438, 4)]), 1)
    v2 = append(spark, settings, SPEED_BARS, minutes("ETHUSDT", d3, 0, 2), 2)
    v3 = append(spark, settings, SPEED_BARS, minutes("BTCUSDT", d3, 5, 2), 3)
    assert lr.touched_partitions(settings.lake, SPEED_BARS, None) == (
        v3, {("BTCUSDT", d1), ("BTCUSDT", d2), ("ETHUSDT", d3), ("BTCUSDT", d3)})
    assert lr.touched_partitions(settings.lake, SPEED_BARS, v1) == (v3, {("ETHUSDT", d3), ("BTCUSDT", d3)})
    assert lr.touched_partitions(settings.lake, SPEED_BARS, v2) == (v3, {("BTCUSDT", d3)})
    assert lr.touched_partitions(settings.lake, SPEED_BARS, v3) == (v3, set())
    assert lr.touched_partitions(settings.lake, SPEED_BARS, v3 + 7)[1] == lr.snapshot_partitions(
        settings.lake, SPEED_BARS)  # the table was recreated under the cursor: everything again

    DeltaTable(str(settings.lake / SPEED_BARS)).create_checkpoint()
    (settings.lake / SPEED_BARS / "_delta_log" / f"{v2:020d}.json").unlink()  # log cleanup
    version, touched = lr.touched_partitions(settings.lake, SPEED_BARS, v1)
    assert version == v3 and touched == lr.snapshot_partitions(settings.lake, SPEED_BARS) and len(touched) == 4


def _tick(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None):
    sensor = defs.resolve_sensor_def("speed_output_sensor")
    return sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs))


def _in_flight_run(instance: dg.DagsterInstance, key: str) -> str:
    from dagster._core.storage.dagster_run import DagsterRun

    from crypto_assets.defs.speed.jobs import SPEED_JOB

    run = DagsterRun(job_name=SPEED_JOB, run_id=f"busy-{abs(hash(key))}", status=dg.DagsterRunStatus.STARTED,
                     tags={"dagster/partition": key})
    instance.add_run(run)
    return run.run_id


def test_sensor_requests_each_touched_partition_once_across_ticks(spark, lambda_home, monkeypatch):
    from crypto_assets.definitions import build_defs
    from crypto_lambda.config import load_settings

    today = today_utc()
    d1, d2 = today - dt.timedelta(days=2), today - dt.timedelta(days=1)
    monkeypatch.setenv("CRYPTO_LAMBDA_START", d1.isoformat())
    monkeypatch.setenv("CRYPTO_LAMBDA_SYMBOLS", ",".join(SYMBOLS))
    settings = load_settings()
    defs, instance = build_defs(settings), dg.DagsterInstance.ephemeral()
    assert "does not exist" in _tick(defs, instance, None).skip_message  # no streaming output yet

    append(spark, settings, SPEED_BARS, pd.concat([minutes("BTCUSDT", d1, 0, 3), minutes("ETHUSDT", d2, 0, 3)]), 1)
    append(spark, settings, SPEED_BARS, minutes("BTCUSDT", d2, 0, 3), 2)
    first = _tick(defs, instance, None)
    assert sorted(r.partition_key for r in first.run_requests) == [f"{d1}|BTCUSDT", f"{d2}|BTCUSDT",
                                                                   f"{d2}|ETHUSDT"]
    again = _tick(defs, instance, first.cursor)
    assert not again.run_requests and again.cursor == first.cursor  # nothing new: nothing requested twice

    append(spark, settings, SPEED_BARS, minutes("ETHUSDT", d2, 10, 1), 3)  # one more minute of one partition
    busy = _in_flight_run(instance, f"{d2}|ETHUSDT")  # a run of that partition is still going: wait for it
    waiting = _tick(defs, instance, again.cursor)
    assert not waiting.run_requests and f"{d2}|ETHUSDT" in waiting.cursor
    instance.delete_run(busy)
    third = _tick(defs, instance, waiting.cursor)
    assert [r.partition_key for r in third.run_requests] == [f"{d2}|ETHUSDT"]
    provisional = pd.DataFrame({"symbol": "BTCUSDT", "open_time": [pd.Timestamp(today, tz="UTC")] * 2,
                                "open": 1.0, "high": [2.0, 3.0], "low": 1.0, "close": [2.0, 3.0], "volume": 1.0,
                                "trades": 2, "closed": False, "event_ms": [2, 1], "received_ms": 5,
                                "date": [today] * 2})
    append(spark, settings, SPEED_PROVISIONAL, provisional, 1)  # in-progress minutes count too
    fourth = _tick(defs, instance, third.cursor)
    assert [r.partition_key for r in fourth.run_requests] == [f"{today}|BTCUSDT"]
    assert len({r.run_key for r in [*first.run_requests, *third.run_requests, *fourth.run_requests]}) == 5
    assert not _tick(defs, instance, fourth.cursor).run_requests
    # provisional rows are reduced newest-wins on read (event_ms 2 beats the later-appended 1)
    assert read_provisional(settings, "BTCUSDT", today)["close"].tolist() == [2.0]
    assert provisional_daily_bar(settings, "BTCUSDT", today)["provisional_minutes"] == 1


@pytest.mark.parametrize("module", ["crypto_lambda_app.web.data", "crypto_lambda_app.web.app", "crypto_lambda.bars"])
def test_live_page_reads_import_no_pyspark(module):
    code = f"import sys, {module}; sys.exit('pyspark' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_speed_daily_is_one_replace_per_run_rectangle(spark, tmp_path):
    from crypto_lambda.lake import SPEED_DAILY
    from crypto_lambda.speed_daily import build_speed_daily

    settings = Settings(home=tmp_path / "home", symbols=SYMBOLS)
    d1, d2 = dt.date(2025, 6, 1), dt.date(2025, 6, 2)
    append(spark, settings, SPEED_BARS, pd.concat([minutes("BTCUSDT", d1, 0, 1440, close=2.0),
                                                   minutes("BTCUSDT", d2, 0, 3), minutes("ETHUSDT", d2, 0, 2)]), 1)
    meta = build_speed_daily(spark, settings, {"BTCUSDT": [d1, d2], "ETHUSDT": [d2]}, run_id="r1")
    assert meta["bars_written"] == 3 and meta["provisional_bars"] == 2 and meta["speed_daily_version"] is not None
    daily = lr.read(settings.lake, SPEED_DAILY).set_index(["symbol", "date"])
    assert daily.loc[("BTCUSDT", d1), "minutes_covered"] == 1440 and not daily.loc[("BTCUSDT", d1), "is_provisional"]
    assert daily.loc[("ETHUSDT", d2), "close"] == 1.0 and daily.loc[("ETHUSDT", d2), "minutes_covered"] == 2
    assert lr.history(settings.lake, SPEED_DAILY)[0]["user_metadata"]["run_id"] == "r1"

    # the minute table loses ETH's day (a reset stream): its stale bar goes in the same single commit
    (settings.lake / SPEED_BARS).rename(tmp_path / "old")
    append(spark, settings, SPEED_BARS, minutes("BTCUSDT", d2, 0, 4), 1)
    before = lr.version(settings.lake, SPEED_DAILY)
    meta = build_speed_daily(spark, settings, {"BTCUSDT": [d2], "ETHUSDT": [d2]})
    assert meta["stale_bars_removed"] == 1 and meta["speed_daily_version"] == before + 1
    after = lr.read(settings.lake, SPEED_DAILY)
    assert sorted(zip(after["symbol"], after["date"], after["minutes_covered"], strict=True)) == [
        ("BTCUSDT", d1, 1440), ("BTCUSDT", d2, 4)]
