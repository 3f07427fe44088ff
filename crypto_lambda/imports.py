"""Import history files into the staging area the batch layer reads before asking the exchange.

Staged data lives at ``<home>/imports/<SYMBOL>/<YYYY-MM-DD>.parquet`` (canonical kline schema, one file
per UTC day). It stays files on purpose: it is an inbox, not a dataset (``raw_klines_1m`` folds it into the
Delta table when it materializes those days), and importing needs no JVM. Re-importing merges with what is
staged (later import wins on the same minute) and moves files into place, so an import can be repeated or
interrupted without leaving duplicates or half files. An import is validated whole before anything is
written (one bad file refuses the batch). Invalid rows go to the lake's ``quarantine`` table (kind
``import``), one delta-rs commit per import.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import sys
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from tqdm import tqdm

from crypto_lambda import formats, readers
from crypto_lambda.config import Settings, validate_symbol
from crypto_lambda.lake import quarantine
from crypto_lambda.lake import read as lake_read
from crypto_lambda.lake.tables import QUARANTINE, table_path
from crypto_lambda.schema import KLINE_SCHEMA, Validated, merge_klines, to_table
from crypto_lambda.timeutil import DAY_MS

log = logging.getLogger(__name__)


@dataclass
class SymbolDays:
    """Which staged days one import touched for a symbol."""

    first: dt.date
    last: dt.date
    days: int


@dataclass
class ImportSummary:
    """What an import did; ``rows_outside_window`` counts good rows dropped by the start/end filter."""

    files: list[Path] = field(default_factory=list)
    rows_good: int = 0
    rows_quarantined: int = 0
    duplicates: int = 0
    rows_outside_window: int = 0
    symbols: dict[str, SymbolDays] = field(default_factory=dict)
    quarantine_table: Path | None = None
    quarantine_version: int | None = None  # the quarantine table's version this import wrote, if any
    quarantine_reasons: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "files": [str(p) for p in self.files],
            "rows_good": self.rows_good,
            "rows_quarantined": self.rows_quarantined,
            "duplicates": self.duplicates,
            "rows_outside_window": self.rows_outside_window,
            "symbols": {s: {"first": d.first.isoformat(), "last": d.last.isoformat(), "days": d.days}
                        for s, d in sorted(self.symbols.items())},
            "quarantine_table": str(self.quarantine_table) if self.quarantine_table else None,
            "quarantine_version": self.quarantine_version,
            "quarantine_reasons": dict(sorted(self.quarantine_reasons.items())),
        }


def staged_path(settings: Settings, symbol: str, day: dt.date) -> Path:
    return settings.imports / validate_symbol(symbol) / f"{day.isoformat()}.parquet"


def staged_days(settings: Settings, symbol: str) -> list[dt.date]:
    """Days with a staged file for ``symbol``, sorted."""
    folder = settings.imports / validate_symbol(symbol)
    days = []
    for entry in folder.glob("*.parquet") if folder.is_dir() else []:
        try:
            days.append(dt.date.fromisoformat(entry.stem))
        except ValueError:
            continue
    return sorted(days)


def read_staged(settings: Settings, symbol: str, day: dt.date) -> pd.DataFrame | None:
    """The staged rows of one day, or None when nothing was imported for it."""
    path = staged_path(settings, symbol, day)
    return pq.read_table(path, schema=KLINE_SCHEMA).to_pandas() if path.is_file() else None


def expand_paths(paths: Iterable[Path | str]) -> list[Path]:
    """Files to import: files as given, directories as their supported files (sorted, not recursive).

    Every file's format is checked here, so a bad batch is refused before anything is written.
    """
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                           and p.suffix.lower() in formats.SUPPORTED_SUFFIXES)
            if not found:
                raise ValueError(f"{path}: directory holds no importable files "
                                 f"({', '.join(formats.SUPPORTED_SUFFIXES)})")
            files.extend(found)
        elif not path.exists():
            raise FileNotFoundError(f"{path}: no such file or directory")
        else:
            files.append(path)
    if not files:
        raise ValueError("no files to import")
    for path in files:
        formats.detect_format(path)
    return files


EPOCH = dt.date(1970, 1, 1)


def _window_mask(day_numbers: pd.Series, start: dt.date | None, end: dt.date | None) -> pd.Series:
    """Rows whose UTC day (days since 1970-01-01) lies in [start, end]; compared as ints, not dates."""
    mask = pd.Series(True, index=day_numbers.index)
    if start is not None:
        mask &= day_numbers >= (start - EPOCH).days
    if end is not None:
        mask &= day_numbers <= (end - EPOCH).days
    return mask


def _bad_in_window(bad: pd.DataFrame, shift_ms: int, start: dt.date | None,
                   end: dt.date | None) -> pd.DataFrame:
    """Bad rows whose (shifted) time falls in the window; rows without a usable time are always kept."""
    if (start is None and end is None) or not len(bad):
        return bad
    shifted = pd.to_numeric(bad["open_time_ms"], errors="coerce").astype("float64") + shift_ms
    keep = _window_mask(shifted // DAY_MS, start, end) | shifted.isna()
    return bad.loc[keep.to_numpy()].reset_index(drop=True)


def _good_in_window(result: Validated, summary: ImportSummary, *, shift_ms: int, start: dt.date | None,
                    end: dt.date | None) -> tuple[pd.DataFrame, pd.Series]:
    """A file's good rows shifted and cut to [start, end], with each row's UTC day number."""
    good = result.good
    if shift_ms:
        shifted = (good["open_time"] + pd.Timedelta(milliseconds=shift_ms)).dt.as_unit("ms")
        good = good.assign(open_time=shifted)
    day_index = good["open_time"].dt.as_unit("ms").astype("int64") // DAY_MS  # vectorised UTC day per row
    if start is not None or end is not None:
        keep = _window_mask(day_index, start, end).to_numpy()
        summary.rows_outside_window += int((~keep).sum())
        good, day_index = good.loc[keep], day_index[keep]
    for symbol in good["symbol"].unique():
        validate_symbol(symbol)
    summary.rows_good += len(good)
    return good, day_index


def _stage_all(parts: dict[tuple[str, int], list[pd.DataFrame]], settings: Settings, bar: tqdm) -> None:
    """Write every touched day (staged rows merged with the new ones, later files win) into a pending folder,
    then move the files into place: a failure while writing (disk full, bad permissions) stages nothing."""
    pending = settings.imports / f".pending-{uuid.uuid4().hex}"
    moves: list[tuple[Path, Path]] = []
    try:
        for (symbol, day_number), frames in sorted(parts.items()):
            day = EPOCH + dt.timedelta(days=int(day_number))
            target = staged_path(settings, symbol, day)
            tmp = pending / symbol / target.name
            tmp.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(to_table(merge_klines(read_staged(settings, symbol, day), *frames)), tmp,
                           compression="zstd")
            moves.append((tmp, target))
            bar.update(1)
        for tmp, target in moves:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, target)
    finally:
        shutil.rmtree(pending, ignore_errors=True)


def import_paths(paths: Iterable[Path | str], settings: Settings, *, symbol: str | None = None,
                 shift_days: int = 0, start: dt.date | None = None, end: dt.date | None = None,
                 progress: bool = True) -> ImportSummary:
    """Load each file, shift it by whole days (to replay a recording as if recent), keep days in
    [start, end], stage the good rows per (symbol, UTC day) and quarantine the bad ones.

    All or nothing per call: every file is read and validated (format, checksum, at least one valid row)
    before anything is written, so one bad file in a batch leaves the staging area as it was."""
    if symbol is not None:
        validate_symbol(symbol)
    if isinstance(shift_days, bool) or not isinstance(shift_days, int):
        raise ValueError(f"shift_days must be a whole number of days, not {shift_days!r}")
    if start is not None and end is not None and start > end:
        raise ValueError(f"start {start} is after end {end}")
    files = expand_paths(paths)
    shift_ms = shift_days * DAY_MS
    summary = ImportSummary(files=files)
    show = progress and sys.stderr.isatty()
    results = [readers.load(path, symbol=symbol) for path in tqdm(files, desc="validating", unit="file",
                                                                     disable=not show or len(files) < 2)]
    parts: dict[tuple[str, int], list[pd.DataFrame]] = {}
    bad_parts = []
    for path, result in zip(files, results, strict=True):
        bad = _bad_in_window(result.bad, shift_ms, start, end)
        summary.duplicates += result.duplicates
        summary.rows_quarantined += len(bad)
        for reason, n in bad["reason"].value_counts().items():
            summary.quarantine_reasons[str(reason)] = summary.quarantine_reasons.get(str(reason), 0) + int(n)
        bad_parts.append(bad)
        good, day_index = _good_in_window(result, summary, shift_ms=shift_ms, start=start, end=end)
        for key, rows in good.groupby([good["symbol"], day_index], sort=False):
            parts.setdefault((str(key[0]), int(key[1])), []).append(rows)
        log.debug("validated %s: %d good, %d quarantined", path, len(result.good), len(bad))
    with tqdm(total=len(parts), desc="staging days", unit="day", disable=not show) as bar:
        _stage_all(parts, settings, bar)
    bad_rows = [b for b in bad_parts if len(b)]
    if bad_rows and quarantine.append(settings.lake, "import", pd.concat(bad_rows, ignore_index=True)):
        summary.quarantine_table = table_path(settings.lake, QUARANTINE)
        summary.quarantine_version = lake_read.version(settings.lake, QUARANTINE)
    days_by_symbol: dict[str, list[dt.date]] = {}
    for sym, day_number in parts:
        days_by_symbol.setdefault(sym, []).append(EPOCH + dt.timedelta(days=day_number))
    summary.symbols = {s: SymbolDays(min(d), max(d), len(d)) for s, d in sorted(days_by_symbol.items())}
    return summary
