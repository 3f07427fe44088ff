"""Sensors: react to the streaming service's output, and repair batch partitions the stream says are holed.

``speed_output_sensor`` follows the Delta log of the streaming output: its cursor is the last version it
saw of ``speed_klines_1m`` (committed minute bars) and of ``speed_provisional_1m`` (in-progress minutes,
which ``speed_daily`` includes too), and it requests ``speed_daily`` once for each (day, symbol) the commits
since then added rows to (:func:`crypto_lambda.lake.read.touched_partitions`: add actions' partition values
and ``date`` statistics). Run keys carry the versions, so a daemon restart never re-requests a change.
Debounced: it ticks at most every 30 s, and a partition with a run still queued or in flight is kept in the
cursor's ``pending`` list for a later tick instead of stacking runs.

``gap_repair_sensor`` turns the producer's gap markers and incomplete raw partitions (fewer than 99 % of
minutes) into one single-run range backfill of the minutes job per tick, tagged ``crypto_lambda/repair``.
Each (partition, reason) is tried once, so a day the exchange itself lacks does not loop.
"""

import datetime as dt
import hashlib
import json

import dagster as dg

from crypto_assets.backfill import missing_days
from crypto_assets.jobs import MINUTES_JOB, SPEED_JOB
from crypto_assets.partitions import multi_key, range_tags
from crypto_lambda.config import MIN_DAY_COMPLETENESS, Settings, automation_on
from crypto_lambda.lake import read as lake_read
from crypto_lambda.lake.speed import read_gaps
from crypto_lambda.lake.tables import DAILY_OHLCV, RAW_KLINES, SPEED_BARS, SPEED_PROVISIONAL
from crypto_lambda.timeutil import MINUTES_PER_DAY, contiguous_runs, ms_to_day, today_utc, yesterday_utc

AUTOMATION_SENSOR = "automation_condition_sensor"
IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
             dg.DagsterRunStatus.STARTED]


SPEED_SOURCES = (SPEED_BARS, SPEED_PROVISIONAL)


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
    runs = instance.get_run_records(dg.RunsFilter(job_name=job, statuses=IN_FLIGHT,
                                                  tags={"dagster/partition": key}), limit=1)
    return bool(runs)


def repair_targets(settings: Settings) -> dict[str, str]:
    """``date|symbol`` -> reason id for batch partitions that need a REST refill (days up to yesterday): days
    a stream gap marker touches, days below 99 % of their minutes, and days missing since the symbol's first
    partition (the machine was off). A symbol with no partition yet is left to ``crypto-lambda backfill``:
    years of minutes are a decision, not a repair."""
    targets: dict[str, str] = {}
    last = yesterday_utc()
    for symbol in settings.symbols:
        days = lake_read.days(settings.lake, RAW_KLINES, symbol)
        if days:
            for day in missing_days(settings, symbol, first=days[0], last=last):
                targets[multi_key(day, symbol)] = f"missing:{today_utc()}"  # tried again tomorrow if it failed
    for gap in read_gaps(settings).itertuples():
        for day in {ms_to_day(gap.from_ms), ms_to_day(gap.to_ms)}:
            if settings.first_minute_day <= day <= last and gap.symbol in settings.symbols:
                targets[multi_key(day, gap.symbol)] = f"gap:{gap.from_ms}-{gap.to_ms}"
    threshold = MIN_DAY_COMPLETENESS * MINUTES_PER_DAY
    for symbol in settings.symbols:
        bars = lake_read.read(settings.lake, DAILY_OHLCV, [symbol], start=settings.first_minute_day, end=last,
                              columns=["date", "minutes_present"])
        for day, minutes in zip(bars["date"], bars["minutes_present"].fillna(0).astype(int), strict=True):
            if minutes < threshold:
                targets.setdefault(multi_key(day, symbol), f"incomplete:{minutes}")
    return targets


def build_sensors(settings: Settings) -> list[dg.SensorDefinition]:
    status = dg.DefaultSensorStatus.RUNNING if automation_on() else dg.DefaultSensorStatus.STOPPED

    @dg.sensor(job_name=SPEED_JOB, minimum_interval_seconds=30, default_status=status,
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

    @dg.sensor(job_name=MINUTES_JOB, minimum_interval_seconds=60, default_status=status,
               description="Re-fetch batch partitions covered by stream gap markers, below 99 % of minutes, "
                           "or missing since the first partition (catch-up after downtime).")
    def gap_repair_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        tried = set(json.loads(context.cursor)) if context.cursor else set()
        todo = {k: why for k, why in repair_targets(settings).items() if f"{k}@{why}" not in tried}
        if not todo:
            return dg.SkipReason("nothing to repair")
        symbols = sorted({k.split("|")[1] for k in todo})
        requests = []
        for first, last in contiguous_runs(dt.date.fromisoformat(k.split("|")[0]) for k in todo):
            keys = sorted(k for k in todo if first.isoformat() <= k.split("|")[0] <= last.isoformat())
            ident = hashlib.sha1(json.dumps([(k, todo[k]) for k in keys]).encode()).hexdigest()[:16]
            tags = {**range_tags(first, last, symbols), "crypto_lambda/repair": ",".join(keys)[:200]}
            requests.append(dg.RunRequest(run_key=f"repair:{ident}", tags=tags))
        tried |= {f"{k}@{why}" for k, why in todo.items()}
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(sorted(tried)))

    # Dagster's implicit default_automation_condition_sensor starts STOPPED (a UI toggle); ours follows
    # CRYPTO_LAMBDA_AUTOMATION like the rest, so eager serving_daily/daily_filled and the forecasts' on_cron
    # fire under `crypto-lambda up`. Every 5 minutes at most: each serving run starts Spark, and the speed
    # sensor reports a change every 30 s while the stream runs.
    automation = dg.AutomationConditionSensorDefinition(
        AUTOMATION_SENSOR, target=dg.AssetSelection.all(), default_status=status, minimum_interval_seconds=300,
        description="Evaluates the assets' automation conditions (eager serving/series, daily forecasts).")

    return [speed_output_sensor, gap_repair_sensor, automation]

