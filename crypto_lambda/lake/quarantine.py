"""Rows refused by validation, appended to the Delta table ``quarantine`` (partitioned by ``kind``:
``rest``, ``rest_1d``, ``import``, ...) instead of one small Parquet file per batch.

Written with delta-rs, not Spark: ``crypto-lambda import`` runs without a JVM, and a quarantine append is a
few rows. delta-rs and Spark writers share the table safely (both commit through the log with put-if-absent),
and the table is created with the same properties as Spark's (:meth:`Table.properties`).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from crypto_lambda.lake import read as lake_read
from crypto_lambda.lake import write as lake_write
from crypto_lambda.lake.tables import LAKE_QUARANTINE_SCHEMA, QUARANTINE, table, table_path
from crypto_lambda.schema import QUARANTINE_SCHEMA


def append(lake: Path, kind: str, bad: pd.DataFrame | None, run_id: str | None = None) -> int:
    """Append ``bad`` (QUARANTINE_SCHEMA columns) under ``kind`` in one commit; returns the rows written."""
    if not kind or not kind.replace("_", "").isalnum():
        raise ValueError(f"quarantine kind must be a short word, not {kind!r}")
    if bad is None or not len(bad):
        return 0
    missing = [c for c in QUARANTINE_SCHEMA.names if c not in bad.columns]
    if missing:
        raise ValueError(f"quarantine rows lack column(s) {', '.join(missing)}")
    frame = bad[list(QUARANTINE_SCHEMA.names)].assign(kind=kind, quarantined_at=pd.Timestamp.now(tz="UTC"))
    rows = pa.Table.from_pandas(frame[LAKE_QUARANTINE_SCHEMA.names], schema=LAKE_QUARANTINE_SCHEMA,
                                preserve_index=False)
    meta = json.dumps({"run_id": run_id, "kind": kind}, sort_keys=True)
    path = table_path(lake, QUARANTINE)
    path.parent.mkdir(parents=True, exist_ok=True)
    lake_write.rs_append(str(path), rows, meta, partition_by=["kind"], configuration=table(QUARANTINE).properties())
    return rows.num_rows


def read(lake: Path, kind: str | None = None, since: dt.datetime | None = None) -> pd.DataFrame:
    """Quarantined rows (of one ``kind``; quarantined at or after ``since``), oldest first."""
    if not lake_read.exists(lake, QUARANTINE):
        return LAKE_QUARANTINE_SCHEMA.empty_table().to_pandas()
    expr = None
    if kind is not None:
        expr = pc.field("kind") == kind
    if since is not None:
        after = pc.field("quarantined_at") >= pa.scalar(since, pa.timestamp("us", tz="UTC"))
        expr = after if expr is None else expr & after
    dataset = lake_read.open_table(lake, QUARANTINE).to_pyarrow_dataset()
    table = dataset.to_table(filter=expr).select(LAKE_QUARANTINE_SCHEMA.names)
    return table.to_pandas().sort_values("quarantined_at", kind="stable").reset_index(drop=True)
