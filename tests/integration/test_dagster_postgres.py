"""Dagster on PostgreSQL: the instance the docker-compose deployment uses (deploy/dagster.yaml, byte for byte,
configured by the DAGSTER_PG_* environment only) against a throwaway Debian ``postgresql`` server. A backfill's
runs, event logs and check results, ``crypto-lambda status``, a sensor tick the daemon records, and the
QueuedRunCoordinator's limit (runs beyond it wait, then run) all go through Postgres."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from crypto_lambda.config import load_settings
from crypto_lambda.timeutil import yesterday_utc
from tests.support import REPO, dagster_pg_env

DEPLOY_YAML = REPO / "deploy" / "dagster.yaml"
WORKSPACE = REPO / "workspace.yaml"
SYMBOLS = ("BTCUSDT", "ETHUSDT")
MINUTE_DAYS = 3
HISTORY_DAYS = 10
QUEUED_RUNS = 3
PG_NAMES = {"DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"}


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory, postgres, spark, today_server):
    """A home whose DAGSTER_HOME holds a copy of deploy/dagster.yaml, the env pointing it at ``postgres``."""
    home = tmp_path_factory.mktemp("pg") / "home"
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True)
    shutil.copyfile(DEPLOY_YAML, dagster_home / "dagster.yaml")
    last = yesterday_utc()
    env = {"CRYPTO_LAMBDA_HOME": str(home), "DAGSTER_HOME": str(dagster_home), "BINANCE_API_URL": today_server.url,
           "CRYPTO_LAMBDA_SYMBOLS": ",".join(SYMBOLS),
           "CRYPTO_LAMBDA_START": (last - dt.timedelta(days=HISTORY_DAYS - 1)).isoformat(),
           "CRYPTO_LAMBDA_MINUTE_START": (last - dt.timedelta(days=MINUTE_DAYS - 1)).isoformat(),
           **dagster_pg_env(postgres, DEPLOY_YAML)}
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("CRYPTO_LAMBDA_AUTOMATION", raising=False)
        for key, value in env.items():
            mp.setenv(key, value)
        settings = load_settings()
        from crypto_assets.definitions import build_defs

        with dg.DagsterInstance.get() as instance:
            yield {"settings": settings, "defs": build_defs(settings), "instance": instance, "server": postgres,
                   "home": dagster_home, "env": {**os.environ}}


def test_backfill_checks_and_status_are_stored_in_postgres(pg) -> None:
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    from crypto_assets.backfill import run_backfill
    from crypto_assets.defs.batch.checks import CHECKS, NO_DUPLICATE_MINUTES, NO_GAPS, OHLC_SANE

    instance, server, settings = pg["instance"], pg["server"], pg["settings"]
    # the deployment's file unchanged; only the environment (names read from that file) differs
    assert (pg["home"] / "dagster.yaml").read_bytes() == DEPLOY_YAML.read_bytes()
    assert set(dagster_pg_env(server, DEPLOY_YAML)) == PG_NAMES
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)

    outcome = run_backfill(pg["defs"], settings, instance)
    assert outcome.success and outcome.partitions == MINUTE_DAYS * len(SYMBOLS) and len(outcome.runs) == 2
    batch_checks = {f"{asset}:{name}" for asset, name in CHECKS if name in (NO_DUPLICATE_MINUTES, OHLC_SANE, NO_GAPS)}
    assert batch_checks <= set(outcome.checks) and all(outcome.checks.values()), outcome.checks

    # read back through SQL: the runs, their materializations and check evaluations are Postgres rows
    ids = ",".join(f"'{run}'" for run in outcome.runs)
    assert server.psql(f"SELECT count(*) FROM runs WHERE run_id IN ({ids}) AND status = 'SUCCESS'") == "2"
    rows = server.psql(f"SELECT dagster_event_type, count(*) FROM event_logs WHERE run_id IN ({ids}) "
                       "AND dagster_event_type IN ('ASSET_MATERIALIZATION', 'ASSET_CHECK_EVALUATION') "
                       "GROUP BY 1 ORDER BY 1")
    counts = dict(line.split("|") for line in rows.splitlines())
    assert int(counts["ASSET_MATERIALIZATION"]) >= 4  # raw, daily bars, history, filled
    assert int(counts["ASSET_CHECK_EVALUATION"]) >= len(batch_checks)
    keys = [dg.AssetCheckKey(dg.AssetKey(asset), name) for asset, name in CHECKS if f"{asset}:{name}" in batch_checks]
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    assert all(latest[key].evaluation.passed and latest[key].run_id in outcome.runs for key in keys)
    assert not list(pg["home"].rglob("*.db")), "a SQLite file appeared beside the Postgres instance"

    # the CLI picks the same instance from DAGSTER_HOME and reports the backfilled state from Postgres
    proc = subprocess.run([str(Path(sys.executable).parent / "crypto-lambda"), "status", "--json"],
                          env=pg["env"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert status["healthy"], status
    assert {s: v["partitions"] for s, v in status["symbols"].items()} == dict.fromkeys(SYMBOLS, MINUTE_DAYS)
    assert all(status["last_materialization"][name] for name in ("raw_klines_1m", "daily_ohlcv", "daily_filled"))
    assert all(status["checks"][name]["passed"] is True for name in batch_checks), status["checks"]
    assert (pg["home"] / "dagster.yaml").read_bytes() == DEPLOY_YAML.read_bytes()  # the CLI kept the operator's


FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


def _stop_group(pgid: int, grace: float = 10.0) -> list[int]:
    """Wait for every process of the group to exit; SIGKILL whatever is left after ``grace``. Returns the
    pids that had to be killed (a clean stop leaves none)."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        left = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _pgid(int(p.name)) == pgid]
        if not left:
            return []
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    return left


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _submit_queued(instance: dg.DagsterInstance, days: list[dt.date]):
    """Check-only runs of the minutes job (its two checks, one day of BTCUSDT each: what the UI's "Execute
    checks" launches; only the ``lake`` resource, so no Spark) submitted through the instance's run
    coordinator, which stores them QUEUED. Returns the run ids and the started ``gap_repair_sensor``'s state."""
    from dagster._core.definitions.selector import JobSubsetSelector
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    from crypto_assets.defs.batch.checks import NO_DUPLICATE_MINUTES, OHLC_SANE
    from crypto_assets.defs.batch.jobs import MINUTES_JOB
    from crypto_assets.defs.batch.sensors import GAP_REPAIR_SENSOR
    from crypto_assets.lib.partitions import range_tags
    from crypto_lambda.lake.tables import DAILY_OHLCV, RAW_KLINES

    checks = {dg.AssetCheckKey(dg.AssetKey(RAW_KLINES), NO_DUPLICATE_MINUTES),
              dg.AssetCheckKey(dg.AssetKey(DAILY_OHLCV), OHLC_SANE)}
    with WorkspaceProcessContext(instance, WorkspaceFileTarget([str(WORKSPACE)])) as process:
        workspace = process.create_request_context()
        location = workspace.get_code_location("crypto_lambda")
        [repo] = location.get_repositories().values()
        job = location.get_job(JobSubsetSelector(location_name=location.name, repository_name=repo.name,
                                                 job_name=MINUTES_JOB, op_selection=None,
                                                 asset_check_selection=checks))
        plan = location.get_execution_plan(job, {}, step_keys_to_execute=None, known_state=None,
                                           instance=instance).execution_plan_snapshot
        runs = []
        for day in days:
            run = instance.create_run(
                job_name=job.name, run_id=None, run_config={}, resolved_op_selection=None,
                step_keys_to_execute=plan.step_keys_to_execute, op_selection=None, status=None, root_run_id=None,
                parent_run_id=None, tags={**job.tags, **range_tags(day, day, ["BTCUSDT"])},
                job_snapshot=job.job_snapshot, execution_plan_snapshot=plan,
                parent_job_snapshot=job.parent_job_snapshot, remote_job_origin=job.get_remote_origin(),
                job_code_origin=job.get_python_origin(), asset_selection=frozenset(),
                asset_check_selection=frozenset(checks), asset_graph=repo.asset_graph)
            runs.append(instance.submit_run(run.run_id, workspace).run_id)
        sensor = instance.start_sensor(repo.get_sensor(GAP_REPAIR_SENSOR))
    return runs, sensor


