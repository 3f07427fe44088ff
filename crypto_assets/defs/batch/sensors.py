"""``gap_repair_sensor`` turns the producer's gap markers and incomplete raw partitions (below the
completeness threshold of :mod:`crypto_lambda.quality`) into one single-run range backfill of the minutes
job per tick, tagged ``crypto_lambda/repair``. Each (partition, reason) is tried once, so a day the exchange
itself lacks does not loop. It reads the ``Settings`` the definitions were built with, the object the
``lake`` resource of the runs it requests is built from (:mod:`crypto_assets.lib.resources`).
"""

import datetime as dt
import hashlib
import json

import dagster as dg

from crypto_assets.defs.batch.jobs import MINUTES_JOB
from crypto_assets.lib.partitions import multi_key, range_tags
from crypto_lambda.config import Settings, automation_on
from crypto_lambda.coverage import incomplete_days, missing_days
from crypto_lambda.lake import read as lake_read
from crypto_lambda.lake.speed import read_gaps
from crypto_lambda.lake.tables import RAW_KLINES
from crypto_lambda.quality import MIN_DAY_COMPLETENESS
from crypto_lambda.timeutil import contiguous_runs, ms_to_day, today_utc, yesterday_utc

REPAIR_TAG = "crypto_lambda/repair"
GAP_REPAIR_SENSOR = "gap_repair_sensor"


def repair_targets(settings: Settings) -> dict[str, str]:
    """``date|symbol`` -> reason id for batch partitions that need a REST refill (days up to yesterday): days
    a stream gap marker touches, incomplete days, and days missing since the symbol's first partition (the
    machine was off). A symbol with no partition yet is left to ``crypto-lambda backfill``: years of minutes
    are a decision, not a repair."""
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
    for symbol in settings.symbols:
        for day, minutes in incomplete_days(settings, symbol, last):
            targets.setdefault(multi_key(day, symbol), f"incomplete:{minutes}")
    return targets


def build_batch_sensors(settings: Settings) -> list[dg.SensorDefinition]:
    status = dg.DefaultSensorStatus.RUNNING if automation_on() else dg.DefaultSensorStatus.STOPPED

    @dg.sensor(name=GAP_REPAIR_SENSOR, job_name=MINUTES_JOB, minimum_interval_seconds=60, default_status=status,
               description="Re-fetch batch partitions covered by stream gap markers, below "
                           f"{MIN_DAY_COMPLETENESS * 100:g} % of minutes, "
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
            tags = {**range_tags(first, last, symbols), REPAIR_TAG: ",".join(keys)[:200]}
            requests.append(dg.RunRequest(run_key=f"repair:{ident}", tags=tags))
        tried |= {f"{k}@{why}" for k, why in todo.items()}
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(sorted(tried)))

    return [gap_repair_sensor]
