"""``raw_klines_1m``: each (day, symbol) partition holds that day's 1,440 one-minute klines.

Imported history (``crypto-lambda import``) is used where it covers the whole day; otherwise the day is
fetched from the exchange and merged with whatever was imported (imported rows win on collisions).
Consecutive days that need the exchange are fetched as one paginated range, in chunks of at most
``FETCH_CHUNK_DAYS`` days so memory stays bounded on long backfills.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter

import dagster as dg
import pandas as pd

from crypto_assets.resources import ExchangeResource, LakeResource
from crypto_lambda import lake as lk
from crypto_lambda.imports import read_staged
from crypto_lambda.schema import empty_klines, merge_klines
from crypto_lambda.timeutil import DAY_MS, MINUTES_PER_DAY, contiguous_runs, day_start_ms

FETCH_CHUNK_DAYS = 30


def _chunks(first: dt.date, last: dt.date) -> list[tuple[dt.date, dt.date]]:
    out = []
    while first <= last:
        end = min(last, first + dt.timedelta(days=FETCH_CHUNK_DAYS - 1))
        out.append((first, end))
        first = end + dt.timedelta(days=1)
    return out


def _split_by_day(frame: pd.DataFrame) -> dict[dt.date, pd.DataFrame]:
    if not len(frame):
        return {}
    days = frame["open_time"].dt.date
    return {day: part for day, part in frame.groupby(days, sort=True)}


def materialize_raw(context: dg.AssetExecutionContext, lake: LakeResource, exchange: ExchangeResource,
                    days_by_symbol: dict[str, list[dt.date]]) -> dict[str, object]:
    """Write raw partitions for the given days; returns run metadata."""
    settings = lake.settings()
    client = exchange.client()
    sources: Counter[str] = Counter()
    incomplete: list[str] = []
    rows = quarantined = written = 0
    total = sum(len(d) for d in days_by_symbol.values())
    started = time.monotonic()
    for symbol, days in days_by_symbol.items():
        staged = {day: read_staged(settings, symbol, day) for day in days}
        need_exchange = [d for d in days if staged[d] is None or len(staged[d]) < MINUTES_PER_DAY]
        fetched: dict[dt.date, pd.DataFrame] = {}
        for run_first, run_last in contiguous_runs(need_exchange):
            for first, last in _chunks(run_first, run_last):
                result = client.klines(symbol, day_start_ms(first), day_start_ms(last) + DAY_MS)
                path = lk.write_quarantine(settings.quarantine, "rest", result.bad)
                if path is not None:
                    quarantined += len(result.bad)
                    context.log.warning(f"{len(result.bad)} malformed klines from the exchange -> {path}")
                fetched.update(_split_by_day(result.good))
                context.log.info(f"{symbol} {first}..{last}: fetched {len(result.good)} minutes "
                                 f"({written}/{total} partitions written, {time.monotonic() - started:.1f}s)")
        for day in days:
            frame = merge_klines(fetched.get(day, empty_klines()), staged[day])
            lk.write_klines(frame, lk.partition_path(settings.lake, lk.RAW_KLINES, symbol, day))
            written += 1
            rows += len(frame)
            sources.update(frame["source"].value_counts().to_dict())
            if len(frame) < MINUTES_PER_DAY:
                incomplete.append(f"{day}|{symbol} ({len(frame)} min)")
    return {
        "partitions": written,
        "rows": rows,
        "rows_by_source": dg.MetadataValue.json(dict(sources)),
        "quarantined_rows": quarantined,
        "incomplete_partitions": len(incomplete),
        "incomplete_examples": dg.MetadataValue.json(incomplete[:20]),
        "seconds": round(time.monotonic() - started, 2),
    }
