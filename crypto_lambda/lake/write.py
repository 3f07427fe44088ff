"""Writing the lake's Delta tables with Spark: one atomic commit per call, idempotent, retried on conflicts.

* :func:`replace` is how a Dagster run writes its rectangle of daily x symbol partitions: one ``replaceWhere``
  overwrite (delete the rectangle's rows, add the new ones, one commit). Re-running it leaves one copy, and a
  reader sees the version before or after, never half. Delta checks that every new row lies inside the
  rectangle, so a run cannot overwrite a neighbour by mistake.
* :func:`append_once` appends a few rows with an idempotent-writer ``txn`` action (app id, version): a
  micro-batch or a retried step that commits twice is skipped the second time. Spark creates the table,
  delta-rs commits the rows through :func:`rs_append`, the one JVM-free append (the quarantine uses it too).
* Two writers on one table (a backfill and the speed layer's compaction, two runs) are serialised by Delta's
  optimistic concurrency; a conflict is retried from scratch (the writes are idempotent, so that is safe).

Every commit carries ``userMetadata`` JSON (the Dagster run id when there is one) so ``crypto-lambda history``
can say who wrote what; :func:`replace` returns the version it wrote, read back from the log by delta-rs.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from crypto_lambda.lake import read as lake_read
from crypto_lambda.lake.tables import MONTH, Table, ddl_columns, rectangle, table, table_path

log = logging.getLogger(__name__)

# Delta's exceptions for a commit that lost a race with another writer; the losing write can simply be re-run.
_CONFLICTS = ("ConcurrentAppendException", "ConcurrentDeleteReadException", "ConcurrentDeleteDeleteException",
              "ConcurrentTransactionException", "MetadataChangedException", "ProtocolChangedException",
              "DELTA_CONCURRENT_", "DELTA_METADATA_CHANGED", "DELTA_PROTOCOL_CHANGED")
ATTEMPTS = 5


@dataclass(frozen=True)
class Commit:
    """What one write did: the table version it created (None: nothing committed, e.g. a skipped replay)."""

    table: str
    version: int | None
    rows: int
    files_added: int
    files_removed: int
    files_in_table: int

    def metadata(self) -> dict:
        """For Dagster materialization metadata."""
        return {f"{self.table}_version": self.version, f"{self.table}_rows_written": self.rows,
                f"{self.table}_files": self.files_in_table}


def _is_conflict(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}"
    return any(name in text for name in _CONFLICTS)


def ensure_table(spark, lake: Path, name: str) -> Path:
    """Create the table (schema, partitioning, properties) if it does not exist yet; its path."""
    spec = table(name)
    path = table_path(lake, name)
    if lake_read.exists(lake, name) or spec.schema is None:
        return path
    props = ", ".join(f"'{k}' = '{v}'" for k, v in spec.properties().items())
    sql = (f"CREATE TABLE IF NOT EXISTS delta.`{path}` ({ddl_columns(spec)}) USING DELTA "
           f"PARTITIONED BY ({', '.join(spec.partition_by)}) TBLPROPERTIES ({props})")
    _retry(lambda: spark.sql(sql), f"create {name}")
    return path


def _retry(action, what: str):
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return action()
        except Exception as exc:  # noqa: BLE001 - py4j wraps Delta's exceptions; only conflicts are retried
            if attempt == ATTEMPTS or not _is_conflict(exc):
                raise
            log.warning("%s: lost a commit race (%s), retrying (%d/%d)", what, type(exc).__name__, attempt,
                        ATTEMPTS)
            time.sleep(0.2 * attempt)
    raise AssertionError("unreachable")


def to_spark(spark, spec: Table, frame):
    """A Spark DataFrame in the table's column order and types from pandas, Arrow or Spark, laid out as one
    task per table partition (so a write adds one file per symbol, or per symbol and month)."""
    return _one_task_per_partition(spec, _as_spark(spark, spec, frame))


def _one_task_per_partition(spec: Table, df):
    from pyspark.sql import functions as F

    if spec.by_month and not spec.generated_month:
        df = df.withColumn(MONTH, F.trunc("date", "MM"))
    cols = [F.trunc("date", "MM") if c == MONTH else F.col(c) for c in spec.partition_by]
    return df.repartition(*cols)


def _as_arrow(spec: Table, frame) -> pa.Table:
    """pandas or Arrow rows in the table's column order and Arrow types."""
    if isinstance(frame, pd.DataFrame) and not len(frame) and spec.schema is not None:
        return spec.schema.empty_table()
    if isinstance(frame, pd.DataFrame):
        frame = pa.Table.from_pandas(frame[list(spec.schema.names)] if spec.schema else frame,
                                     schema=spec.schema, preserve_index=False)
    if spec.schema is not None:
        frame = frame.select(spec.schema.names).cast(spec.schema)
    return frame


def _as_spark(spark, spec: Table, frame):
    if isinstance(frame, pd.DataFrame | pa.Table):
        # Arrow timestamps with a zone; Spark keeps instants, the session zone is UTC.
        return spark.createDataFrame(_as_arrow(spec, frame))
    if spec.schema is not None:
        return frame.select(*spec.schema.names)
    return frame


def _user_metadata(run_id: str | None, token: str, extra: dict | None) -> str:
    return json.dumps({"run_id": run_id, "write": token, **(extra or {})}, sort_keys=True)


