"""The lake's upkeep and its concurrency promises on real Spark + Delta and delta-rs: the ``lake_maintenance``
asset compacts small commits (registered tables and the streaming table) without changing a row or breaking
time travel; ``history`` prints who wrote what; writers racing on one table never fail and a concurrent
delta-rs reader only ever sees whole commits."""

from __future__ import annotations

import datetime as dt
import json
import threading

import dagster as dg
import pandas as pd
import pytest

from crypto_lambda.lake import maintenance
from crypto_lambda.lake import read as lake_read
from crypto_lambda.lake import read as lr
from crypto_lambda.lake import tables as lt
from crypto_lambda.lake import write as lw

DAY0 = dt.date(2025, 1, 1)
STREAM = maintenance.STREAMING_TABLE


def bars(days: list[dt.date], close: float, symbol: str = "BTCUSDT") -> pd.DataFrame:
    return pd.DataFrame({"symbol": symbol, "date": days, "open": 1.0, "high": 2.0, "low": 0.5, "close": close,
                         "volume": 10.0, "quote_volume": 20.0, "trades": 5, "minutes_present": 1440,
                         "source": "minutes"})


def small_commits(spark, lake) -> None:
    """Four one-day appends to daily_ohlcv (four files in one partition), three micro-batch-like appends to a
    streaming table no module here registers."""
    for i in range(4):
        day = DAY0 + dt.timedelta(days=i)
        lw.append_once(spark, lake, lt.DAILY_OHLCV, bars([day], float(i)), app_id="test", txn_version=i)
    for i in range(3):
        spark.range(i * 10, i * 10 + 10).selectExpr("id", "'BTCUSDT' AS symbol").write.format("delta") \
            .mode("append").save(str(lake / STREAM))


def test_maintenance_asset_compacts_every_table_keeping_rows_and_time_travel(spark, lambda_home, capsys):
    from dagster_pyspark import PySparkResource

    from crypto_assets.defs.maintenance.assets import build_maintenance_assets
    from crypto_assets.lib.resources import LakeResource
    from crypto_lambda.spark import spark_conf
    from crypto_lambda_app.cli import main

    lake = lambda_home / "lake"
    small_commits(spark, lake)
    before_version = lr.version(lake, lt.DAILY_OHLCV)
    rows_before = lr.read(lake, lt.DAILY_OHLCV)
    assert lr.file_sizes(lake, lt.DAILY_OHLCV)["files"] == 4

    result = dg.materialize(build_maintenance_assets(), resources={
        "lake": LakeResource(home=str(lambda_home)), "pyspark": PySparkResource(spark_config=spark_conf())})
    assert result.success
    [mat] = result.asset_materializations_for_node("lake_maintenance")
    report = mat.metadata["by_table"].value
    assert set(report) == {lt.DAILY_OHLCV, STREAM}
    daily = report[lt.DAILY_OHLCV]
    assert (daily["files_before"], daily["files_after"]) == (4, 1)
    with capsys.disabled():
        print("\nmaintenance report", json.dumps(report))
    # OPTIMIZE, VACUUM START, VACUUM END: three commits
    assert daily["version_after"] == before_version + 3 and daily["bytes_after"] > 0
    assert report[STREAM]["files_after"] < report[STREAM]["files_before"]
    assert mat.metadata[f"{lt.DAILY_OHLCV}/files_after"].value == 1
    # within the 7-day retention VACUUM keeps the compacted-away files: on disk 4 old + 1 new
    assert (daily["disk_files_before"], daily["disk_files_after"]) == (4, 5)

    pd.testing.assert_frame_equal(lr.read(lake, lt.DAILY_OHLCV), rows_before)  # same rows, one file
    assert len(lr.file_uris(lake, lt.DAILY_OHLCV)) == 1
    pd.testing.assert_frame_equal(lr.read(lake, lt.DAILY_OHLCV, as_of=before_version), rows_before)
    stream = lake_read.open_folder(lake / STREAM).to_pyarrow_table()
    assert sorted(stream.column("id").to_pylist()) == list(range(30))

    assert main(["history", lt.DAILY_OHLCV, "--json"]) == 0
    log = json.loads(capsys.readouterr().out)
    assert {"OPTIMIZE", "VACUUM START", "VACUUM END"} <= {e["operation"] for e in log}
    optimize = next(e for e in log if e["operation"] == "OPTIMIZE")
    assert optimize["run_id"] == result.run_id and optimize["files_removed"] == 4
    assert (log[-1]["version"], log[-1]["operation"]) == (0, "CREATE TABLE")
    assert (log[-2]["version"], log[-2]["operation"], log[-2]["rows_written"]) == (1, "WRITE", 1)
    assert main(["history", STREAM, "--limit", "1"]) == 0  # a table no module registered: found on disk
    assert len(capsys.readouterr().out.strip().splitlines()) == 2  # header + one commit


