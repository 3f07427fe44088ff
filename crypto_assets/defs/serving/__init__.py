"""Serving domain: the merged batch + speed daily series that users (and forecasts) read, its checks and job."""

import dagster as dg

from crypto_assets.defs.serving.assets import build_serving_assets
from crypto_assets.defs.serving.checks import build_serving_checks
from crypto_assets.defs.serving.jobs import build_serving_jobs
from crypto_lambda.config import Settings


def build_defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(assets=build_serving_assets(settings), asset_checks=build_serving_checks(),
                          jobs=build_serving_jobs())
