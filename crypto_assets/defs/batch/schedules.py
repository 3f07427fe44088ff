"""Schedules of the batch layer: yesterday's partitions at 00:10 UTC as one run for all symbols, then the
daily series (00:40) and yesterday's realized variance (00:50).

Schedules and sensors start RUNNING only when ``CRYPTO_LAMBDA_AUTOMATION=on`` (``crypto-lambda up`` sets it):
a daemon started for tests, ``make demo`` or a one-off ``dagster dev`` must not begin backfilling on its own.
"""


import datetime as dt

import dagster as dg

from crypto_assets.defs.batch.jobs import MINUTES_JOB, SERIES_JOB, VOLATILITY_JOB
from crypto_assets.lib.partitions import range_tags, symbol_range_tags
from crypto_lambda.config import Settings, automation_on
from crypto_lambda.timeutil import today_utc


def _tick_day(context: dg.ScheduleEvaluationContext) -> dt.date:
    when = context.scheduled_execution_time
    return when.astimezone(dt.UTC).date() if when else today_utc()


def _yesterday_schedule(name: str, cron: str, job: str, run_key: str, description: str, settings: Settings,
                        status: dg.DefaultScheduleStatus) -> dg.ScheduleDefinition:
    """A schedule that materializes yesterday x every symbol of ``job`` as one run."""

    @dg.schedule(name=name, cron_schedule=cron, execution_timezone="UTC", job_name=job, default_status=status,
                 description=description)
    def _schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        yesterday = _tick_day(context) - dt.timedelta(days=1)
        return dg.RunRequest(run_key=f"{run_key}-{yesterday}",
                             tags=range_tags(yesterday, yesterday, settings.symbols))

    return _schedule


def build_batch_schedules(settings: Settings) -> list[dg.ScheduleDefinition]:
    status = dg.DefaultScheduleStatus.RUNNING if automation_on() else dg.DefaultScheduleStatus.STOPPED
    daily_batch_schedule = _yesterday_schedule(
        "daily_batch_schedule", "10 0 * * *", MINUTES_JOB, "batch",
        "Materialize yesterday for every symbol (one run, one Spark session).", settings, status)

    @dg.schedule(cron_schedule="40 0 * * *", execution_timezone="UTC", job_name=SERIES_JOB,
                 default_status=status,
                 description="Rebuild each symbol's complete daily series after the minute batch landed.")
    def daily_series_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        return dg.RunRequest(run_key=f"series-{_tick_day(context)}", tags=symbol_range_tags(settings.symbols))

    daily_volatility_schedule = _yesterday_schedule(
        "daily_volatility_schedule", "50 0 * * *", VOLATILITY_JOB, "vol",
        "Yesterday's realized variance, after its minutes and the 1d history landed.", settings, status)
    return [daily_batch_schedule, daily_series_schedule, daily_volatility_schedule]