def test_vacuum_refuses_a_retention_below_the_safety_check(spark, tmp_path):
    lake = tmp_path / "lake"
    lw.replace(spark, lake, lt.DAILY_OHLCV, bars([DAY0], 1.0), symbols=["BTCUSDT"])
    with pytest.raises(Exception, match="(?i)retentionDurationCheck|retention"):
        maintenance.maintain_table(spark, lake / lt.DAILY_OHLCV, retain_hours=0)


def test_racing_writers_never_fail_and_a_reader_sees_only_whole_commits(spark, tmp_path):
    """A batch replace of one date range and a second writer's replace of another, in the same partition
    (Delta's conflict check sees both read it): retried, never failed. A delta-rs reader meanwhile: each count
    it saw is the count of a committed version, and each writer's rows always carry one run's marker."""
    lake = tmp_path / "lake"
    first, second = [DAY0 + dt.timedelta(days=i) for i in range(5)], [DAY0 + dt.timedelta(days=10 + i)
                                                                      for i in range(5)]
    lw.replace(spark, lake, lt.SERVING_DAILY, pd.DataFrame(columns=lt.TABLES[lt.SERVING_DAILY].schema.names),
               symbols=["BTCUSDT"])
    start = lr.version(lake, lt.SERVING_DAILY)
    errors: list[BaseException] = []
    seen: list[tuple[int, set, set]] = []
    done = threading.Event()

    def serving(days: list[dt.date], n: int, marker: float) -> pd.DataFrame:
        return bars(days[:n], marker).assign(is_provisional=False, is_filled=False, ma7=None, ma30=None)

    def writer(days: list[dt.date], offset: float) -> None:
        try:
            for i in range(3):
                lw.replace(spark, lake, lt.SERVING_DAILY, serving(days, 5 - i, offset + i), symbols=["BTCUSDT"],
                           start=days[0], end=days[-1], run_id=f"w{offset}-{i}")
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    def reader() -> None:
        while not done.is_set():
            frame = lr.read(lake, lt.SERVING_DAILY)
            early = set(frame.loc[frame["date"] <= first[-1], "close"])
            late = set(frame.loc[frame["date"] >= second[0], "close"])
            seen.append((len(frame), early, late))

    threads = [threading.Thread(target=writer, args=(first, 100.0)), threading.Thread(target=writer,
                                                                                      args=(second, 200.0))]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    done.set()
    watcher.join(timeout=60)
    assert not errors, errors
    newest = lr.version(lake, lt.SERVING_DAILY)
    assert newest == start + 6  # 2 writers x 3 commits, none lost
    committed = {len(lr.read(lake, lt.SERVING_DAILY, as_of=v)) for v in range(newest + 1)}
    assert len(seen) > 3 and {n for n, _, _ in seen} <= committed
    assert all(len(early) <= 1 and len(late) <= 1 for _, early, late in seen)  # never two runs' rows mixed
    final = lr.read(lake, lt.SERVING_DAILY)
    assert len(final) == 6 and set(final["close"]) == {102.0, 202.0}
