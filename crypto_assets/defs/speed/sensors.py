"""``speed_output_sensor`` follows the Delta log of the streaming output: its cursor is the last version it
saw of ``speed_klines_1m`` (committed minute bars) and of ``speed_provisional_1m`` (in-progress minutes,
which ``speed_daily`` includes too), and it requests ``speed_daily`` once for each (day, symbol) the commits
since then added rows to (:func:`crypto_lambda.lake.read.touched_partitions`: add actions' partition values
and ``date`` statistics). Run keys carry the versions, so a daemon restart never re-requests a change.
Debounced: it ticks at most every 30 s, and a partition with a run still queued or in flight is kept in the
cursor's ``pending`` list for a later tick instead of stacking runs. It reads the ``Settings`` the
definitions were built with, the object the ``lake`` resource of the runs it requests is built from.
"""

import datetime as dt
import json

import dagster as dg

from crypto_assets.defs.speed.jobs import SPEED_JOB
from crypto_assets.lib.partitions import PARTITION, multi_key
from crypto_lambda.config import Settings, automation_on
from crypto_lambda.lake import read as lake_read
from crypto_lambda.lake.tables import SPEED_BARS, SPEED_PROVISIONAL
from crypto_lambda.timeutil import today_utc

IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
             dg.DagsterRunStatus.STARTED]
SPEED_SOURCES = (SPEED_BARS, SPEED_PROVISIONAL)
SPEED_OUTPUT_SENSOR = "speed_output_sensor"


def speed_changes(settings: Settings, cursor: dict) -> tuple[dict[str, int | None], set[str]]:
    """Newest versions of the speed tables and the ``date|symbol`` keys their commits since ``cursor``
    (``{"versions": {table: version}}``) touched."""
    seen = cursor.get("versions", {})
    versions: dict[str, int | None] = {}
    keys: set[str] = set()
    for name in SPEED_SOURCES:
        versions[name], touched = lake_read.touched_partitions(settings.lake, name, seen.get(name))
        keys |= {multi_key(day, symbol) for symbol, day in touched if symbol}
    return versions, keys


def _valid_key(settings: Settings, key: str) -> bool:
    day, symbol = key.split("|")
    try:
        date = dt.date.fromisoformat(day)
    except ValueError:
        return False
    return symbol in settings.symbols and settings.first_minute_day <= date <= today_utc()


def _in_flight(instance: dg.DagsterInstance, job: str, key: str) -> bool:
    runs = instance.get_run_records(dg.RunsFilter(job_name=job, statuses=IN_FLIGHT, tags={PARTITION: key}),
                                    limit=1)
    return bool(runs)


def build_speed_sensors(settings: Settings) -> list[dg.SensorDefinition]:
    status = dg.DefaultSensorStatus.RUNNING if automation_on() else dg.DefaultSensorStatus.STOPPED

    @dg.sensor(name=SPEED_OUTPUT_SENSOR, job_name=SPEED_JOB, minimum_interval_seconds=30, default_status=status,
               description="Request speed_daily for each (day, symbol) whose streaming output changed.")
    def speed_output_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        if not any(lake_read.exists(settings.lake, name) for name in SPEED_SOURCES):
            return dg.SkipReason(f"streaming output {settings.lake / SPEED_BARS} does not exist yet")
        cursor = json.loads(context.cursor) if context.cursor else {}
        versions, touched = speed_changes(settings, cursor)
        todo = sorted(k for k in touched | set(cursor.get("pending", [])) if _valid_key(settings, k))
        stamp = "-".join(str(versions[name]) for name in SPEED_SOURCES)
        requests, pending = [], []
        for key in todo:
            if _in_flight(context.instance, SPEED_JOB, key):
                pending.append(key)  # debounce: request it after the running one finishes
                continue
            requests.append(dg.RunRequest(run_key=f"speed:{key}:{stamp}", partition_key=key))
        new_cursor = json.dumps({"versions": versions, "pending": pending}, sort_keys=True)
        if not requests:
            return dg.SensorResult(skip_reason="no streaming partition changed", cursor=new_cursor)
        return dg.SensorResult(run_requests=requests, cursor=new_cursor)

    return [speed_output_sensor]
