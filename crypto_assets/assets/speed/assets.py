"""Dagster definition of ``speed_daily`` (requested by the streaming-output sensor)."""

import dagster as dg
from dagster_pyspark import PySparkResource

from crypto_assets.assets.speed.daily import build_speed_daily
from crypto_assets.partitions import days_by_symbol, speed_partitions
from crypto_assets.resources import LakeResource
from crypto_lambda.config import Settings


def build_speed_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    @dg.asset(partitions_def=speed_partitions(settings), backfill_policy=dg.BackfillPolicy.single_run(),
              group_name="speed", kinds={"delta", "python"},
              description="The day's bar from the streaming 1-minute output (committed + in-progress minutes), "
                          "with minutes_covered and is_provisional.")
    def speed_daily(context: dg.AssetExecutionContext, lake: LakeResource,
                    pyspark: PySparkResource) -> dg.MaterializeResult:
        meta = build_speed_daily(pyspark.spark_session, lake.settings(), days_by_symbol(context.partition_keys),
                                 run_id=context.run_id)
        return dg.MaterializeResult(metadata=meta)

    return [speed_daily]
