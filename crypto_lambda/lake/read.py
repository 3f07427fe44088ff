"""Reading the lake's Delta tables without a JVM (delta-rs), for the live page, status, sensors and tests.

Reads see one committed version (the newest, or ``as_of`` a version number or ISO timestamp): a writer's
half-done commit is invisible. Filters on ``symbol`` and ``date`` prune files by partition values and
statistics before any Parquet is opened.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from urllib.parse import unquote

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from crypto_lambda.config import validate_symbol
from crypto_lambda.lake.tables import MONTH, TABLES, is_table, table, table_path


def exists(lake: Path, name: str) -> bool:
    return is_table(table_path(lake, name))


def open_table(lake: Path, name: str, as_of: int | str | None = None):
    """A delta-rs ``DeltaTable`` at the newest version or ``as_of`` (int version, or ISO-8601 timestamp)."""
    from deltalake import DeltaTable

    path = table_path(lake, name)
    if not is_table(path):
        raise FileNotFoundError(f"lake table {name} does not exist yet ({path})")
    dt_ = DeltaTable(str(path))
    if as_of is not None:
        if isinstance(as_of, int) or str(as_of).isdigit():
            dt_.load_as_version(int(as_of))
        else:
            dt_.load_as_version(dt.datetime.fromisoformat(str(as_of)))
    return dt_


def version(lake: Path, name: str) -> int | None:
    """Newest committed version, None when the table does not exist."""
    return open_table(lake, name).version() if exists(lake, name) else None


def _filter(symbols, start: dt.date | None, end: dt.date | None):
    expr = None
    def both(a, b):
        return b if a is None else a & b
    if symbols:
        expr = both(expr, pc.field("symbol").isin([validate_symbol(s) for s in symbols]))
    if start is not None:
        expr = both(expr, pc.field("date") >= pa.scalar(start, pa.date32()))
    if end is not None:
        expr = both(expr, pc.field("date") <= pa.scalar(end, pa.date32()))
    return expr


def read_arrow(lake: Path, name: str, symbols=None, start: dt.date | None = None, end: dt.date | None = None,
               columns: list[str] | None = None, as_of: int | str | None = None) -> pa.Table:
    """Rows of ``symbols`` x [start, end] (all when omitted) in the table's schema (``month`` dropped)."""
    spec = table(name)
    if not exists(lake, name):
        if spec.schema is None:
            return pa.table({})
        empty = spec.schema.empty_table()
        return empty.select(columns) if columns else empty
    dataset = open_table(lake, name, as_of).to_pyarrow_dataset()
    result = dataset.to_table(columns=columns, filter=_filter(symbols, start, end))
    if MONTH in result.column_names and (columns is None or MONTH not in columns):
        result = result.drop_columns([MONTH])
    if spec.schema is not None and columns is None:
        result = result.select(spec.schema.names).cast(spec.schema)
    elif spec.schema is not None:
        result = result.cast(pa.schema([spec.schema.field(c) for c in result.column_names]))
    return result


def read(lake: Path, name: str, symbols=None, start: dt.date | None = None, end: dt.date | None = None,
         columns: list[str] | None = None, as_of: int | str | None = None) -> pd.DataFrame:
    """:func:`read_arrow` as pandas, sorted by the table's key."""
    frame = read_arrow(lake, name, symbols, start, end, columns, as_of).to_pandas()
    key = [c for c in table(name).key if c in frame.columns]
    if key and len(frame):
        frame = frame.sort_values(key, kind="stable").reset_index(drop=True)
    return frame


def days(lake: Path, name: str, symbol: str) -> list[dt.date]:
    """The distinct UTC dates one symbol has rows for, sorted."""
    frame = read_arrow(lake, name, [symbol], columns=["date"])
    return sorted(set(frame.column("date").to_pylist()))


def history(lake: Path, name: str, limit: int | None = None) -> list[dict]:
    """Commit log, newest first: version, timestamp (UTC), operation, parameters, metrics, user metadata."""
    return history_of(open_table(lake, name), limit) if exists(lake, name) else []


def history_of(delta_table, limit: int | None = None) -> list[dict]:
    """:func:`history` of an open ``DeltaTable`` (also one that is not a registered dataset)."""
    rows = []
    for entry in delta_table.history(limit):
        meta = entry.get("userMetadata")
        try:
            meta = json.loads(meta) if meta else {}
        except ValueError:
            meta = {"text": meta}
        rows.append({"version": entry.get("version"),
                     "timestamp": dt.datetime.fromtimestamp(entry.get("timestamp", 0) / 1000, dt.UTC),
                     "operation": entry.get("operation"), "parameters": entry.get("operationParameters") or {},
                     "metrics": entry.get("operationMetrics") or {}, "user_metadata": meta})
    return rows


def file_uris(lake: Path, name: str) -> list[str]:
    """The Parquet files the newest version references (what DuckDB or pyarrow would read)."""
    return open_table(lake, name).file_uris() if exists(lake, name) else []


def file_count(lake: Path, name: str) -> int:
    return len(file_uris(lake, name))


