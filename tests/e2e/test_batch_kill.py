"""kill -9 during a backfill's commit (issue #13 §10): a process replacing a large rectangle of raw_klines_1m is
SIGKILLed (with its JVM) after it has written data files but before its commit; readers still see the previous
version exactly, the dead writer's files are referenced by no version, and a rerun completes in one commit."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from crypto_lambda.lake import read as lr
from crypto_lambda.lake import tables as lt
from crypto_lambda.lake import write as lw

FIRST = dt.date(2023, 1, 1)
DAYS = 240  # ~350 k minutes in 8 (symbol, month) files: seconds of writing, a wide window to kill in
WRITER = """
import sys, datetime as dt
from pathlib import Path
from pyspark.sql import functions as F
from crypto_lambda.lake import tables as lt, write as lw
from crypto_lambda.spark import get_spark

lake, first, days = Path(sys.argv[1]), dt.date.fromisoformat(sys.argv[2]), int(sys.argv[3])
spark = get_spark()
t0 = int(dt.datetime(first.year, first.month, first.day, tzinfo=dt.timezone.utc).timestamp())
minutes = spark.range(days * 1440).select(
    F.lit("BTCUSDT").alias("symbol"), F.timestamp_seconds(F.lit(t0) + F.col("id") * 60).alias("open_time"),
    *[(F.col("id") % 1000 + 1).cast("double").alias(c) for c in ("open", "high", "low", "close", "volume")],
    F.lit(None).cast("double").alias("quote_volume"), F.lit(None).cast("bigint").alias("trades"),
    F.lit(None).cast("double").alias("taker_buy_base"), F.lit(None).cast("double").alias("taker_buy_quote"),
    F.lit("rest").alias("source")).withColumn("date", F.to_date("open_time"))
print("writing", flush=True)
lw.replace(spark, lake, lt.RAW_KLINES, minutes, symbols=["BTCUSDT"], start=first,
           end=first + dt.timedelta(days=days - 1))
print("committed", flush=True)
"""


def day_of_minutes(day: dt.date, close: float) -> pd.DataFrame:
    times = pd.date_range(pd.Timestamp(day, tz="UTC"), periods=1440, freq="min").as_unit("ms")
    return pd.DataFrame({"symbol": "BTCUSDT", "open_time": times, "open": close, "high": close, "low": close,
                         "close": close, "volume": 1.0, "quote_volume": None, "trades": None, "taker_buy_base": None,
                         "taker_buy_quote": None, "source": "rest", "date": day})


def data_files(table: Path) -> set[str]:
    return {str(p.relative_to(table)) for p in table.rglob("*.parquet") if "_delta_log" not in p.parts}


def test_kill_9_mid_commit_leaves_the_previous_version_and_a_rerun_completes(spark, tmp_path):
    lake = tmp_path / "lake"
    last = FIRST + dt.timedelta(days=DAYS - 1)
    before = lw.replace(spark, lake, lt.RAW_KLINES, pd.concat([day_of_minutes(FIRST, 1.0),
                                                               day_of_minutes(last, 2.0)]),
                        symbols=["BTCUSDT"], start=FIRST, end=last)
    table = lt.table_path(lake, lt.RAW_KLINES)
    old_rows, old_files = lr.read(lake, lt.RAW_KLINES), data_files(table)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(lake), FIRST.isoformat(), str(DAYS)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              start_new_session=True)  # its own process group: the JVM dies with it
    try:
        assert writer.stdout.readline().strip() == "writing"
        deadline = time.monotonic() + 120
        while not (data_files(table) - old_files):  # data files written, commit not made yet
            assert writer.poll() is None and time.monotonic() < deadline, "writer ended before writing files"
            time.sleep(0.02)
        assert lr.version(lake, lt.RAW_KLINES) == before.version, "the write committed before the kill"
    finally:
        os.killpg(writer.pid, signal.SIGKILL)
        writer.wait(30)
    assert writer.returncode == -signal.SIGKILL
    orphans = data_files(table) - old_files
    assert orphans  # the dead writer left files behind ...
    assert lr.version(lake, lt.RAW_KLINES) == before.version  # ... but no commit
    pd.testing.assert_frame_equal(lr.read(lake, lt.RAW_KLINES), old_rows)
    referenced = {Path(u.removeprefix("file://")).resolve() for u in lr.file_uris(lake, lt.RAW_KLINES)}
    assert not {(table / f).resolve() for f in orphans} & referenced  # VACUUM's to delete, no reader's to see

    rerun = lw.replace(spark, lake, lt.RAW_KLINES, pd.concat([day_of_minutes(d, 3.0) for d in (FIRST, last)]),
                       symbols=["BTCUSDT"], start=FIRST, end=last)
    assert rerun.version == before.version + 1
    now = lr.read(lake, lt.RAW_KLINES)
    assert len(now) == 2 * 1440 and not now.duplicated(["symbol", "open_time"]).any()
    assert set(now["close"]) == {3.0}
    pd.testing.assert_frame_equal(lr.read(lake, lt.RAW_KLINES, as_of=before.version), old_rows)
