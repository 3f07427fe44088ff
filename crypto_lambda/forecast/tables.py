"""The forecasts' lake tables (Delta, written by Spark per run, read by delta-rs): the newest champion
forecast, the newest metrics of both targets, the newest volatility forecast, one set of rows per symbol.

Their columns follow the models (a new metric or model family adds a column), so the specs have no schema:
the writer's frame decides and Delta merges new columns in (``mergeSchema``). Importing this module registers
them in :data:`crypto_lambda.lake.tables.TABLES`, which is how ``query``, ``history`` and the maintenance
asset learn about them; it imports nothing heavy.
"""

from __future__ import annotations

from crypto_lambda.lake.tables import Table, register

FORECAST_METRICS = "forecast_metrics"  # lake table, and the name of the query view
FORECASTS = "forecasts"  # the newest champion forecast per symbol
VOL_FORECASTS = "volatility_forecasts"  # the newest volatility forecast per symbol

FORECAST_TABLES = (
    register(Table(FORECASTS, None, ("symbol",), ("symbol", "date"))),
    register(Table(FORECAST_METRICS, None, ("symbol",), ("symbol", "target", "model", "horizon"))),
    register(Table(VOL_FORECASTS, None, ("symbol",), ("symbol", "date"))),
)
