"""One-time upgrade of a home written by the old file-per-day layout into the lake's Delta tables.

Old layouts recognised (read by :mod:`crypto_lambda.lake.legacy`, the only code that still reads them):
``lake/<dataset>/<SYMBOL>/<YYYY-MM-DD>.parquet`` per day, ``lake/<dataset>/<SYMBOL>/<name>.parquet`` beside
them (realized-vol history), ``lake/<dataset>/<SYMBOL>.parquet`` per symbol, other ``lake/<dataset>/*.parquet``
(speed gap markers per micro-batch), Spark file-sink output (``symbol=X/date=Y/`` part files, only those its
``_spark_metadata`` log committed) and ``quarantine/<kind>/*.parquet`` (into the ``quarantine`` table).

Why staged: every dataset is first written to a Delta table under ``lake.migrating/`` (one commit), read back
with delta-rs and compared with the old files per (symbol, day): row count and the sum of 64-bit row hashes.
Only when every dataset matches are the old directories moved aside to ``pre_delta/<stamp>/`` (atomic renames
on one filesystem) and the staged tables renamed into ``lake/``. A mismatch or an unreadable old file raises
:class:`MigrationError` naming the dataset and day, and no old file has moved. A rerun finds nothing: a no-op.

Datasets without a schema in :data:`~crypto_lambda.lake.tables.TABLES` (forecast outputs) or not in it at all are
copied with their own schema, partitioned by ``symbol`` when they have one.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from crypto_lambda.lake.legacy import MigrationError, OldDataset, find_old, read_old, read_old_file, utc_dates
from crypto_lambda.lake.tables import TABLES, is_table
from crypto_lambda.schema import spark_ddl

STAGING = "lake.migrating"  # under the home, beside lake/: same filesystem, so renames are atomic
BACKUP = "pre_delta"
VERIFIED = "_migrate_verified.json"


@dataclass
class Migrated:
    name: str
    files: int
    rows: int
    groups: int
    version: int | None
    known_schema: bool


# -- checksums ---------------------------------------------------------------------------------------------------


def _canonical(table: pa.Table, columns: list[str]) -> pd.DataFrame:
    """The columns by name, timestamps as UTC microseconds and strings plain, so a Spark round trip (which
    writes microseconds, may reorder columns and read strings back as views) hashes the same."""
    cols = {}
    for name in columns:
        col = table[name]
        if pa.types.is_timestamp(col.type):
            col = pc.cast(pc.cast(col, pa.timestamp("us", tz=col.type.tz and "UTC")), pa.int64())
        elif pa.types.is_large_string(col.type) or pa.types.is_string_view(col.type):
            col = pc.cast(col, pa.string())
        elif pa.types.is_large_binary(col.type) or pa.types.is_binary_view(col.type):
            col = pc.cast(col, pa.binary())
        cols[name] = col
    # nullable dtypes for ints and bools whether or not a chunk has nulls: a file and a batch of the table
    # holding the same rows must hash the same (plain to_pandas turns an int column with a null into floats)
    return pa.table(cols).to_pandas(types_mapper=_NULLABLE.get)


_NULLABLE = {pa.int64(): pd.Int64Dtype(), pa.int32(): pd.Int32Dtype(), pa.bool_(): pd.BooleanDtype()}


def merge_sums(total: dict, part: dict) -> dict:
    """Add one file's (or batch's) checksums into ``total`` (row hashes sum mod 2**64)."""
    for key, (rows, digest) in part.items():
        had = total.get(key, (0, 0))
        total[key] = (had[0] + rows, (had[1] + digest) % (1 << 64))
    return total


def checksums(table: pa.Table, columns: list[str]) -> dict[tuple[str, str], tuple[int, int]]:
    """(symbol or kind, day) -> (rows, sum of row hashes mod 2**64)."""
    if table.num_rows == 0:
        return {}
    frame = _canonical(table, columns)
    hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy(np.uint64)
    who = next((c for c in ("symbol", "kind") if c in table.column_names), None)
    keys = pd.DataFrame({
        "who": table[who].to_pandas() if who else "",
        "day": (table["date"].to_pandas().astype(str) if "date" in table.column_names else
                pd.Series(utc_dates(table["open_time"]).to_pandas()).astype(str)
                if "open_time" in table.column_names else ""),
        "h": hashes})
    out = {}
    for (who_, day), group in keys.groupby(["who", "day"], sort=True):
        out[(str(who_), str(day))] = (len(group), int(np.add.reduce(group["h"].to_numpy(np.uint64))))
    return out


def compare(name: str, old: dict, new: dict) -> None:
    """Raise naming the first (symbol, day)s whose rows or row hashes differ."""
    bad = [(k, old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if bad:
        shown = "; ".join(f"{w} {d or '(all)'}: old {o[0] if o else 0} rows, table {n[0] if n else 0} rows"
                          f"{' (same count, different values)' if o and n and o[0] == n[0] else ''}"
                          for (w, d), o, n in bad[:5])
        raise MigrationError(f"{name}: the new table differs from the old files at {len(bad)} (symbol, day)s: "
                             f"{shown}; nothing was moved")


# -- writing and reading back ------------------------------------------------------------------------------------


def _write_staged(spark, staging: Path, name: str, table: pa.Table) -> int | None:
    from crypto_lambda.lake import write

    spec = TABLES.get(name)
    if spec is not None and spec.schema is not None:
        return write.replace(spark, staging, name, table, extra={"migrated_from": "file-per-day"}).version
    if table.num_rows == 0:
        return None
    writer = spark.createDataFrame(table).write.format("delta").mode("overwrite")
    if "symbol" in table.column_names:
        writer = writer.partitionBy("symbol")
    writer.option("userMetadata", json.dumps({"migrated_from": "file-per-day"})).save(str(staging / name))
    from deltalake import DeltaTable

    return DeltaTable(str(staging / name)).version()


def _staged_sums(staging: Path, name: str, columns: list[str]) -> dict:
    """Checksums of the staged table, batch by batch (a minute table of 14 years does not fit in memory)."""
    from deltalake import DeltaTable

    path = staging / name
    if not is_table(path):
        return {}
    total: dict = {}
    for batch in DeltaTable(str(path)).to_pyarrow_dataset().to_batches(columns=columns):
        merge_sums(total, checksums(pa.Table.from_batches([batch]), columns))
    return total


def _streamed(spark, staging: Path, ds: OldDataset) -> tuple[int, dict, int | None]:
    """A minute table (millions of rows): checksums file by file in Python (which also checks each file's
    rows against its day), the write by Spark reading the old files itself, in one commit."""
    from pyspark.sql import functions as F

    from crypto_lambda.lake import write

    spec = TABLES[ds.name]
    rows, sums = 0, {}
    for path, ctx in ds.files:
        part = read_old_file(ds.name, path, ctx)
        rows += part.num_rows
        merge_sums(sums, checksums(part, spec.schema.names))
    frame = spark.read.schema(spark_ddl(spec.schema, exclude=("date",))).parquet(*[str(p) for p, _ in ds.files])
    commit = write.replace(spark, staging, ds.name, frame.withColumn("date", F.to_date("open_time")),
                           extra={"migrated_from": "file-per-day"})
    return rows, sums, commit.version


def _stage(spark, staging: Path, ds: OldDataset) -> Migrated:
    target = staging / ds.name
    if target.exists():  # a previous attempt that never finished verifying: never trusted, rebuilt
        shutil.rmtree(target)
    spec = TABLES.get(ds.name)
    # Day files carry their symbol; the file sink's part files keep it (and the date) in their folder names
    # only, so they take the in-memory path that adds them (the speed layer's minutes are small).
    file_sink = (ds.root / "_spark_metadata").is_dir()
    if spec is not None and spec.by_month and not file_sink and all("date" in ctx for _, ctx in ds.files):
        columns = list(spec.schema.names)
        rows, sums, version = _streamed(spark, staging, ds)
    else:
        old = read_old(ds)
        columns, rows = old.column_names, old.num_rows
        version = _write_staged(spark, staging, ds.name, old)
        sums = checksums(old, columns)
    if rows and (target / "_delta_log").is_dir():
        from deltalake import DeltaTable

        lacking = set(columns) - set(DeltaTable(str(target)).schema().to_arrow().names)
        if lacking:
            raise MigrationError(f"{ds.name}: the new table lacks column(s) {sorted(lacking)}; nothing was moved")
    compare(ds.name, sums, _staged_sums(staging, ds.name, columns) if rows else {})
    result = Migrated(ds.name, len(ds.files), rows, len(sums), version, ds.name in TABLES)
    if target.exists():
        (target / VERIFIED).write_text(json.dumps(asdict(result)) + "\n")
    return result


def _pending(home: Path) -> Iterator[Path]:
    """Staged, verified tables whose swap into lake/ did not happen (a crash between the renames)."""
    staging = home / STAGING
    for table_dir in sorted(staging.iterdir()) if staging.is_dir() else []:
        if (table_dir / VERIFIED).exists() and not (home / "lake" / table_dir.name).exists():
            yield table_dir


def _swap_in(home: Path, backup: Path, staged: list[OldDataset]) -> None:
    """Move every old directory to ``backup``, then each verified staged table into lake/."""
    for ds in staged:
        relative = ds.root.relative_to(home)
        (backup / relative).parent.mkdir(parents=True, exist_ok=True)
        ds.root.rename(backup / relative)
    for table_dir in _pending(home):
        (table_dir / VERIFIED).unlink()  # its figures are in the backup's MIGRATED.json
        table_dir.rename(home / "lake" / table_dir.name)
    shutil.rmtree(home / STAGING, ignore_errors=True)


def migrate(home: Path, spark=None, *, remove_old: bool = False) -> list[Migrated]:
    """Convert every old-layout dataset of ``home``; [] when there is none (a rerun). ``remove_old`` deletes
    the moved-aside old files after the swap instead of keeping them under ``pre_delta/<stamp>/``."""
    home = Path(home)
    datasets = find_old(home)
    backup = home / BACKUP / dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    if not datasets:
        if any(True for _ in _pending(home)):
            backup.mkdir(parents=True, exist_ok=True)
            _swap_in(home, backup, [])
        return []
    if spark is None:
        from crypto_lambda.spark import get_spark

        spark = get_spark()
    staging = home / STAGING
    staging.mkdir(parents=True, exist_ok=True)
    try:
        done = [_stage(spark, staging, ds) for ds in datasets]
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # nothing staged is trusted; the old files never moved
        raise
    backup.mkdir(parents=True, exist_ok=True)
    (backup / "MIGRATED.json").write_text(json.dumps([asdict(m) for m in done], indent=2) + "\n")
    _swap_in(home, backup, datasets)
    if remove_old:
        shutil.rmtree(backup)
    return done
