"""The batch and speed layers on a Spark standalone cluster (issue #16): a master and two workers (1 core, 1 GiB
each) started by ``crypto_lambda_app.stack.cluster``, the jobs run as CLI subprocesses with
SPARK_MASTER=spark://127.0.0.1:PORT (the pytest process already holds a local SparkSession), and one worker
killed with SIGKILL (its Worker JVM and the executor JVM it launched, as if the host died) while executors work.

Paths executors share with the driver (here one box's file system; on a real cluster a shared file system or
object store mounted at the same path on every node):
- the lake, ``$CRYPTO_LAMBDA_HOME/lake``: executors write the Delta data files, the driver commits the log;
- the raw import's staging folder, ``$CRYPTO_LAMBDA_HOME/tmp/raw-<uuid>/``: the driver writes the fetched
  minutes there as Parquet and executors read them (crypto_lambda/batch/raw.py);
- the streaming checkpoints, ``$CRYPTO_LAMBDA_HOME/checkpoints/stream``: the driver writes offsets and commits,
  executors write the state store's files (RocksDB changelogs/snapshots) under ``state/``.
Not shared: the jars. ``spark.jars`` names local files on the driver and the driver's file server hands them to
each executor, which keeps a copy in its work dir (asserted below). The executors' Python is the driver's
(PYSPARK_PYTHON, sent with each task) and must exist at that path on every node with the project installed:
``applyInPandas`` (crypto_lambda/batch/volatility.py) pickles its function by reference, so the Python
workers import ``crypto_lambda`` (the backfill and the streaming bars run no Python on executors).
Executors' scratch (shuffle, spill, RocksDB working copies) is the worker's own SPARK_LOCAL_DIRS; the
driver's ``spark.sql.warehouse.dir`` is only for managed tables, which the project never creates.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from crypto_lambda.config import Settings
from crypto_lambda.lake import read as lr
from crypto_lambda.lake import tables as lt
from crypto_lambda.lake.speed import read_speed_bars
from crypto_lambda.timeutil import DAY_MS
from crypto_lambda_app.harness import ReplayRun
from crypto_lambda_app.stack import cluster as cl
from crypto_lambda_app.stack import procs
from replay_exchange.recording import Recording
from streaming_service import consumer
from streaming_service.broker import EmbeddedBroker
from streaming_service.topics import SpeedPaths, Topics
from tests.support import REPO, assert_bars_equal_recording, recorded_1d

pytestmark = pytest.mark.timeout(420)
HOUR = 3_600_000
SYMBOLS = ("BTCUSDT", "ETHUSDT")
CLI = [sys.executable, "-c", "import sys; from crypto_lambda_app.cli import main; sys.exit(main())"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    """Master + 2 workers for the module; afterwards no process carrying the cluster's marker is left."""
    settings = Settings(home=tmp_path_factory.mktemp("cluster") / "home")
    state = cl.start_cluster(settings, cl.ClusterOptions(port=0, webui_port=0, ready_timeout=240))
    try:
        yield {"settings": settings, "state": state}
    finally:
        cl.stop_cluster(settings, grace=10.0)
        time.sleep(0.5)
        assert procs.marked_pids(state["cluster_id"]) == [], "cluster processes left behind"
        assert cl.cluster_status(settings)["running"] is False


@pytest.fixture()
def full_cluster(cluster) -> dict[str, Any]:
    """The module's cluster with both workers ALIVE (a test before may have killed one)."""
    settings, state = cluster["settings"], cluster["state"]
    for entry in cl.cluster_status(settings)["processes"]:
        if entry["name"] != cl.COMPONENT_MASTER and not entry["alive"]:
            cl.start_worker(settings, int(entry["name"].split("-")[1]))
    assert len(cl.alive_workers(cl.master_json(state["webui_url"]))) == 2
    return cluster


def _env(home: Path, master_url: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH")))),
            "CRYPTO_LAMBDA_HOME": str(home), "SPARK_MASTER": master_url, **extra}


def _kill_worker_when(cluster: dict[str, Any], proc: subprocess.Popen, log: Path, working, timeout: float = 240):
    """Wait until the job's application holds an executor on both workers and ``working()`` says its tasks
    run, then SIGKILL worker-1 with its executor; returns the pids killed."""
    state = cluster["state"]
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"the job ended before the kill:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no working executors on both workers:\n{log.read_text()[-3000:]}"
        info = cl.master_json(state["webui_url"]) or {}
        busy = [w for w in cl.alive_workers(info) if w["coresused"] == 1]
        if info.get("activeapps") and len(busy) == 2 and working():
            break
        time.sleep(0.05)
    status = cl.cluster_status(cluster["settings"])
    worker1 = next(p for p in status["processes"] if p["name"] == "worker-1")
    assert worker1["executor_pids"], "worker-1 launched no executor"
    killed = cl.kill_worker(cluster["settings"], 1)
    assert worker1["pid"] in killed and set(worker1["executor_pids"]) <= set(killed)
    return killed


