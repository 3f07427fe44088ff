"""What `crypto-lambda status` reports: per symbol coverage and gaps, last materializations, check results."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from crypto_assets.defs.batch import checks as batch_checks
from crypto_assets.defs.forecast import checks as forecast_checks
from crypto_assets.defs.serving import checks as serving_checks
from crypto_assets.lib.runs import IN_PROGRESS, sweep_dead_runs, unresolved_failures
from crypto_lambda.config import Settings
from crypto_lambda.coverage import gap_report, missing_days
from crypto_lambda.lake import read as lake_read
from crypto_lambda.lake.tables import (
    DAILY_FILLED,
    DAILY_HISTORY,
    DAILY_OHLCV,
    FORECASTS,
    RAW_KLINES,
    REALIZED_VOL,
    SERVING_DAILY,
    SPEED_DAILY,
)

ASSETS = (RAW_KLINES, DAILY_OHLCV, DAILY_HISTORY, DAILY_FILLED, REALIZED_VOL, SPEED_DAILY, SERVING_DAILY, FORECASTS)
CHECKS = (*batch_checks.CHECKS, *serving_checks.CHECKS, *forecast_checks.CHECKS)


def _iso(ts: float | None) -> str | None:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds") if ts else None


def collect_status(settings: Settings, instance: dg.DagsterInstance) -> dict:
    gaps = gap_report(settings)
    symbols = {}
    for symbol in settings.symbols:
        days = lake_read.days(settings.lake, RAW_KLINES, symbol)
        missing = missing_days(settings, symbol)
        symbols[symbol] = {
            "first_day": str(days[0]) if days else None,
            "last_day": str(days[-1]) if days else None,
            "partitions": len(days),
            "missing_days": len(missing),
            "missing_examples": [str(d) for d in missing[:10]],
            "series_gaps": gaps.get(symbol, {}),
        }
    materializations = {}
    for name in ASSETS:
        event = instance.get_latest_materialization_event(dg.AssetKey(name))
        materializations[name] = _iso(event.timestamp) if event else None
    marked = sweep_dead_runs(instance)  # a killed run must not look in flight forever
    keys = [dg.AssetCheckKey(dg.AssetKey(asset), check) for asset, check in CHECKS]
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    checks = {f"{key.asset_key.to_user_string()}:{key.name}": _check_entry(instance, latest.get(key))
              for key in keys}
    failed = failed_checks(checks)
    in_flight = [{"run_id": r.dagster_run.run_id, "job": r.dagster_run.job_name,
                  "status": r.dagster_run.status.value, "since": _iso(r.start_time)}
                 for r in instance.get_run_records(dg.RunsFilter(statuses=list(IN_PROGRESS)))]
    return {
        "home": str(settings.home),
        "first_minute_day": str(settings.first_minute_day),
        "symbols": symbols,
        "last_materialization": materializations,
        "checks": checks,
        "runs": {"in_flight": in_flight, "marked_failed_now": [d.run_id for d in marked],
                 "unresolved_failures": unresolved_failures(instance)},
        "healthy": not failed and all(s["missing_days"] == 0 for s in symbols.values()),
    }


def _check_entry(instance: dg.DagsterInstance, record) -> dict:
    """One check's latest execution. A PLANNED record has no evaluation yet: its run is in flight, or the run
    ended without evaluating it (failed, killed, or the check was skipped), which is what status reports."""
    if record is None:
        return {"status": "NEVER_RUN", "passed": None, "severity": None, "at": None}
    status = record.status.value
    evaluation = record.evaluation if record.status.value != "PLANNED" else None
    if evaluation is None:
        run = instance.get_run_by_id(record.run_id)
        if run is None:
            status = "RUN_DELETED"
        elif run.status in IN_PROGRESS or run.status in (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED):
            status = "IN_PROGRESS"
        elif run.status == dg.DagsterRunStatus.SUCCESS:
            status = "SKIPPED"
        else:
            status = f"NOT_EVALUATED_RUN_{run.status.value}"
    return {
        "status": status,
        "passed": getattr(evaluation, "passed", None),
        "severity": evaluation.severity.value if evaluation is not None else None,
        "at": _iso(record.create_timestamp),
        "run_id": record.run_id,
    }


def failed_checks(checks: dict[str, dict]) -> list[str]:
    """The checks that make the lake unhealthy: a failed WARN check (e.g. interval coverage) is reported, but
    only a failed ERROR check counts."""
    return [k for k, v in checks.items() if v["passed"] is False and v["severity"] != "WARN"]


def format_status(status: dict) -> str:
    lines = [f"CRYPTO_LAMBDA_HOME {status['home']}  (minute partitions from {status['first_minute_day']})", ""]
    lines.append(f"{'symbol':<10} {'first':<11} {'last':<11} {'parts':>6} {'missing':>8} {'filled':>7}")
    for symbol, s in status["symbols"].items():
        filled = s["series_gaps"].get("filled", "-")
        lines.append(f"{symbol:<10} {s['first_day'] or '-':<11} {s['last_day'] or '-':<11} {s['partitions']:>6} "
                     f"{s['missing_days']:>8} {filled:>7}")
    lines += ["", "last materialization:"]
    lines += [f"  {k:<18} {v or 'never'}" for k, v in status["last_materialization"].items()]
    lines += ["", "checks:"]
    for name, c in status["checks"].items():
        verdict = {True: "PASSED", False: "WARNING" if c["severity"] == "WARN" else "FAILED",
                   None: c["status"]}[c["passed"]]
        lines.append(f"  {name:<36} {verdict:<10} {c['at'] or ''}")
    runs = status.get("runs", {})
    if runs.get("in_flight") or runs.get("unresolved_failures"):
        lines += ["", "runs:"]
        lines += [f"  {r['run_id'][:8]} {r['job']:<22} {r['status']:<10} since {r['since'] or '?'}"
                  for r in runs.get("in_flight", [])]
        lines += [f"  {r['run_id'][:8]} {r['job']:<22} {r['status']:<10} {r['message'] or ''}"
                  for r in runs.get("unresolved_failures", [])[:3]]
    lines += ["", "healthy" if status["healthy"] else "NOT healthy: see missing days / failed checks above"]
    return "\n".join(lines)
