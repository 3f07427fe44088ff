"""Speed domain: daily bars derived from the streaming service's 1-minute output, their job and the sensor
that requests them when the stream commits."""

import dagster as dg

from crypto_assets.defs.speed.assets import build_speed_assets
from crypto_assets.defs.speed.jobs import build_speed_jobs
from crypto_assets.defs.speed.sensors import build_speed_sensors
from crypto_lambda.config import Settings


def build_defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(assets=build_speed_assets(settings), jobs=build_speed_jobs(),
                          sensors=build_speed_sensors(settings))
