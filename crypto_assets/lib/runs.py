"""Runs whose process died: find them and mark them failed, so `status` tells the truth and a rerun starts.

Why our own sweep: ``crypto-lambda backfill`` executes runs in its own process (``execute_in_process``), and
the default run launcher cannot report a dead run worker, so Dagster's run monitoring never notices a
``kill -9``: the run would stay STARTED forever, its planned checks "in progress", and the sensors that skip
partitions with a run in flight would skip them forever. Every run records the pid that executes it (in its
RUN_START event); backfill also tags the host. A run still in progress whose process is gone (or was
replaced by a younger process with the same pid) is reported failed with a message that says so.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
from dataclasses import dataclass

import dagster as dg

from crypto_lambda import machine

log = logging.getLogger(__name__)
HOST_TAG = "crypto_lambda/host"
PID_TAG = "crypto_lambda/pid"
IN_PROGRESS = (dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING)


def process_tags() -> dict[str, str]:
    """Tags that tie a run to the process executing it (see :func:`sweep_dead_runs`)."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


@dataclass
class DeadRun:
    run_id: str
    job_name: str
    pid: int
    reason: str


def _run_pid(instance: dg.DagsterInstance, run: dg.DagsterRun) -> int | None:
    if run.tags.get(PID_TAG, "").isdigit():
        return int(run.tags[PID_TAG])
    records = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.RUN_START, limit=1).records
    event = records[0].event_log_entry.dagster_event if records else None
    return event.pid if event is not None else None


def _is_local(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    """Only a run of this machine can be judged by its pid: one tagged with this host, or any run of a
    SQLite instance (which only processes on this machine can write)."""
    if HOST_TAG in run.tags:
        return run.tags[HOST_TAG] == socket.gethostname()
    return "sqlite" in type(instance.run_storage).__name__.lower()


def dead_runs(instance: dg.DagsterInstance) -> list[DeadRun]:
    """In-progress runs of this machine whose executing process no longer exists."""
    found = []
    for record in instance.get_run_records(dg.RunsFilter(statuses=list(IN_PROGRESS))):
        run = record.dagster_run
        if not _is_local(instance, run):
            continue
        pid = _run_pid(instance, run)
        if pid is None or pid == os.getpid():
            continue
        started = machine.started_at(pid)
        run_started = record.start_time or record.create_timestamp.timestamp()
        if started is None:
            found.append(DeadRun(run.run_id, run.job_name, pid, f"its process {pid} is gone"))
        elif started > run_started + 5:  # pid reused by a younger process
            found.append(DeadRun(run.run_id, run.job_name, pid, f"its process {pid} is gone (pid reused)"))
    return found


def sweep_dead_runs(instance: dg.DagsterInstance) -> list[DeadRun]:
    """Mark every dead run failed (canceled if it was canceling); returns what was marked."""
    dead = dead_runs(instance)
    for item in dead:
        run = instance.get_run_by_id(item.run_id)
        if run is None or run.status not in IN_PROGRESS:
            continue
        message = (f"Marked failed by crypto-lambda: {item.reason} (killed or crashed); its completed "
                   "partitions are kept, rerun `crypto-lambda backfill` for the rest.")
        if run.status == dg.DagsterRunStatus.CANCELING:
            instance.report_run_canceled(run, message=message)
        else:
            instance.report_run_failed(run, message=message)
        log.warning("run %s (%s): %s; marked failed", item.run_id, item.job_name, item.reason)
    return dead


def unresolved_failures(instance: dg.DagsterInstance, limit: int = 5) -> list[dict]:
    """The newest failed or canceled runs not followed by a successful run of the same job, with their
    failure message: what `status` should still mention."""
    out = []
    records = instance.get_run_records(
        dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]), limit=limit)
    for record in records:
        run = record.dagster_run
        later = instance.get_run_records(dg.RunsFilter(job_name=run.job_name, statuses=[dg.DagsterRunStatus.SUCCESS],
                                                       created_after=record.create_timestamp), limit=1)
        if later:
            continue
        events = instance.get_records_for_run(run.run_id, of_type={dg.DagsterEventType.RUN_FAILURE,
                                                                   dg.DagsterEventType.RUN_CANCELED},
                                              limit=1, ascending=False).records
        message = events[0].event_log_entry.dagster_event.message if events else None
        ended = dt.datetime.fromtimestamp(record.end_time, dt.UTC).isoformat(timespec="seconds") \
            if record.end_time else None
        out.append({"run_id": run.run_id, "job": run.job_name, "status": run.status.value, "at": ended,
                    "message": message.splitlines()[0][:300] if message else None})
    return out