def test_runs_beyond_the_limit_wait_and_the_daemon_records_a_sensor_tick(pg) -> None:
    from dagster._core.scheduler.instigation import TickStatus

    instance = pg["instance"]
    limit = instance.run_coordinator.get_run_queue_config().max_concurrent_runs  # 2, from deploy/dagster.yaml
    assert limit < QUEUED_RUNS
    days = [yesterday_utc() - dt.timedelta(days=n) for n in range(QUEUED_RUNS)]
    runs, sensor = _submit_queued(instance, days)
    assert {instance.get_run_by_id(r).status for r in runs} == {dg.DagsterRunStatus.QUEUED}

    log = pg["home"] / "daemon.log"
    with log.open("w") as out:  # its own session: the daemon, its code server and the run workers are one group
        daemon = subprocess.Popen([str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(WORKSPACE)],
                                  env=pg["env"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            statuses = [instance.get_run_by_id(r).status for r in runs]
            ticks = instance.get_ticks(sensor.instigator_origin_id, sensor.selector_id)
            if all(s in FINISHED for s in statuses) and ticks:
                break
            assert daemon.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
    finally:
        daemon.send_signal(signal.SIGINT)
        try:
            daemon.wait(timeout=60)
        finally:
            left = _stop_group(daemon.pid)
    assert not left, f"processes left behind by the daemon: {left}"
    assert statuses == [dg.DagsterRunStatus.SUCCESS] * QUEUED_RUNS, log.read_text()[-3000:]

    # from the run events: a run holds a slot from STARTING (the coordinator launched it) to SUCCESS
    spans = {}
    for run in runs:
        events = {e.dagster_event_type: e.timestamp for e in instance.all_logs(run) if e.dagster_event}
        enqueued, starting = events[dg.DagsterEventType.RUN_ENQUEUED], events[dg.DagsterEventType.RUN_STARTING]
        assert enqueued < starting <= events[dg.DagsterEventType.RUN_START]
        spans[run] = (starting, events[dg.DagsterEventType.RUN_SUCCESS])
    moments = sorted(start for start, _ in spans.values())
    busiest = max(sum(start <= t < end for start, end in spans.values()) for t in moments)
    assert busiest == limit, spans  # the limit was reached, never passed
    first_end = min(end for _, end in spans.values())
    waited = [r for r, (start, _) in spans.items() if start >= first_end]
    assert len(waited) == QUEUED_RUNS - limit, spans  # the rest stayed QUEUED until a slot freed

    [tick, *_] = instance.get_ticks(sensor.instigator_origin_id, sensor.selector_id)
    assert tick.status == TickStatus.SKIPPED and tick.skip_reason == "nothing to repair"
    stored = pg["server"].psql(f"SELECT DISTINCT status FROM job_ticks WHERE selector_id = '{sensor.selector_id}'")
    assert stored == "SKIPPED"  # the daemon wrote the tick into Postgres
