"""Dagster asset definitions of the batch layer (the computations live in raw.py and daily.py)."""


import dagster as dg
from dagster_pyspark import PySparkResource

from crypto_assets.assets.batch.daily import build_daily_filled, build_daily_history, build_daily_ohlcv
from crypto_assets.assets.batch.raw import materialize_raw
from crypto_assets.partitions import SYMBOL_DIM, daily_symbol_partitions, days_by_symbol, symbol_partitions
from crypto_assets.resources import ExchangeResource, LakeResource
from crypto_lambda.config import Settings

GROUP = "batch"


def build_batch_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    minutes_parts = daily_symbol_partitions(settings)
    symbol_parts = symbol_partitions(settings)
    single_run = dg.BackfillPolicy.single_run()

    @dg.asset(partitions_def=minutes_parts, backfill_policy=single_run, group_name=GROUP,
              kinds={"delta", "spark"},
              description="One UTC day of 1-minute klines per symbol, from imported files or the exchange.")
    def raw_klines_1m(context: dg.AssetExecutionContext, lake: LakeResource, exchange: ExchangeResource,
                      pyspark: PySparkResource) -> dg.MaterializeResult:
        days = days_by_symbol(context.partition_keys)
        meta = materialize_raw(context, lake, exchange, days, pyspark.spark_session)
        return dg.MaterializeResult(metadata=meta)

    @dg.asset(partitions_def=minutes_parts, backfill_policy=single_run, group_name=GROUP, deps=[raw_klines_1m],
              kinds={"delta", "spark"},
              description="Daily OHLCV per symbol aggregated from the day's minutes (Spark), with minutes_present.")
    def daily_ohlcv(context: dg.AssetExecutionContext, lake: LakeResource,
                    pyspark: PySparkResource) -> dg.MaterializeResult:
        days = days_by_symbol(context.partition_keys)
        meta = build_daily_ohlcv(pyspark.spark_session, lake.settings(), days, context.run_id)
        context.log.info(f"daily_ohlcv: {meta}")
        return dg.MaterializeResult(metadata=meta)

    @dg.asset(partitions_def=symbol_parts, backfill_policy=single_run, group_name=GROUP,
              kinds={"delta", "spark"},
              description="Exchange 1d klines from CRYPTO_LAMBDA_START up to the first minute partition.")
    def daily_history_1d(context: dg.AssetExecutionContext, lake: LakeResource, exchange: ExchangeResource,
                         pyspark: PySparkResource) -> dg.MaterializeResult:
        meta = build_daily_history(pyspark.spark_session, exchange.client(), lake.settings(),
                                   sorted(context.partition_keys), context.run_id)
        meta["history_days"] = dg.MetadataValue.json(meta["history_days"])
        return dg.MaterializeResult(metadata=meta)

    @dg.asset(
        partitions_def=symbol_parts, backfill_policy=single_run, group_name=GROUP, kinds={"delta", "spark"},
        ins={
            "daily_ohlcv": dg.AssetIn(dagster_type=dg.Nothing, partition_mapping=(
                dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name=SYMBOL_DIM))),
            "daily_history_1d": dg.AssetIn(dagster_type=dg.Nothing),
        },
        automation_condition=dg.AutomationCondition.eager(),
        description="Every day from the first bar to yesterday; gaps forward-filled and flagged; MA7/MA30.",
    )
    def daily_filled(context: dg.AssetExecutionContext, lake: LakeResource,
                     pyspark: PySparkResource) -> dg.MaterializeResult:
        meta = build_daily_filled(pyspark.spark_session, lake.settings(), sorted(context.partition_keys),
                                  run_id=context.run_id)
        meta["series"] = dg.MetadataValue.json(meta.pop("days"))
        return dg.MaterializeResult(metadata=meta)

    return [raw_klines_1m, daily_ohlcv, daily_history_1d, daily_filled]
