"""The old file-per-day layout, the only code that still reads it: finding its datasets in a home and reading
one old file into its Delta table's shape. :mod:`crypto_lambda.lake.migrate` converts what this finds.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from crypto_lambda.config import SYMBOL_RE
from crypto_lambda.errors import Fault
from crypto_lambda.lake.tables import QUARANTINE, TABLES, is_table

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


def utc_dates(column: pa.ChunkedArray) -> pa.ChunkedArray:
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
            wrong = pc.sum(pc.not_equal(utc_dates(table["open_time"]), pa.scalar(day, pa.date32()))).as_py()
            if wrong:
                raise MigrationError(f"{dataset}: {ctx.get('symbol')} {day}: {wrong} of {n} rows in {path} lie "
                                     "outside the day the file is named for; nothing was moved")
        if "date" not in table.column_names:
            table = table.append_column("date", pa.array([day] * n, pa.date32()))
    spec = TABLES.get(dataset)
    if spec is not None and spec.schema is not None:
        if "date" in spec.schema.names and "date" not in table.column_names and "open_time" in table.column_names:
            table = table.append_column("date", utc_dates(table["open_time"]))
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


