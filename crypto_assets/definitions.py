"""The Dagster code location. ``defs`` is built from the environment (CRYPTO_LAMBDA_* settings);
tests and the CLI call ``build_defs`` with their own settings.

Each domain of ``crypto_assets.defs`` contributes its ``build_defs(settings)``; this module merges them and adds
what belongs to the whole location: the resources (``lake`` carries the settings every asset, check and sensor
reads), the automation-condition sensor over every asset, and the executor. Runs use the in-process executor:
a run is one process with one SparkSession, so a backfill of N partitions pays Spark's start-up once (see
BackfillPolicy.single_run on the assets).
"""

from __future__ import annotations

import dagster as dg

from crypto_assets.defs import batch, forecast, maintenance, serving, speed
from crypto_assets.lib.resources import build_resources
from crypto_lambda.config import Settings, automation_on, load_settings

DOMAINS = (batch, speed, serving, forecast, maintenance)
AUTOMATION_SENSOR = "automation_condition_sensor"


def automation_sensor() -> dg.AutomationConditionSensorDefinition:
    """Dagster's implicit default_automation_condition_sensor starts STOPPED (a UI toggle); ours follows
    CRYPTO_LAMBDA_AUTOMATION like the rest, so eager serving_daily/daily_filled and the forecasts' on_cron
    fire under `crypto-lambda up`. Every 5 minutes at most: each serving run starts Spark, and the speed
    sensor reports a change every 30 s while the stream runs."""
    status = dg.DefaultSensorStatus.RUNNING if automation_on() else dg.DefaultSensorStatus.STOPPED
    return dg.AutomationConditionSensorDefinition(
        AUTOMATION_SENSOR, target=dg.AssetSelection.all(), default_status=status, minimum_interval_seconds=300,
        description="Evaluates the assets' automation conditions (eager serving/series, daily forecasts).")


def build_defs(settings: Settings) -> dg.Definitions:
    location = dg.Definitions(sensors=[automation_sensor()], resources=build_resources(settings),
                              executor=dg.in_process_executor)
    return dg.Definitions.merge(*(domain.build_defs(settings) for domain in DOMAINS), location)


defs = build_defs(load_settings())
