"""Batch domain: 1-minute history -> daily OHLCV -> complete daily series, realized variance; their checks,
jobs, nightly schedules and the gap-repair sensor."""

import dagster as dg

from crypto_assets.defs.batch.assets import build_batch_assets
from crypto_assets.defs.batch.checks import build_batch_checks
from crypto_assets.defs.batch.jobs import build_batch_jobs
from crypto_assets.defs.batch.schedules import build_batch_schedules
from crypto_assets.defs.batch.sensors import build_batch_sensors
from crypto_lambda.config import Settings


def build_defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(assets=build_batch_assets(settings), asset_checks=build_batch_checks(),
                          jobs=build_batch_jobs(), schedules=build_batch_schedules(settings),
                          sensors=build_batch_sensors(settings))
