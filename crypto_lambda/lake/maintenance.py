"""Keeping the lake's Delta tables few-filed and bounded: OPTIMIZE (compaction) and VACUUM, per table.

* OPTIMIZE rewrites a partition's small files (a day's replace, a micro-batch's append) into one file per
  partition bin. It is a commit like any other: readers keep their version, time travel to a version before it
  still works (the old files stay referenced by the log until VACUUM removes them).
* VACUUM deletes files no version younger than the table's ``delta.deletedFileRetentionDuration`` references:
  7 days (:data:`~crypto_lambda.lake.tables.TABLE_PROPERTIES`), which is the time travel window for data.
  Delta's ``retentionDurationCheck`` stays on: a shorter retention (``retain_hours``) is refused by Delta
  unless an operator turns the check off for a session on purpose; this module never does.

The tables are every Delta table folder under the lake, registered in ``TABLES`` or not:
:func:`crypto_lambda.lake.read.lake_tables`.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from crypto_lambda.lake import read as lake_read
from crypto_lambda.lake import write as lake_write
from crypto_lambda.lake.read import lake_tables, open_folder
from crypto_lambda.lake.tables import SPEED_BARS, TABLE_PROPERTIES

log = logging.getLogger(__name__)

RETENTION_PROPERTY = "delta.deletedFileRetentionDuration"
RETENTION = TABLE_PROPERTIES[RETENTION_PROPERTY]  # "interval 7 days"
STREAMING_TABLE = SPEED_BARS  # compacted daily like the rest: a micro-batch adds a file per partition
_USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"


def disk_files(path: Path) -> dict:
    """Parquet files on disk under a table (referenced or not): what VACUUM shrinks."""
    files = [p for p in path.rglob("*.parquet") if "_delta_log" not in p.parts]
    return {"files": len(files), "bytes": sum(p.stat().st_size for p in files)}


def _sizes(path: Path) -> dict:
    table = lake_read.sizes_of(open_folder(path))
    disk = disk_files(path)
    return {"files": table["files"], "bytes": table["bytes"], "disk_files": disk["files"],
            "disk_bytes": disk["bytes"]}


def maintain_table(spark, path: Path, *, vacuum: bool = True, retain_hours: float | None = None,
                   run_id: str | None = None) -> dict:
    """OPTIMIZE then VACUUM one table; files and bytes (in the newest version, and on disk) before and after,
    the versions around it and the seconds it took."""
    started = time.perf_counter()
    before = _sizes(path)
    version_before = open_folder(path).version()
    spark.conf.set(_USER_METADATA, json.dumps({"run_id": run_id, "write": "lake_maintenance"}, sort_keys=True))
    try:
        lake_write._retry(lambda: spark.sql(f"OPTIMIZE delta.`{path}`").collect(), f"optimize {path.name}")
        optimized = time.perf_counter()
        if vacuum:
            retain = "" if retain_hours is None else f" RETAIN {float(retain_hours)} HOURS"
            lake_write._retry(lambda: spark.sql(f"VACUUM delta.`{path}`{retain}").collect(), f"vacuum {path.name}")
    finally:
        spark.conf.unset(_USER_METADATA)
    after = _sizes(path)
    done = time.perf_counter()
    return {"version_before": version_before, "version_after": open_folder(path).version(),
            **{f"{k}_before": v for k, v in before.items()}, **{f"{k}_after": v for k, v in after.items()},
            "optimize_seconds": round(optimized - started, 2), "vacuum_seconds": round(done - optimized, 2)}


def maintain(spark, lake: Path, names: list[str] | None = None, *, vacuum: bool = True,
             run_id: str | None = None) -> dict[str, dict]:
    """:func:`maintain_table` on every table under the lake (or ``names``), streaming table included."""
    found = lake_tables(lake)
    wanted = list(found) if names is None else [n for n in names if n in found]
    report = {}
    for name in wanted:
        report[name] = maintain_table(spark, found[name], vacuum=vacuum, run_id=run_id)
        log.info("maintenance %s: %s", name, report[name])
    return report
