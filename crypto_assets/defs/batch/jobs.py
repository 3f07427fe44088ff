"""Jobs of the batch layer: the minute-level batch (raw -> daily bars), the per-symbol series (history ->
filled), and the realized variance."""

from __future__ import annotations

import dagster as dg

from crypto_lambda.lake.tables import DAILY_FILLED, DAILY_HISTORY, DAILY_OHLCV, RAW_KLINES, REALIZED_VOL

MINUTES_JOB = "batch_minutes_job"
SERIES_JOB = "batch_series_job"
VOLATILITY_JOB = "realized_vol_job"


def build_batch_jobs() -> list[dg.UnresolvedAssetJobDefinition]:
    return [
        dg.define_asset_job(MINUTES_JOB, selection=[RAW_KLINES, DAILY_OHLCV],
                            description="Materialize daily x symbol partitions of raw minutes and daily bars."),
        dg.define_asset_job(SERIES_JOB, selection=[DAILY_HISTORY, DAILY_FILLED],
                            description="Rebuild each symbol's complete daily series."),
        dg.define_asset_job(VOLATILITY_JOB, selection=[REALIZED_VOL],
                            description="Daily realized variance from the minutes (Spark) and the range history."),
    ]
