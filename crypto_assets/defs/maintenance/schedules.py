"""Schedule of the maintenance domain: nightly, after the batch schedules and the forecasts. Like every
schedule it starts RUNNING only when ``CRYPTO_LAMBDA_AUTOMATION=on``."""

from __future__ import annotations

import dagster as dg

from crypto_assets.defs.maintenance.jobs import MAINTENANCE_JOB
from crypto_lambda.config import automation_on

MAINTENANCE_CRON = "20 3 * * *"  # after the night's batch (00:10-00:50) and forecasts (01:30)


def build_maintenance_schedules() -> list[dg.ScheduleDefinition]:
    status = dg.DefaultScheduleStatus.RUNNING if automation_on() else dg.DefaultScheduleStatus.STOPPED
    return [dg.ScheduleDefinition(name="lake_maintenance_schedule", cron_schedule=MAINTENANCE_CRON,
                                  execution_timezone="UTC", job_name=MAINTENANCE_JOB, default_status=status,
                                  description="Nightly OPTIMIZE + VACUUM of the lake's Delta tables.")]
