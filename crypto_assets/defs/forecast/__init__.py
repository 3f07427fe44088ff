"""Forecast domain: every candidate cross-validated on the served daily series, the champion's next 30 days,
charts; the checks that the champion beats naive and its interval means what it says. It refreshes itself
once a day by its automation condition (no schedule of its own)."""

import dagster as dg

from crypto_assets.defs.forecast.assets import build_forecast_assets
from crypto_assets.defs.forecast.checks import build_forecast_checks
from crypto_assets.defs.forecast.jobs import build_forecast_jobs
from crypto_lambda.config import Settings


def build_defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(assets=build_forecast_assets(settings), asset_checks=build_forecast_checks(),
                          jobs=build_forecast_jobs())
