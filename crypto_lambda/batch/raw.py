"""``raw_klines_1m``: each (day, symbol) partition holds that day's 1,440 one-minute klines, as rows of the
Delta table ``raw_klines_1m`` (partitioned by symbol and month; ``date`` = UTC date of ``open_time``).

Imported history (``crypto-lambda import``, a file inbox) is used where it covers the whole day; otherwise the
day is fetched from the exchange and merged with whatever was imported (imported rows win on collisions).
Consecutive days that need the exchange are fetched as one paginated range, in chunks of at most
``FETCH_CHUNK_DAYS`` days, and each chunk goes to a Parquet file in a private staging folder, so memory stays
bounded on long backfills. The run's whole rectangle is then written by ONE ``replaceWhere`` commit (Spark
reads the staged files): a 365-day backfill is one commit, a re-run leaves one copy, a kill leaves the old
version. Malformed rows go to the ``quarantine`` table (kind ``rest``).
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import time
import uuid
from collections import Counter
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from crypto_lambda.batch.rect import Rect, rectangles
from crypto_lambda.config import Settings
from crypto_lambda.exchange.client import BinanceClient
from crypto_lambda.imports import read_staged
from crypto_lambda.lake import quarantine
from crypto_lambda.lake import write as lake_write
from crypto_lambda.lake.tables import RAW_KLINES
from crypto_lambda.quality import is_full_day
from crypto_lambda.schema import RAW_SCHEMA, empty_klines, merge_klines, spark_ddl
from crypto_lambda.timeutil import DAY_MS, contiguous_runs, day_start_ms

FETCH_CHUNK_DAYS = 30
STALE_STAGING_SECONDS = 24 * 3600  # a staging folder this old belongs to a run that was killed


def _chunks(days: list[dt.date]) -> list[list[dt.date]]:
    return [days[i:i + FETCH_CHUNK_DAYS] for i in range(0, len(days), FETCH_CHUNK_DAYS)]


def _split_by_day(frame: pd.DataFrame) -> dict[dt.date, pd.DataFrame]:
    if not len(frame):
        return {}
    return {day: part for day, part in frame.groupby(frame["open_time"].dt.date, sort=True)}


def _merge_chunk(chunk: list[dt.date], staged: dict[dt.date, pd.DataFrame | None],
                 goods: list[pd.DataFrame]) -> pd.DataFrame:
    """One chunk's rows: the exchange's validated rows merged with imported ones (imported win), day by day.
    Without imported rows in the chunk, the exchange's rows are already one copy per minute, sorted (the
    client validates and dedups them), so the per-day merge is skipped."""
    goods = [g for g in goods if len(g)]
    if all(staged[day] is None for day in chunk):
        return pd.concat(goods, ignore_index=True) if goods else empty_klines()
    fetched = _split_by_day(pd.concat(goods, ignore_index=True)) if goods else {}
    frames = [merge_klines(fetched.get(day, empty_klines()), staged[day]) for day in chunk]
    return pd.concat([f for f in frames if len(f)] or [empty_klines()], ignore_index=True)


def with_date(frame: pd.DataFrame) -> pa.Table:
    """Klines -> rows of ``raw_klines_1m`` (the UTC ``date`` added)."""
    frame = frame.assign(date=frame["open_time"].dt.tz_convert("UTC").dt.date)
    return pa.Table.from_pandas(frame[RAW_SCHEMA.names], schema=RAW_SCHEMA, preserve_index=False)


def write_rectangles(spark, lake: Path, staging: Path, rects: list[Rect], run_id: str | None) -> list:
    """One replace per rectangle (one in every range run) from the staged Parquet files."""
    files = sorted(str(p) for p in staging.glob("*.parquet"))
    frame = spark.read.schema(spark_ddl(RAW_SCHEMA)).parquet(*files) if files else RAW_SCHEMA.empty_table()
    commits = []
    for rect in rects:
        part = frame.where(rect.predicate) if files and len(rects) > 1 else frame
        commits.append(lake_write.replace(spark, lake, RAW_KLINES, part, symbols=rect.symbols, start=rect.start,
                                          end=rect.end, run_id=run_id))
    return commits



def _sweep_staging(root: Path) -> None:
    """Remove staging folders left by killed runs (never a running one's: those are younger than a day)."""
    for folder in root.glob("raw-*") if root.is_dir() else []:
        if time.time() - folder.stat().st_mtime > STALE_STAGING_SECONDS:
            shutil.rmtree(folder, ignore_errors=True)


def import_raw(spark, settings: Settings, client: BinanceClient, days_by_symbol: dict[str, list[dt.date]],
               run_id: str | None, log: logging.Logger) -> dict[str, object]:
    """Fetch/merge the run's partitions and commit them; returns run metadata (``log``: the run's logger)."""
    sources: Counter[str] = Counter()
    incomplete: list[str] = []
    rows = quarantined = staged_parts = 0
    total = sum(len(d) for d in days_by_symbol.values())
    started = time.monotonic()
    _sweep_staging(settings.home / "tmp")
    staging = settings.home / "tmp" / f"raw-{uuid.uuid4().hex}"
    staging.mkdir(parents=True)
    try:
        for symbol, days in days_by_symbol.items():
            for n, chunk in enumerate(_chunks(sorted(days))):
                staged = {day: read_staged(settings, symbol, day) for day in chunk}
                need = [d for d in chunk if staged[d] is None or not is_full_day(len(staged[d]))]
                goods = []
                for first, last in contiguous_runs(need):
                    result = client.klines(symbol, day_start_ms(first), day_start_ms(last) + DAY_MS)
                    bad = quarantine.append(settings.lake, "rest", result.bad, run_id)
                    if bad:
                        quarantined += bad
                        log.warning(f"{bad} malformed klines from the exchange -> quarantine (rest)")
                    goods.append(result.good)
                merged = _merge_chunk(chunk, staged, goods)
                per_day = merged["open_time"].dt.date.value_counts() if len(merged) else {}
                rows += len(merged)
                sources.update(merged["source"].value_counts().to_dict())
                incomplete += [f"{day}|{symbol} ({int(per_day.get(day, 0))} min)" for day in chunk
                               if not is_full_day(per_day.get(day, 0))]
                pq.write_table(with_date(merged), staging / f"{symbol}-{n:05d}.parquet")
                staged_parts += len(chunk)
                log.info(f"{symbol} {chunk[0]}..{chunk[-1]}: {len(merged)} minutes staged "
                                 f"({staged_parts}/{total} partitions, {time.monotonic() - started:.1f}s)")
        fetch_seconds = time.monotonic() - started
        commits = write_rectangles(spark, settings.lake, staging, rectangles(days_by_symbol), run_id)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    meta: dict[str, object] = {
        "partitions": total,
        "rows": rows,
        "rows_by_source": dict(sources),
        "quarantined_rows": quarantined,
        "incomplete_partitions": len(incomplete),
        "incomplete_examples": incomplete[:20],
        "fetch_seconds": round(fetch_seconds, 2),
        "seconds": round(time.monotonic() - started, 2),
        "commits": len(commits),
    }
    for commit in commits[-1:]:
        meta.update(commit.metadata())
    return meta