def _commit(lake: Path, name: str, token: str) -> Commit:
    """Find this call's commit in the log (newest first) by its token; None version if it made none."""
    return _commit_in(lake_read.open_table(lake, name), name, token)


def _commit_in(delta_table, name: str, token: str) -> Commit:
    """:func:`_commit` on an open delta-rs ``DeltaTable`` (already at the version to search from)."""
    files = len(delta_table.file_uris())
    for entry in lake_read.history_of(delta_table, limit=20):
        meta = entry.get("user_metadata") or {}
        if meta.get("write") == token:
            metrics = entry.get("metrics") or {}
            # Spark's metric names, else delta-rs's (append_once)
            rows = (int(metrics.get("numOutputRows", metrics.get("num_added_rows", 0)) or 0)
                    - int(metrics.get("numCopiedRows", 0) or 0))
            added = metrics.get("numFiles", metrics.get("numAddedFiles", metrics.get("num_added_files", 0)))
            return Commit(name, entry["version"], rows, int(added or 0),
                          int(metrics.get("numRemovedFiles", 0) or 0), files)
    return Commit(name, None, 0, 0, 0, files)


def rs_append(target, rows: pa.Table, user_metadata: str, *, txn: tuple[str, int] | None = None,
              **create) -> None:
    """One delta-rs append commit carrying ``userMetadata`` and, with ``txn`` = (app id, version), Delta's
    idempotent-writer action: the JVM-free writer of small appends (quarantine, the speed layer's side rows).
    ``target`` is a path or an open ``DeltaTable`` (then updated to the new version); ``create`` holds
    ``partition_by``/``configuration`` for a table delta-rs itself creates."""
    from deltalake import CommitProperties, Transaction, write_deltalake

    props = CommitProperties(custom_metadata={"userMetadata": user_metadata},
                             app_transactions=[Transaction(*txn)] if txn else None)
    write_deltalake(target, rows, mode="append", commit_properties=props, **create)


def replace(spark, lake: Path, name: str, frame, *, symbols=None, start: dt.date | None = None,
            end: dt.date | None = None, run_id: str | None = None, extra: dict | None = None,
            where: str | None = None) -> Commit:
    """Replace the rows of ``symbols`` x [start, end] in table ``name`` by ``frame``, in one commit.

    ``frame`` may be empty: the rectangle is then cleared (a day whose data vanished loses its stale bar).
    ``where``: an explicit predicate instead of the rectangle, for a run that also owns rows outside its
    partitions in the same commit (realized_vol_daily's range rows before the minutes).
    """
    spec = table(name)
    path = ensure_table(spark, lake, name)
    where = where or rectangle(symbols, start, end)
    token = uuid.uuid4().hex

    def write():
        df = to_spark(spark, spec, frame)
        writer = (df.write.format("delta").mode("overwrite").option("replaceWhere", where)
                  .option("userMetadata", _user_metadata(run_id, token, extra)))
        if spec.schema is None:
            writer = writer.option("mergeSchema", "true").partitionBy(*spec.partition_by)
        writer.save(str(path))

    _retry(write, f"replace {name} where {where}")
    return _commit(lake, name, token)


def append_once(spark, lake: Path, name: str, frame, *, app_id: str, txn_version: int,
                run_id: str | None = None) -> Commit:
    """Append ``frame`` unless ``(app_id, txn_version)`` was committed before (then nothing happens).

    Spark creates the table (:func:`ensure_table`: one definition, generated ``month``, NOT NULL); the rows
    are then committed by delta-rs from this process. Why: these appends are a micro-batch's side rows (tens
    to hundreds), and a Spark job per append cost 1.1-1.3 s against 10-60 ms with delta-rs (2 cores), which
    put every side commit on the speed layer's latency path. The idempotence is Delta's own: a ``txn``
    action (app id, version) in the same commit, exactly what Spark's ``txnAppId``/``txnVersion`` write;
    delta-rs fills the generated column and checks the NOT NULL invariants as Spark would.
    """
    spec = table(name)
    ensure_table(spark, lake, name)
    target = lake_read.open_table(lake, name)  # one snapshot for the check, the write and the commit lookup
    done = target.transaction_version(app_id)
    if done is not None and done >= txn_version:
        return Commit(name, None, 0, 0, 0, len(target.file_uris()))
    token = uuid.uuid4().hex
    rows = _as_arrow(spec, frame)
    if spec.by_month and not spec.generated_month:  # a stored month (see Table.generated_month)
        month = pc.floor_temporal(rows["date"], unit="month")
        rows = rows.append_column(pa.field(MONTH, pa.date32(), nullable=False), month)
    rs_append(target, rows, _user_metadata(run_id, token, None), txn=(app_id, txn_version))
    return _commit_in(target, name, token)


def spark_read(spark, lake: Path, name: str, as_of: str | int | None = None):
    """The table as a Spark DataFrame (None if it does not exist), optionally at a version or timestamp."""
    if not lake_read.exists(lake, name):
        return None
    reader = spark.read.format("delta")
    if as_of is not None:
        key = "versionAsOf" if str(as_of).isdigit() else "timestampAsOf"
        reader = reader.option(key, str(as_of))
    return reader.load(str(table_path(lake, name)))
