"""Job of the speed domain: the daily bars from the streaming output, requested by ``speed_output_sensor``."""

from __future__ import annotations

import dagster as dg

from crypto_lambda.lake.tables import SPEED_DAILY

SPEED_JOB = "speed_daily_job"


def build_speed_jobs() -> list[dg.UnresolvedAssetJobDefinition]:
    return [dg.define_asset_job(SPEED_JOB, selection=[SPEED_DAILY],
                                description="Daily bars from the streaming output (requested by speed_output_sensor).")]
