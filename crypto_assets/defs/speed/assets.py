"""``speed_daily``: the day's bar from the streaming 1-minute output (computed by
:mod:`crypto_lambda.speed_daily`), requested by the streaming-output sensor."""

import dagster as dg
from dagster_pyspark import PySparkResource

from crypto_assets.lib.partitions import days_by_symbol, speed_partitions
from crypto_assets.lib.resources import LakeResource
from crypto_lambda.config import Settings
from crypto_lambda.lake.tables import SPEED_DAILY
from crypto_lambda.speed_daily import build_speed_daily


def build_speed_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    @dg.asset(name=SPEED_DAILY, partitions_def=speed_partitions(settings),
              backfill_policy=dg.BackfillPolicy.single_run(), group_name="speed", kinds={"delta", "python"},
              description="The day's bar from the streaming 1-minute output (committed + in-progress minutes), "
                          "with minutes_covered and is_provisional.")
    def speed_daily(context: dg.AssetExecutionContext, lake: LakeResource,
                    pyspark: PySparkResource) -> dg.MaterializeResult:
        meta = build_speed_daily(pyspark.spark_session, lake.settings(), days_by_symbol(context.partition_keys),
                                 run_id=context.run_id)
        return dg.MaterializeResult(metadata=meta)

    return [speed_daily]
