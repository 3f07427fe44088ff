"""``serving_daily``: the merged batch + speed series (computed by :mod:`crypto_lambda.serving`), refreshed
automatically when batch or speed inputs change."""

import dagster as dg
from dagster_pyspark import PySparkResource

from crypto_assets.lib.partitions import SYMBOL_DIM, symbol_partitions
from crypto_assets.lib.resources import LakeResource
from crypto_lambda.config import Settings
from crypto_lambda.lake.tables import DAILY_FILLED, SERVING_DAILY, SPEED_DAILY
from crypto_lambda.serving import build_serving_daily

# eager, minus "no dependency missing": speed_daily maps every day of a symbol onto its serving partition, and
# most days never have a speed bar (the batch layer has them), so plain eager() would never fire.
SERVING_CONDITION = dg.AutomationCondition.eager().without(~dg.AutomationCondition.any_deps_missing())


def build_serving_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    @dg.asset(
        name=SERVING_DAILY, partitions_def=symbol_partitions(settings), backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="serving", kinds={"delta", "spark"},
        ins={
            DAILY_FILLED: dg.AssetIn(dagster_type=dg.Nothing),
            SPEED_DAILY: dg.AssetIn(dagster_type=dg.Nothing, partition_mapping=(
                dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name=SYMBOL_DIM))),
        },
        automation_condition=SERVING_CONDITION,
        description="Batch bar when the batch day is complete, else speed, else forward fill; source column; "
                    "MA7/MA30 over the merged series.",
    )
    def serving_daily(context: dg.AssetExecutionContext, lake: LakeResource,
                      pyspark: PySparkResource) -> dg.MaterializeResult:
        meta = build_serving_daily(pyspark.spark_session, lake.settings(), sorted(context.partition_keys),
                                   run_id=context.run_id)
        return dg.MaterializeResult(metadata={"days_by_source": dg.MetadataValue.json(meta["days_by_source"]),
                                              **meta["commit"].metadata()})

    return [serving_daily]