def _worker_dead_on_master(cluster: dict[str, Any], alive_before: list[dict[str, Any]]) -> None:
    """The master saw the worker go: one of the two ALIVE before is DEAD now, the other still ALIVE."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        info = cl.master_json(cluster["state"]["webui_url"]) or {}
        states = {w["id"]: w["state"] for w in info.get("workers", [])}
        now = [states.get(w["id"]) for w in alive_before]
        if sorted(now) == ["ALIVE", "DEAD"]:
            return
        time.sleep(0.5)
    raise AssertionError(f"the master did not mark the killed worker DEAD: {states}")


def test_backfill_on_the_cluster_survives_a_dead_worker(full_cluster, today_server, tmp_path: Path) -> None:
    """The shipped 90 days x 2 symbols through Dagster on the cluster; worker-1 dies while executors write the
    raw minutes. The backfill succeeds and the daily bars equal Binance's recorded 1d klines, every day once."""
    recording: Recording = today_server.recording
    first, last = (dt.datetime.fromtimestamp(ms / 1000, dt.UTC).date() for ms in recording.minute_span("BTCUSDT"))
    last -= dt.timedelta(days=1)  # the recording's last day is today: a backfill stops at yesterday
    days = (last - first).days + 1
    assert days == 90
    home = tmp_path / "home"
    env = _env(home, full_cluster["state"]["master_url"], DAGSTER_HOME=str(home / "dagster"),
               BINANCE_API_URL=today_server.url, CRYPTO_LAMBDA_SYMBOLS=",".join(SYMBOLS),
               CRYPTO_LAMBDA_START=first.isoformat(), CRYPTO_LAMBDA_MINUTE_START=first.isoformat())
    log = tmp_path / "backfill.log"
    raw = home / "lake" / lt.RAW_KLINES
    with open(log, "wb") as err:
        proc = subprocess.Popen([*CLI, "backfill", "--json"], env=env, stdout=subprocess.PIPE, stderr=err,
                                start_new_session=True)
        try:
            alive_before = cl.alive_workers(cl.master_json(full_cluster["state"]["webui_url"]))
            # executors are writing the raw minutes' data files (the commit comes after them)
            _kill_worker_when(full_cluster, proc, log, lambda: raw.is_dir() and any(raw.rglob("*.parquet")))
            out, _ = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, log.read_text()[-4000:]
    outcome = json.loads(out)
    assert outcome["success"] and outcome["partitions"] == days * 2 and all(outcome["checks"].values()), outcome
    _worker_dead_on_master(full_cluster, alive_before)

    settings = Settings(home=home)
    bars = lr.read(settings.lake, lt.DAILY_OHLCV)
    assert len(bars) == days * 2 and not bars.duplicated(["symbol", "date"]).any()  # 0 missing, 0 duplicated
    for symbol in SYMBOLS:
        mine = bars[bars["symbol"] == symbol]
        assert sorted(mine["date"]) == [first + dt.timedelta(days=i) for i in range(days)]
        merged = mine.merge(recorded_1d(symbol, recording.shift_ms // DAY_MS), on="date", suffixes=("", "_binance"))
        assert len(merged) == days
        for col in ("open", "high", "low", "close"):
            assert (merged[col] == merged[f"{col}_binance"]).all(), col
        assert (merged["volume"] / merged["volume_binance"] - 1).abs().max() <= 1e-9
        assert (merged["minutes_present"] == 1440).all()
    # the executors got the connector jars from the driver, into their work dirs (nothing installed on workers)
    work = cl.cluster_dir(full_cluster["settings"]) / "work"
    assert {p.parent.parent.parent.name for p in work.glob("worker-*/app-*/*/delta-spark_*.jar")} == {
        "worker-1", "worker-2"}
    assert not list((home / "tmp").glob("raw-*")), "the staging folder is removed after the run"


def _count(folder: Path) -> int:
    return len([p for p in folder.iterdir() if p.name.isdigit()]) if folder.is_dir() else 0


def test_stream_on_the_cluster_survives_a_dead_worker(full_cluster, broker: EmbeddedBroker, recording: Recording,
                                                      tmp_path: Path) -> None:
    """A replayed hour through ``stream consume --available-now`` on the cluster in small micro-batches; worker-1
    dies between committed batches. The query goes on with the other executor and its bars equal the
    recording's minutes for the hour: 0 lost, 0 duplicated."""
    home = tmp_path / "home"
    settings = Settings(home=home)
    paths = SpeedPaths.of(settings)
    topics = Topics.with_prefix("cluster")
    start = recording.minute_span("BTCUSDT")[0] + 30 * DAY_MS
    end = start + HOUR + 12 * 60_000
    broker.create_topics(topics.all(), partitions=2)
    with ReplayRun(recording, broker.bootstrap, topics, paths.spill, start, end, speed=1200) as run:
        run.wait_until_done()
    log = tmp_path / "consumer.log"
    checkpoint = consumer.checkpoint_dir(consumer.ConsumerConfig(broker.bootstrap, paths, topics), "bars")
    with open(log, "wb") as out:
        proc = subprocess.Popen([*CLI, "stream", "consume", "--available-now", "--bootstrap", broker.bootstrap,
                                 "--topic-prefix", "cluster", "--max-offsets-per-trigger", "1500",
                                 "--queries", "bars", "--watermark", "10 minutes"],
                                env=_env(home, full_cluster["state"]["master_url"]), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            alive_before = cl.alive_workers(cl.master_json(full_cluster["state"]["webui_url"]))
            _kill_worker_when(full_cluster, proc, log, lambda: _count(checkpoint / "commits") >= 1)
            committed_at_kill = _count(checkpoint / "commits")
            proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, log.read_text()[-4000:]
    assert _count(checkpoint / "commits") > committed_at_kill + 1, "the kill should land mid-stream"
    _worker_dead_on_master(full_cluster, alive_before)

    bars = read_speed_bars(settings)
    assert_bars_equal_recording(bars, recording, SYMBOLS, start, start + HOUR)
