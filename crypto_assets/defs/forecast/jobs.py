"""Job of the forecast domain."""

from __future__ import annotations

import dagster as dg

from crypto_lambda.lake.tables import FORECASTS

FORECAST_JOB = "forecast_job"


def build_forecast_jobs() -> list[dg.UnresolvedAssetJobDefinition]:
    return [dg.define_asset_job(FORECAST_JOB, selection=[FORECASTS],
                                description="Cross-validate, pick the champion and forecast, per symbol.")]
