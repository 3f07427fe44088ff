"""`make demo`: the batch layer end to end on REAL recorded Binance data, through Dagster.

1. Start the replay exchange, time-shifted so the recording's last day is today.
2. Import the first half of the recorded minutes from the shipped freqtrade files (shifted the same way).
3. Backfill every day of the 90-day minute window x 2 symbols through Dagster: imported days come from the
   staging area, the rest from the exchange's REST API; older history from its 1d klines.
4. Print a summary (rows per asset, sources, missing days, check results, elapsed) and stop the exchange.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from pathlib import Path

from crypto_lambda import lake as lk
from crypto_lambda.config import Settings, ensure_dagster_home, load_settings, save_settings
from crypto_lambda.timeutil import DAY_MS, yesterday_utc

log = logging.getLogger("crypto_lambda.demo")
SAMPLE_1M = Path(__file__).resolve().parent / "sample" / "klines_1m"


def _count_rows(folder: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f).metadata.num_rows for f in folder.rglob("*.parquet")) if folder.is_dir() else 0


def run_demo(days: int = 90) -> int:
    started = time.monotonic()
    from crypto_lambda.exchange.recording import Recording
    from crypto_lambda.exchange.replay import ReplayKnobs, ReplayServer

    recording = Recording.from_sample(shift_to_today=True)
    shift_days = recording.shift_ms // DAY_MS
    last = yesterday_utc()
    first = last - dt.timedelta(days=days - 1)
    with ReplayServer(recording, ReplayKnobs()) as server:
        os.environ["BINANCE_API_URL"] = server.url
        os.environ.setdefault("CRYPTO_LAMBDA_MINUTE_START", first.isoformat())
        settings = load_settings()
        save_settings(settings)
        log.info("replay exchange at %s (recording shifted by %d days); state in %s", server.url, shift_days,
                 settings.home)

        from crypto_lambda.imports import import_paths

        half = first + dt.timedelta(days=days // 2 - 1)
        summary = import_paths([SAMPLE_1M], settings, shift_days=shift_days, start=first, end=half)
        log.info("imported %d rows (%d quarantined) for %s..%s", summary.rows_good, summary.rows_quarantined,
                 first, half)

        import dagster as dg

        from crypto_assets.backfill import run_backfill
        from crypto_assets.definitions import build_defs
        from crypto_assets.status import collect_status

        ensure_dagster_home(settings)
        instance = dg.DagsterInstance.get()
        outcome = run_backfill(build_defs(settings), settings, instance, first=first, last=last)
        status = collect_status(settings, instance)
    elapsed = time.monotonic() - started
    print(_summary(settings, outcome, status, elapsed))
    ok = outcome.success and status["healthy"]
    return 0 if ok else 1


def _summary(settings: Settings, outcome, status: dict, elapsed: float) -> str:
    import pyarrow.parquet as pq

    from crypto_assets.status import format_status

    raw_sources: dict[str, int] = {}
    for f in (settings.lake / lk.RAW_KLINES).rglob("*.parquet"):
        for src, n in pq.read_table(f, columns=["source"]).to_pandas()["source"].value_counts().items():
            raw_sources[src] = raw_sources.get(src, 0) + int(n)
    lines = ["", "=== crypto-lambda demo: batch layer ===",
             f"state directory     {settings.home}",
             f"dagster runs        {len(outcome.runs)} ({outcome.partitions} daily x symbol partitions)",
             f"raw_klines_1m       {_count_rows(settings.lake / lk.RAW_KLINES):>9,} rows  by source {raw_sources}",
             f"daily_ohlcv         {_count_rows(settings.lake / lk.DAILY_OHLCV):>9,} bars",
             f"daily_history_1d    {_count_rows(settings.lake / lk.DAILY_HISTORY):>9,} bars (exchange 1d klines)",
             f"daily_filled        {_count_rows(settings.lake / lk.DAILY_FILLED):>9,} days",
             "", format_status(status), "", f"elapsed             {elapsed:.1f} s"]
    return "\n".join(lines)
