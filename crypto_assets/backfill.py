"""Find missing partitions and run them through Dagster as single-run backfills.

A partition is missing when its raw minutes or its daily bar is absent from the lake's current table
version (:func:`crypto_lambda.coverage.missing_days`; the lake is the truth: rows deleted by hand count as
missing even if Dagster remembers materializing them). Missing days
are grouped into contiguous ranges; each range is ONE run of the minutes job (one Spark session), followed by
one run of the series job so the complete series and its checks reflect the new days.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from dataclasses import dataclass, field

import dagster as dg

from crypto_assets.defs.batch.jobs import MINUTES_JOB, SERIES_JOB
from crypto_assets.lib.partitions import range_tags, symbol_range_tags
from crypto_assets.lib.runs import process_tags, sweep_dead_runs
from crypto_lambda.config import Settings
from crypto_lambda.coverage import missing_days
from crypto_lambda.timeutil import contiguous_runs, day_range, yesterday_utc

log = logging.getLogger(__name__)
# Dagster's console logger defaults to DEBUG (every step event); INFO keeps progress lines readable.
RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": os.environ.get("CRYPTO_LAMBDA_RUN_LOG_LEVEL", "INFO")}}}}


@dataclass
class BackfillOutcome:
    """What a backfill did. ``failed_checks`` are the ERROR-severity checks that failed: the data is not
    trustworthy even though every run succeeded, so the CLI exits non-zero for them."""

    runs: list[str] = field(default_factory=list)
    partitions: int = 0
    success: bool = True
    checks: dict[str, bool] = field(default_factory=dict)
    seconds: float = 0.0
    failed_checks: list[str] = field(default_factory=list)
    marked_failed: list[str] = field(default_factory=list)


def _check_results(result: dg.ExecuteInProcessResult, outcome: BackfillOutcome) -> None:
    for event in result.get_asset_check_evaluations():
        name = f"{event.asset_key.to_user_string()}:{event.check_name}"
        outcome.checks[name] = event.passed
        if not event.passed and event.severity == dg.AssetCheckSeverity.ERROR and name not in outcome.failed_checks:
            outcome.failed_checks.append(name)


def run_backfill(defs: dg.Definitions, settings: Settings, instance: dg.DagsterInstance, *,
                 first: dt.date | None = None, last: dt.date | None = None, symbols: list[str] | None = None,
                 only_missing: bool = True) -> BackfillOutcome:
    """Backfill [first, last] (default: start..yesterday) for symbols; returns runs and check outcomes."""
    started = time.monotonic()
    outcome = BackfillOutcome(marked_failed=[d.run_id for d in sweep_dead_runs(instance)])
    symbols = sorted(symbols or settings.symbols)
    first = max(first or settings.first_minute_day, settings.first_minute_day)
    last = min(last or yesterday_utc(), yesterday_utc())
    if only_missing:
        wanted = sorted({d for s in symbols for d in missing_days(settings, s, first, last)})
    else:
        wanted = list(day_range(first, last)) if first <= last else []
    minutes_job = defs.resolve_job_def(MINUTES_JOB)
    for run_first, run_last in contiguous_runs(wanted):
        n = ((run_last - run_first).days + 1) * len(symbols)
        log.info("backfill run: %s..%s x %s (%d partitions)", run_first, run_last, ",".join(symbols), n)
        result = minutes_job.execute_in_process(
            instance=instance, tags={**range_tags(run_first, run_last, symbols), **process_tags()},
            run_config=RUN_CONFIG, raise_on_error=False)
        outcome.runs.append(result.run_id)
        outcome.partitions += n
        outcome.success &= result.success
        _check_results(result, outcome)
    series = defs.resolve_job_def(SERIES_JOB).execute_in_process(
        instance=instance, tags={**symbol_range_tags(symbols), **process_tags()}, run_config=RUN_CONFIG,
        raise_on_error=False)
    outcome.runs.append(series.run_id)
    outcome.success &= series.success
    _check_results(series, outcome)
    outcome.seconds = round(time.monotonic() - started, 2)
    return outcome
