"""The Dagster code location. ``defs`` is built from the environment (CRYPTO_LAMBDA_* settings);
tests and the CLI call ``build_defs`` with their own settings.

Runs use the in-process executor: a run is one process with one SparkSession, so a backfill of N
partitions pays Spark's start-up once (see BackfillPolicy.single_run on the assets).
"""

from __future__ import annotations

import dagster as dg

from crypto_assets.assets.batch.assets import build_batch_assets
from crypto_assets.assets.batch.volatility import build_volatility_assets
from crypto_assets.assets.forecast.assets import build_forecast_assets, build_forecast_jobs
from crypto_assets.assets.maintenance import (
    build_maintenance_assets,
    build_maintenance_jobs,
    build_maintenance_schedules,
)
from crypto_assets.assets.serving.assets import build_serving_assets
from crypto_assets.assets.speed.assets import build_speed_assets
from crypto_assets.checks.batch import build_batch_checks
from crypto_assets.checks.forecast import build_forecast_checks
from crypto_assets.checks.serving import build_serving_checks
from crypto_assets.checks.volatility import build_volatility_checks
from crypto_assets.jobs import build_jobs
from crypto_assets.resources import build_resources
from crypto_assets.schedules import build_schedules
from crypto_assets.sensors import build_sensors
from crypto_lambda.config import Settings, load_settings


def build_defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        assets=[*build_batch_assets(settings), *build_volatility_assets(settings), *build_speed_assets(settings),
                *build_serving_assets(settings), *build_forecast_assets(settings), *build_maintenance_assets()],
        asset_checks=[*build_batch_checks(), *build_volatility_checks(), *build_serving_checks(),
                      *build_forecast_checks()],
        jobs=[*build_jobs(), *build_forecast_jobs(), *build_maintenance_jobs()],
        schedules=[*build_schedules(settings), *build_maintenance_schedules()],
        sensors=build_sensors(settings),
        resources=build_resources(settings),
        executor=dg.in_process_executor,
    )


defs = build_defs(load_settings())
