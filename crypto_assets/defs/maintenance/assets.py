"""``lake_maintenance``: every night OPTIMIZE (compaction) and VACUUM on every Delta table of the lake.

Why: each run's replace and each streaming micro-batch adds files; OPTIMIZE rewrites a partition's small files
into one, so readers (DuckDB, delta-rs, Spark) open few files. VACUUM then deletes files that no version
younger than the retention references: ``delta.deletedFileRetentionDuration`` = 7 days on every table (see
``crypto_lambda.lake.tables.TABLE_PROPERTIES``), so ``query --as-of`` reaches a week back in data. Delta's
retention check stays on. The streaming table (``speed_klines_1m``) is compacted with the rest, daily;
OPTIMIZE commits beside a running stream (appends do not conflict with it; a conflict is retried).
Metadata: per table the files and bytes of the newest version and on disk, before and after.
"""

import dagster as dg
from dagster_pyspark import PySparkResource

from crypto_assets.lib.resources import LakeResource
from crypto_lambda.lake import maintenance

LAKE_MAINTENANCE = "lake_maintenance"


def build_maintenance_assets() -> list[dg.AssetsDefinition]:
    @dg.asset(name=LAKE_MAINTENANCE, group_name="maintenance", kinds={"delta", "spark"},
              description="OPTIMIZE and VACUUM (retention: the tables' deletedFileRetentionDuration, 7 days) on "
                          "every lake table, the streaming table included; file counts and bytes before/after.")
    def lake_maintenance(context: dg.AssetExecutionContext, lake: LakeResource,
                         pyspark: PySparkResource) -> dg.MaterializeResult:
        report = maintenance.maintain(pyspark.spark_session, lake.settings().lake, run_id=context.run_id)
        meta: dict[str, dg.MetadataValue] = {
            "tables": dg.MetadataValue.int(len(report)), "retention": dg.MetadataValue.text(maintenance.RETENTION),
            "files_before": dg.MetadataValue.int(sum(r["files_before"] for r in report.values())),
            "files_after": dg.MetadataValue.int(sum(r["files_after"] for r in report.values())),
            "by_table": dg.MetadataValue.json(report)}
        for name, row in report.items():
            for key in ("files_before", "files_after", "bytes_before", "bytes_after"):
                meta[f"{name}/{key}"] = dg.MetadataValue.int(row[key])
        return dg.MaterializeResult(metadata=meta)

    return [lake_maintenance]

