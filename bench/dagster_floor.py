"""The backfill's Dagster floor: the same two jobs with assets and checks that do nothing.

Why: a single-run backfill of N day x symbol partitions still makes Dagster write one "materialization
planned" and one "materialization" event per partition and asset (SQLite, one transaction each, plus the
cross-run index), whatever the assets compute. This module builds definitions with the project's partitions,
backfill policy, jobs, asset graph and checks, but bodies that return at once, and runs them through the
project's ``run_backfill``: what is left is Dagster's own cost, a lower bound for the real backfill.
"""

from __future__ import annotations

import dagster as dg

from crypto_assets.defs.batch.checks import NO_DUPLICATE_MINUTES, NO_GAPS, OHLC_SANE
from crypto_assets.defs.batch.jobs import MINUTES_JOB, SERIES_JOB, build_batch_jobs
from crypto_assets.lib.partitions import SYMBOL_DIM, daily_symbol_partitions, symbol_partitions
from crypto_lambda.config import Settings
from crypto_lambda.lake.tables import DAILY_FILLED, DAILY_OHLCV, RAW_KLINES


def noop_defs(settings: Settings) -> dg.Definitions:
    minutes, per_symbol = daily_symbol_partitions(settings), symbol_partitions(settings)
    single_run = dg.BackfillPolicy.single_run()

    @dg.asset(partitions_def=minutes, backfill_policy=single_run)
    def raw_klines_1m() -> dg.MaterializeResult:
        return dg.MaterializeResult()

    @dg.asset(partitions_def=minutes, backfill_policy=single_run, deps=[raw_klines_1m])
    def daily_ohlcv() -> dg.MaterializeResult:
        return dg.MaterializeResult()

    @dg.asset(partitions_def=per_symbol, backfill_policy=single_run)
    def daily_history_1d() -> dg.MaterializeResult:
        return dg.MaterializeResult()

    @dg.asset(partitions_def=per_symbol, backfill_policy=single_run, ins={
        "daily_ohlcv": dg.AssetIn(dagster_type=dg.Nothing, partition_mapping=(
            dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name=SYMBOL_DIM))),
        "daily_history_1d": dg.AssetIn(dagster_type=dg.Nothing)})
    def daily_filled() -> dg.MaterializeResult:
        return dg.MaterializeResult()

    def check(asset: str, name: str) -> dg.AssetChecksDefinition:
        @dg.asset_check(asset=asset, name=name)
        def _check() -> dg.AssetCheckResult:
            return dg.AssetCheckResult(passed=True)
        return _check

    return dg.Definitions(
        assets=[raw_klines_1m, daily_ohlcv, daily_history_1d, daily_filled],
        asset_checks=[check(RAW_KLINES, NO_DUPLICATE_MINUTES), check(DAILY_OHLCV, OHLC_SANE),
                      check(DAILY_FILLED, NO_GAPS)],
        jobs=[j for j in build_batch_jobs() if j.name in (MINUTES_JOB, SERIES_JOB)],
        executor=dg.in_process_executor)
