"""The batch layer's assets: 1-minute history -> daily OHLCV -> complete, forward-filled daily series with
MA7/MA30, and each day's realized variance. Asset names are the lake's dataset names
(:mod:`crypto_lambda.lake.tables`); the computations live in :mod:`crypto_lambda.batch`.
"""

import dagster as dg
from dagster_pyspark import PySparkResource

from crypto_assets.lib.metadata import as_metadata
from crypto_assets.lib.partitions import SYMBOL_DIM, daily_symbol_partitions, days_by_symbol, symbol_partitions
from crypto_assets.lib.resources import ExchangeResource, LakeResource
from crypto_lambda.batch.daily import build_daily_filled, build_daily_history, build_daily_ohlcv
from crypto_lambda.batch.raw import import_raw
from crypto_lambda.batch.volatility import build_realized_vol
from crypto_lambda.config import Settings
from crypto_lambda.lake.tables import DAILY_FILLED, DAILY_HISTORY, DAILY_OHLCV, RAW_KLINES, REALIZED_VOL

GROUP = "batch"


def build_batch_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    minutes_parts = daily_symbol_partitions(settings)
    symbol_parts = symbol_partitions(settings)
    single_run = dg.BackfillPolicy.single_run()
    by_symbol = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name=SYMBOL_DIM)

    @dg.asset(name=RAW_KLINES, partitions_def=minutes_parts, backfill_policy=single_run, group_name=GROUP,
              kinds={"delta", "spark"},
              description="One UTC day of 1-minute klines per symbol, from imported files or the exchange.")
    def raw_klines_1m(context: dg.AssetExecutionContext, lake: LakeResource, exchange: ExchangeResource,
                      pyspark: PySparkResource) -> dg.MaterializeResult:
        meta = import_raw(pyspark.spark_session, lake.settings(), exchange.client(),
                          days_by_symbol(context.partition_keys), context.run_id, context.log)
        return dg.MaterializeResult(metadata=as_metadata(meta))

    @dg.asset(name=DAILY_OHLCV, partitions_def=minutes_parts, backfill_policy=single_run, group_name=GROUP,
              deps=[raw_klines_1m], kinds={"delta", "spark"},
              description="Daily OHLCV per symbol aggregated from the day's minutes (Spark), with minutes_present.")
    def daily_ohlcv(context: dg.AssetExecutionContext, lake: LakeResource,
                    pyspark: PySparkResource) -> dg.MaterializeResult:
        days = days_by_symbol(context.partition_keys)
        meta = build_daily_ohlcv(pyspark.spark_session, lake.settings(), days, context.run_id)
        context.log.info(f"daily_ohlcv: {meta}")
        return dg.MaterializeResult(metadata=meta)

    @dg.asset(name=DAILY_HISTORY, partitions_def=symbol_parts, backfill_policy=single_run, group_name=GROUP,
              kinds={"delta", "spark"},
              description="Exchange 1d klines from CRYPTO_LAMBDA_START up to the first minute partition.")
    def daily_history_1d(context: dg.AssetExecutionContext, lake: LakeResource, exchange: ExchangeResource,
                         pyspark: PySparkResource) -> dg.MaterializeResult:
        meta = build_daily_history(pyspark.spark_session, exchange.client(), lake.settings(),
                                   sorted(context.partition_keys), context.run_id)
        return dg.MaterializeResult(metadata=as_metadata(meta))

    @dg.asset(
        name=DAILY_FILLED, partitions_def=symbol_parts, backfill_policy=single_run, group_name=GROUP,
        kinds={"delta", "spark"},
        ins={DAILY_OHLCV: dg.AssetIn(dagster_type=dg.Nothing, partition_mapping=by_symbol),
             DAILY_HISTORY: dg.AssetIn(dagster_type=dg.Nothing)},
        automation_condition=dg.AutomationCondition.eager(),
        description="Every day from the first bar to yesterday; gaps forward-filled and flagged; MA7/MA30.",
    )
    def daily_filled(context: dg.AssetExecutionContext, lake: LakeResource,
                     pyspark: PySparkResource) -> dg.MaterializeResult:
        meta = build_daily_filled(pyspark.spark_session, lake.settings(), sorted(context.partition_keys),
                                  run_id=context.run_id)
        meta["series"] = meta.pop("days")
        return dg.MaterializeResult(metadata=as_metadata(meta))

    @dg.asset(
        name=REALIZED_VOL, partitions_def=minutes_parts, backfill_policy=single_run, group_name=GROUP,
        kinds={"delta", "spark"}, deps=[raw_klines_1m, dg.AssetDep(DAILY_HISTORY, partition_mapping=by_symbol)],
        description="Each day's realized variance from its 1-minute log returns (sum r^2, sqrt, minutes used) "
                    "with the Garman-Klass range estimate beside it; range-only rows for older days (source).")
    def realized_vol_daily(context: dg.AssetExecutionContext, lake: LakeResource,
                           pyspark: PySparkResource) -> dg.MaterializeResult:
        meta = build_realized_vol(pyspark.spark_session, lake.settings(), days_by_symbol(context.partition_keys),
                                  context.run_id)
        context.log.info(f"realized_vol_daily: {meta}")
        return dg.MaterializeResult(metadata=as_metadata(meta))

    return [raw_klines_1m, daily_ohlcv, daily_history_1d, daily_filled, realized_vol_daily]
