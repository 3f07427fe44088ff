"""One-time upgrade of a home written by the old file-per-day layout into the lake's Delta tables.

Old layouts recognised (the only code that still reads them):
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
import re
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from crypto_lambda.config import SYMBOL_RE
from crypto_lambda.errors import Fault
from crypto_lambda.lake.tables import QUARANTINE, TABLES, is_table
from crypto_lambda.schema import spark_ddl

STAGING = "lake.migrating"  # under the home, beside lake/: same filesystem, so renames are atomic
BACKUP = "pre_delta"
VERIFIED = "_migrate_verified.json"
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_LOG_NAME = re.compile(r"^(\d+)(\.compact)?$")


class MigrationError(Fault):
    """The old files and the new table disagree (or an old file is unreadable): nothing was moved."""


@dataclass
class OldDataset:
    """One dataset in the old layout: where it is, its target table, and its files with their path context."""

    name: str
    root: Path
    files: list[tuple[Path, dict]] = field(default_factory=list)  # (file, {"symbol":..., "date":..., "kind":...})


@dataclass
class Migrated:
    name: str
    files: int
    rows: int
    groups: int
    version: int | None
    known_schema: bool


# -- finding the old layout -------------------------------------------------------------------------------------


def _visible(path: Path) -> bool:
    """Not a temp/hidden/log file, and not a Spark part file (a Delta table's own data)."""
    return not path.name.startswith((".", "_", "part-"))


def _file_sink_files(root: Path) -> list[tuple[Path, dict]]:
    """Files a Spark file sink committed (latest ``N.compact`` plus later batches), with ``k=v`` path values."""
    logs: dict[int, Path] = {}
    compacts = []
    for entry in (root / "_spark_metadata").iterdir():
        if match := _LOG_NAME.match(entry.name):
            logs[int(match.group(1))] = entry
            compacts += [int(match.group(1))] if match.group(2) else []
    start = max(compacts, default=-1)
    files: dict[str, None] = {}
    for batch in sorted(b for b in logs if b >= start):
        for line in logs[batch].read_text(encoding="utf-8").splitlines()[1:]:
            if line.strip():
                item = json.loads(line)
                if item.get("action", "add") == "delete":
                    files.pop(item["path"], None)
                else:
                    files[item["path"]] = None
    out = []
    for uri in files:
        # The log holds absolute URIs of where the home was written; a copied or moved home must read its own
        # files, so only the partition-relative tail (k=v directories and the file name) is kept.
        logged = Path(unquote(urlparse(uri).path))
        parts = [p for p in logged.parts[:-1] if "=" in p]
        path = root.joinpath(*parts, logged.name)
        if not path.is_file():
            raise MigrationError(f"{root.name}: file {path} is committed in _spark_metadata but missing; "
                                 "nothing was moved")
        out.append((path, dict(p.split("=", 1) for p in parts)))
    return sorted(out, key=lambda item: str(item[0]))


def _layout_files(root: Path) -> list[tuple[Path, dict]]:
    if (root / "_spark_metadata").is_dir():
        return _file_sink_files(root)
    out = []
    for entry in sorted(root.iterdir()):
        if not _visible(entry):
            continue
        if entry.is_file() and entry.suffix == ".parquet":
            out.append((entry, {"symbol": entry.stem} if SYMBOL_RE.match(entry.stem) else {}))
        elif entry.is_dir() and SYMBOL_RE.match(entry.name):
            for file in sorted(entry.glob("*.parquet")):
                if _visible(file):
                    ctx = {"symbol": entry.name}
                    ctx.update({"date": file.stem} if _DAY.match(file.stem) else {})
                    out.append((file, ctx))
    return out


def _has_old_files(root: Path) -> bool:
    """Old-layout files in a directory without a Delta log (cheap: stops at the first hit)."""
    if (root / "_spark_metadata").is_dir():
        return True
    return any(_visible(p) and p.suffix == ".parquet" for p in root.glob("*.parquet")) or any(
        p.is_dir() and SYMBOL_RE.match(p.name) and any(root.glob(f"{p.name}/*.parquet")) for p in root.iterdir())


def find_old(home: Path, list_files: bool = True) -> list[OldDataset]:
    """Every old-layout dataset of a home, quarantine last. A directory holding a Delta log and old files
    (new code already wrote where an old dataset lives) is refused: merging the two is not guessed."""
    lake = home / "lake"
    found = []
    for root in sorted(p for p in lake.iterdir() if p.is_dir() and _visible(p)) if lake.is_dir() else []:
        if not _has_old_files(root):
            continue
        if is_table(root):
            raise MigrationError(f"lake/{root.name} holds both a Delta table and old-layout files: move the old "
                                 f"files ({root}/<SYMBOL>/*.parquet) aside by hand, then run "
                                 "`crypto-lambda lake migrate` on them from another home")
        found.append(OldDataset(root.name, root, _layout_files(root) if list_files else []))
    quarantine = home / "quarantine"
    if quarantine.is_dir():
        files = [(f, {"kind": kind.name}) for kind in sorted(quarantine.iterdir()) if kind.is_dir()
                 for f in sorted(kind.glob("*.parquet")) if _visible(f)]
        if files:
            found.append(OldDataset(QUARANTINE, quarantine, files))
    return found


def old_layout_datasets(home: Path) -> list[str]:
    """Names of the old-layout datasets in ``home`` (no Parquet opened)."""
    try:
        found = find_old(home, list_files=False)
    except MigrationError:
        return ["(mixed)"]
    return [d.name for d in found]


def check_migrated(home: Path) -> None:
    """Refuse to run on an old-layout home with a message that says what to do: every writer now writes Delta,
    so any old file-per-day dataset is data the tables would silently miss."""
    names = old_layout_datasets(home)
    if names:
        raise Fault(f"{home} has datasets in the old file-per-day layout ({', '.join(names)}): run "
                    "`crypto-lambda lake migrate` once to convert them to Delta tables (verified before any "
                    "old file moves)")


# -- reading one old file into the table's shape ----------------------------------------------------------------


def _utc_dates(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.cast(pc.cast(column, pa.timestamp("ms", tz="UTC")), pa.date32())


def _quarantine_rows(table: pa.Table, kind: str, path: Path) -> pa.Table:
    """Both old quarantine shapes (file readers' and the stream's) as the lake's quarantine rows."""
    n = table.num_rows
    cols = table.column_names
    if "source_file" not in cols and "topic" in cols:  # the stream's: topic/partition/offset, raw bytes
        where = [f"{t}:{p}:{o}" for t, p, o in zip(*(table[c].to_pylist() for c in ("topic", "partition",
                                                                                  "offset")), strict=True)]
        raw = [None if r is None else r.decode("utf-8", "backslashreplace") for r in table["raw"].to_pylist()]
        table = pa.table({"source_file": where, "symbol": pa.nulls(n, pa.string()),
                          "open_time_ms": pa.nulls(n, pa.int64()), "reason": table["reason"], "raw": raw})
    stamp = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
    if m := re.match(r"^(\d{8}T\d{6})-", path.name):
        stamp = dt.datetime.strptime(m.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=dt.UTC)
    return table.append_column("kind", pa.array([kind] * n, pa.string())).append_column(
        "quarantined_at", pa.array([stamp] * n, pa.timestamp("us", tz="UTC")))


def read_old_file(dataset: str, path: Path, ctx: dict) -> pa.Table:
    """One old file with the values its path carried (symbol, date, kind), in the target schema if known."""
    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable file stops the migration, named
        raise MigrationError(f"{dataset}: old file {path} is unreadable ({type(exc).__name__}: {exc}); "
                             "nothing was moved") from exc
    table = table.cast(pa.schema([pa.field(f.name, f.type.value_type) if pa.types.is_dictionary(f.type) else f
                                  for f in table.schema]))
    if dataset == QUARANTINE:
        table = _quarantine_rows(table, ctx["kind"], path)
    n = table.num_rows
    if "symbol" in ctx and "symbol" not in table.column_names:
        table = table.append_column("symbol", pa.array([ctx["symbol"]] * n, pa.string()))
    if "date" in ctx:
        day = dt.date.fromisoformat(ctx["date"])
        if "open_time" in table.column_names and n:
            wrong = pc.sum(pc.not_equal(_utc_dates(table["open_time"]), pa.scalar(day, pa.date32()))).as_py()
            if wrong:
                raise MigrationError(f"{dataset}: {ctx.get('symbol')} {day}: {wrong} of {n} rows in {path} lie "
                                     "outside the day the file is named for; nothing was moved")
        if "date" not in table.column_names:
            table = table.append_column("date", pa.array([day] * n, pa.date32()))
    spec = TABLES.get(dataset)
    if spec is not None and spec.schema is not None:
        if "date" in spec.schema.names and "date" not in table.column_names and "open_time" in table.column_names:
            table = table.append_column("date", _utc_dates(table["open_time"]))
        missing = [f for f in spec.schema if f.name not in table.column_names]
        if any(not f.nullable for f in missing):
            raise MigrationError(f"{dataset}: {path} lacks required column(s) "
                                 f"{', '.join(f.name for f in missing if not f.nullable)}; nothing was moved")
        for f in missing:
            table = table.append_column(f.name, pa.nulls(n, f.type))
        try:
            table = table.select(spec.schema.names).cast(spec.schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise MigrationError(f"{dataset}: {path} does not fit the table's schema ({exc}); nothing was "
                                 "moved") from exc
    return table


def read_old(ds: OldDataset) -> pa.Table:
    tables = [read_old_file(ds.name, path, ctx) for path, ctx in ds.files]
    spec = TABLES.get(ds.name)
    if spec is not None and spec.schema is not None:
        return pa.concat_tables([spec.schema.empty_table(), *tables])
    return pa.concat_tables(tables, promote_options="permissive") if tables else pa.table({})


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
                pd.Series(_utc_dates(table["open_time"]).to_pandas()).astype(str)
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