def file_sizes(lake: Path, name: str) -> dict:
    """Files and bytes of the newest version (for the maintenance asset's before/after metadata)."""
    return sizes_of(open_table(lake, name)) if exists(lake, name) else {"files": 0, "bytes": 0}


def sizes_of(delta_table) -> dict:
    """:func:`file_sizes` of an open ``DeltaTable``."""
    actions = pa.table(delta_table.get_add_actions(flatten=True))
    return {"files": actions.num_rows, "bytes": int(pc.sum(actions.column("size_bytes")).as_py() or 0)}


# -- following a table's log (the speed sensor) --------------------------------------------------------------

Partition = tuple[str, dt.date]


def _days(low, high) -> list[dt.date]:
    low, high = (v if isinstance(v, dt.date) else dt.date.fromisoformat(str(v)[:10]) for v in (low, high))
    return [low + dt.timedelta(days=i) for i in range((high - low).days + 1)]


def _file_dates(path: Path) -> list[dt.date]:
    """The distinct dates of one data file, for an add action without statistics (rare: Spark writes them)."""
    import pyarrow.parquet as pq

    return sorted(set(pq.read_table(path, columns=["date"]).column("date").to_pylist()))


def snapshot_partitions(lake: Path, name: str, as_of: int | str | None = None) -> set[Partition]:
    """(symbol, date) pairs the table's files hold, from the add actions (partition values, min/max ``date``
    statistics): no data file is opened. A file spanning days counts for each day between its min and max."""
    if not exists(lake, name):
        return set()
    actions = pa.table(open_table(lake, name, as_of).get_add_actions(flatten=True)).to_pylist()
    out: set[Partition] = set()
    for act in actions:
        symbol, low, high = act.get("partition.symbol"), act.get("min.date"), act.get("max.date")
        days = _days(low, high) if low is not None and high is not None else \
            _file_dates(table_path(lake, name) / act["path"])
        out.update((symbol, d) for d in days)
    return out


def _log_entry(lake: Path, name: str, version_: int) -> list[dict] | None:
    path = table_path(lake, name) / "_delta_log" / f"{version_:020d}.json"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _added(lake: Path, name: str, add: dict) -> set[Partition]:
    symbol = (add.get("partitionValues") or {}).get("symbol")
    stats = json.loads(add["stats"]) if add.get("stats") else {}
    low, high = (stats.get(k, {}).get("date") for k in ("minValues", "maxValues"))
    days = _days(low, high) if low and high else _file_dates(table_path(lake, name) / unquote(add["path"]))
    return {(symbol, d) for d in days}


def touched_partitions(lake: Path, name: str, after_version: int | None) -> tuple[int | None, set[Partition]]:
    """The table's newest version and the (symbol, date) partitions that commits after ``after_version`` added
    rows to (their add actions with ``dataChange``; compaction rewrites nothing new and is skipped).

    ``after_version`` None (a first look) or above the newest version (the table was recreated), or a commit
    file already removed by log cleanup: every partition of the newest snapshot, since what changed can no
    longer be told. Reads ``_delta_log/<version>.json``
    directly: those are immutable once written, and a version at or below the newest one is complete.
    """
    if not exists(lake, name):
        return after_version, set()
    newest = open_table(lake, name).version()
    if after_version == newest:
        return newest, set()
    if after_version is None or after_version > newest:  # > : the table was deleted and written anew
        return newest, snapshot_partitions(lake, name, newest)
    touched: set[Partition] = set()
    for v in range(after_version + 1, newest + 1):
        entry = _log_entry(lake, name, v)
        if entry is None:
            return newest, snapshot_partitions(lake, name, newest)
        for action in entry:
            add = action.get("add")
            if add and add.get("dataChange", True):
                touched |= _added(lake, name, add)
    return newest, touched


# -- every table on disk, registered or not (query views, history, maintenance) --------------------------------

def lake_tables(lake: Path) -> dict[str, Path]:
    """Every Delta table under ``lake`` by name (folder name), sorted; folders without a log are not tables."""
    if not lake.is_dir():
        return {}
    return {p.name: p for p in sorted(lake.iterdir()) if p.is_dir() and not p.name.startswith((".", "_"))
            and is_table(p)}


def known_names(lake: Path) -> list[str]:
    """The registered tables and any other table on disk: what ``history`` and ``query`` accept."""
    return sorted(set(TABLES) | set(lake_tables(lake)))


def table_folder(lake: Path, name: str) -> Path:
    """The folder of table ``name``; a clear error listing the tables when it is neither registered nor on disk,
    or registered but not written yet."""
    found = lake_tables(lake)
    if name in found:
        return found[name]
    if name in TABLES:
        raise FileNotFoundError(f"lake table {name} has no commits yet ({lake / name})")
    raise ValueError(f"unknown lake table {name!r}; known: {', '.join(known_names(lake))}")


def open_folder(path: Path):
    from deltalake import DeltaTable

    return DeltaTable(str(path))


def table_history(lake: Path, name: str, limit: int | None = None) -> list[dict]:
    """Commit log of any table under the lake, newest first; unlike :func:`history`, an unknown or unwritten table
    is an error that says which (for ``crypto-lambda history``)."""
    return history_of(open_folder(table_folder(lake, name)), limit)
