"""The Parquet lake: where each dataset lives and how it is written atomically.

Layout (no ``key=value`` directories, so Spark, DuckDB and pyarrow read them without partition inference):
``lake/<dataset>/<SYMBOL>/<YYYY-MM-DD>.parquet`` for daily x symbol partitions and
``lake/<dataset>/<SYMBOL>.parquet`` for per-symbol datasets. Every write goes to a hidden temp file in the
same directory and is renamed into place, so readers never see a half-written file and re-running a
partition is an idempotent overwrite.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from crypto_lambda.config import validate_symbol
from crypto_lambda.schema import KLINE_SCHEMA, QUARANTINE_SCHEMA, to_table


def _checked_child(root: Path, *parts: str) -> Path:
    path = root.joinpath(*parts).resolve()
    if root.resolve() not in path.parents and path != root.resolve():
        raise ValueError(f"path {path} escapes the lake root {root}")
    return path


def partition_path(lake: Path, dataset: str, symbol: str, day: dt.date) -> Path:
    return _checked_child(lake, dataset, validate_symbol(symbol), f"{day.isoformat()}.parquet")


def symbol_path(lake: Path, dataset: str, symbol: str) -> Path:
    return _checked_child(lake, dataset, f"{validate_symbol(symbol)}.parquet")


def symbol_file(lake: Path, dataset: str, symbol: str, name: str) -> Path:
    """A named file beside a daily x symbol dataset's day files (``lake/<dataset>/<SYMBOL>/<name>.parquet``)."""
    return _checked_child(lake, dataset, validate_symbol(symbol), f"{name}.parquet")


def atomic_write_table(table: pa.Table, path: Path) -> Path:
    """Write a Parquet file via temp file + fsync + rename: all or nothing, even on kill -9."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex}"
    try:
        pq.write_table(table, tmp, compression="zstd")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_klines(frame: pd.DataFrame, path: Path) -> Path:
    return atomic_write_table(to_table(frame), path)


def read_klines(path: Path) -> pd.DataFrame:
    return pq.read_table(path, schema=KLINE_SCHEMA).to_pandas()


def atomic_text(path: Path, text: str) -> Path:
    """Text (JSON, CSV) written via temp file + rename: readers see the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex}"
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_frame(frame: pd.DataFrame, path: Path, schema: pa.Schema | None = None) -> Path:
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    return atomic_write_table(table, path)


def partition_days(lake: Path, dataset: str, symbol: str) -> list[dt.date]:
    """Days that have a partition file for a symbol, sorted."""
    folder = lake / dataset / validate_symbol(symbol)
    if not folder.is_dir():
        return []
    days = []
    for entry in folder.glob("*.parquet"):
        try:
            days.append(dt.date.fromisoformat(entry.stem))
        except ValueError:
            continue
    return sorted(days)


def write_quarantine(quarantine_root: Path, kind: str, bad: pd.DataFrame) -> Path | None:
    """Append quarantined rows as a new file under ``quarantine/<kind>/``; returns None when nothing is bad."""
    if bad is None or len(bad) == 0:
        return None
    name = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}.parquet"
    path = _checked_child(quarantine_root, kind, name)
    table = pa.Table.from_pandas(bad[list(QUARANTINE_SCHEMA.names)], schema=QUARANTINE_SCHEMA,
                                 preserve_index=False)
    return atomic_write_table(table, path)


def read_quarantine(quarantine_root: Path, kind: str) -> pd.DataFrame:
    folder = quarantine_root / kind
    files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if not files:
        return QUARANTINE_SCHEMA.empty_table().to_pandas()
    return pa.concat_tables([pq.read_table(f) for f in files]).to_pandas()
