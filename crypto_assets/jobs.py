"""Jobs: the minute-level batch (raw -> daily bars) and the per-symbol series (history -> filled)."""

from __future__ import annotations

import dagster as dg

MINUTES_JOB = "batch_minutes_job"
SERIES_JOB = "batch_series_job"
SPEED_JOB = "speed_daily_job"
SERVING_JOB = "serving_job"
VOLATILITY_JOB = "realized_vol_job"


def build_jobs() -> list[dg.UnresolvedAssetJobDefinition]:
    return [
        dg.define_asset_job(MINUTES_JOB, selection=["raw_klines_1m", "daily_ohlcv"],
                            description="Materialize daily x symbol partitions of raw minutes and daily bars."),
        dg.define_asset_job(SERIES_JOB, selection=["daily_history_1d", "daily_filled"],
                            description="Rebuild each symbol's complete daily series."),
        dg.define_asset_job(SPEED_JOB, selection=["speed_daily"],
                            description="Daily bars from the streaming output (requested by speed_output_sensor)."),
        dg.define_asset_job(VOLATILITY_JOB, selection=["realized_vol_daily"],
                            description="Daily realized variance from the minutes (Spark) and the range history."),
        dg.define_asset_job(SERVING_JOB, selection=["serving_daily"],
                            description="Rebuild the merged serving view for every symbol."),
    ]
