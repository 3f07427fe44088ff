"""Faults around runs and servers (issue 14), against the replay exchange, real Dagster, real Spark:

- ``kill -9`` of a running ``crypto-lambda backfill``: ``status`` still works, marks the dead run failed and says
  why; a rerun completes and ``status`` is healthy again.
- a backfill whose ERROR-severity check fails exits 1 and names the check.
- the web API answers a malformed request with a 400 and logs one line, not a traceback.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from crypto_lambda.timeutil import DAY_MS, day_start_ms, yesterday_utc
from replay_exchange.recording import Recording, sample_bars
from replay_exchange.server import ReplayKnobs, ReplayServer

CLI = [sys.executable, "-c", "import sys; from crypto_lambda_app.cli import main; sys.exit(main(sys.argv[1:]))"]


def backfill_env(home: Path, url: str, first: dt.date, symbols: str = "BTCUSDT,ETHUSDT") -> dict[str, str]:
    env = {**os.environ, "CRYPTO_LAMBDA_HOME": str(home), "BINANCE_API_URL": url, "CRYPTO_LAMBDA_SYMBOLS": symbols,
           "CRYPTO_LAMBDA_START": first.isoformat(), "CRYPTO_LAMBDA_MINUTE_START": first.isoformat(),
           "PYTHONUNBUFFERED": "1"}
    env.pop("DAGSTER_HOME", None)
    return env


def status_json(env: dict[str, str]) -> dict:
    proc = subprocess.run([*CLI, "status", "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def wait_for_planned_check(home: Path, proc: subprocess.Popen, log: Path, timeout: float = 240) -> str:
    """The id of the backfill's run once it is STARTED with a check planned but not evaluated (what made
    `status` crash before)."""
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the backfill ended before it could be killed"
        # the CLI logs "backfill run:" once its instance storage exists: opening it earlier races its creation
        if "backfill run:" in log.read_text():
            with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home / "dagster"))) as instance:
                started = instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
                for record in started:
                    planned = instance.get_records_for_run(
                        record.dagster_run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED,
                        limit=1).records
                    if planned:
                        return record.dagster_run.run_id
        time.sleep(0.5)
    raise AssertionError("no started run with a planned check appeared")


def test_kill_9_during_backfill_then_status_tells_the_truth_and_a_rerun_heals(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = yesterday_utc() - dt.timedelta(days=2)
    slow = ReplayKnobs(latency_ms=250)  # every page takes a while, so the run is surely in flight when killed
    with ReplayServer(Recording.from_sample(shift_to_today=True), slow) as server:
        env = backfill_env(home, server.url, first)
        log = open(tmp_path / "backfill.log", "w")  # noqa: SIM115 - closed below, after the kill
        proc = subprocess.Popen([*CLI, "backfill"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            run_id = wait_for_planned_check(home, proc, tmp_path / "backfill.log")
        finally:
            os.killpg(proc.pid, signal.SIGKILL)  # the CLI, its Spark JVM and Python workers
            proc.wait(timeout=30)
            log.close()

        status = status_json(env)
        runs = status["runs"]
        assert run_id in runs["marked_failed_now"] and runs["in_flight"] == []
        [failure] = [f for f in runs["unresolved_failures"] if f["run_id"] == run_id]
        assert failure["status"] == "FAILURE" and f"process {proc.pid} is gone" in failure["message"]
        assert any(c["status"] == "NOT_EVALUATED_RUN_FAILURE" for c in status["checks"].values()), status["checks"]
        assert status["healthy"] is False
        assert status_json(env)["runs"]["marked_failed_now"] == []  # marked once

        rerun = subprocess.run([*CLI, "backfill"], env=env, capture_output=True, text=True, timeout=600)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        healed = status_json(env)
        assert healed["healthy"] is True, healed
        assert healed["runs"]["in_flight"] == [] and healed["runs"]["unresolved_failures"] == []
        assert all(s["missing_days"] == 0 and s["partitions"] == 3 for s in healed["symbols"].values())


def test_backfill_exits_1_naming_the_failed_error_check(tmp_path, monkeypatch, capfd, spark) -> None:
    """The exchange lacks one day: every run succeeds, but daily_filled:no_gaps (ERROR) fails -> exit 1."""
    from crypto_lambda_app.cli import main

    minutes, daily = sample_bars()
    shift = Recording(minutes, daily, shift_to_today=True).shift_ms
    gap = day_start_ms(yesterday_utc() - dt.timedelta(days=1)) - shift  # the recorded day served as yesterday-1
    holed = {s: b.take((b.open_ms < gap) | (b.open_ms >= gap + DAY_MS)) for s, b in minutes.items()}
    first = yesterday_utc() - dt.timedelta(days=2)
    home = tmp_path / "home"
    with ReplayServer(Recording(holed, daily, shift_to_today=True)) as server:
        for key, value in backfill_env(home, server.url, first, "BTCUSDT").items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
        capfd.readouterr()
        assert main(["backfill"]) == 1
    out, err = capfd.readouterr()
    assert "daily_filled:no_gaps=FAIL" in out
    assert "crypto-lambda: error: ERROR-severity check(s) failed: daily_filled:no_gaps" in err
    assert "Traceback" not in out + err


def test_web_api_bad_requests_get_400_and_one_log_line(lambda_home, caplog) -> None:
    from crypto_lambda.config import load_settings
    from crypto_lambda_app.web import WebServer

    with WebServer(load_settings()) as server, caplog.at_level(logging.INFO, logger="aiohttp.server"):
        assert requests.get(f"{server.url}/api/bars", params={"symbol": "../etc"}, timeout=10).status_code == 400
        assert requests.get(f"{server.url}/api/bars", params={"symbol": "BTCUSDT", "minutes": "x"},
                            timeout=10).status_code == 400
        long = requests.get(f"{server.url}/api/bars?symbol=BTCUSDT&minutes={'9' * 20_000}", timeout=10)
        assert long.status_code == 400
        time.sleep(0.2)
    records = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert records, "the malformed request was not logged"
    assert all(r.exc_info is None for r in records), [r.getMessage() for r in records]
    assert any("bad request from 127.0.0.1" in r.getMessage() and "400" in r.getMessage() for r in records)


@pytest.mark.parametrize(("params", "code"), [
    ({"symbol": "NOPEUSDT", "interval": "1m"}, -1121),
    ({"symbol": "BTCUSDT", "interval": "7m"}, -1120),
])
def test_replay_exchange_bad_parameters_get_binance_errors(server, params, code) -> None:
    answer = requests.get(f"{server.url}/api/v3/klines", params=params, timeout=10)
    assert answer.status_code == 400 and answer.json()["code"] == code and answer.json()["msg"]
