"""`backfill` and `status`: the batch layer's commands. Both go through Dagster (runs are recorded in the
instance under DAGSTER_HOME and visible in the UI)."""

from __future__ import annotations

import argparse
import json
import sys

from crypto_lambda.config import Settings, ensure_dagster_home, load_settings, parse_symbols
from crypto_lambda.timeutil import parse_day, yesterday_utc


def _instance(settings: Settings):
    ensure_dagster_home(settings)
    import dagster as dg

    return dg.DagsterInstance.get()


def _settings_for(symbols: str | None) -> Settings:
    settings = load_settings()
    if symbols:
        wanted = parse_symbols(symbols)
        unknown = sorted(set(wanted) - set(settings.symbols))
        if unknown:
            raise ValueError(f"symbol(s) {', '.join(unknown)} are not configured "
                             f"(CRYPTO_LAMBDA_SYMBOLS={','.join(settings.symbols)})")
    return settings


def cmd_backfill(args: argparse.Namespace) -> int:
    settings = _settings_for(args.symbols)
    first = parse_day(args.start, what="--start") if args.start else None
    last = parse_day(args.end, what="--end") if args.end else None
    if first and last and first > last:
        raise ValueError(f"--start {first} is after --end {last}")
    newest = yesterday_utc()  # the newest complete UTC day: today is the speed layer's
    if first and first > newest:
        raise ValueError(f"--start {first} is in the future for a backfill: the newest complete day is {newest} "
                         "(UTC); pass an earlier --start")
    if settings.first_minute_day > newest:
        raise ValueError(f"CRYPTO_LAMBDA_MINUTE_START/START {settings.first_minute_day} is in the future: the "
                         f"newest complete day is {newest} (UTC); nothing to backfill")
    from crypto_lambda.exchange.client import BinanceClient

    known = BinanceClient(settings.api_url).exchange_symbols()
    wanted = list(parse_symbols(args.symbols)) if args.symbols else list(settings.symbols)
    unlisted = sorted(set(wanted) - known)
    if unlisted:
        raise ValueError(f"symbol(s) {', '.join(unlisted)} are not listed by the exchange at {settings.api_url}")
    instance = _instance(settings)
    from crypto_assets.backfill import run_backfill
    from crypto_assets.definitions import build_defs

    outcome = run_backfill(build_defs(settings), settings, instance, first=first, last=last, symbols=wanted,
                           only_missing=not args.all)
    ok = outcome.success and not outcome.failed_checks
    report = {"runs": outcome.runs, "partitions": outcome.partitions, "success": outcome.success,
              "checks": outcome.checks, "failed_checks": outcome.failed_checks,
              "marked_failed_runs": outcome.marked_failed, "seconds": outcome.seconds}
    print(json.dumps(report, indent=2) if args.json else
          f"{outcome.partitions} partitions in {len(outcome.runs)} run(s), {outcome.seconds}s, "
          f"{'ok' if ok else 'FAILED'}; checks: "
          + ", ".join(f"{k}={'pass' if v else 'FAIL'}" for k, v in outcome.checks.items()))
    if outcome.marked_failed:
        print(f"note: {len(outcome.marked_failed)} earlier run(s) whose process had died were marked failed",
              file=sys.stderr)
    if not outcome.success:
        print("crypto-lambda: error: a backfill run failed; its log is in the Dagster UI (`crypto-lambda status` "
              "lists it); rerun `crypto-lambda backfill` to retry the missing days", file=sys.stderr)
    elif outcome.failed_checks:
        print(f"crypto-lambda: error: ERROR-severity check(s) failed: {', '.join(outcome.failed_checks)}; "
              "`crypto-lambda status` shows which days", file=sys.stderr)
    return 0 if ok else 1


def cmd_status(args: argparse.Namespace) -> int:
    settings = load_settings()
    from crypto_assets.status import collect_status, format_status
    from crypto_lambda_app.stack.health import component_health, format_components

    status = collect_status(settings, _instance(settings))
    status["components"] = component_health(settings)  # the `make up` stack, if one runs on this home
    print(json.dumps(status, indent=2) if args.json else
          format_status(status) + "\n\n" + format_components(status["components"]))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backfill", help="materialize missing days through Dagster (one run per range)",
                       description="Find every missing (day, symbol) partition from the start date to yesterday "
                       "and materialize them through Dagster as single-run backfills (one Spark session per "
                       "run), then rebuild the daily series and run the asset checks.")
    p.add_argument("--start", help="first day YYYY-MM-DD (default: CRYPTO_LAMBDA_MINUTE_START/START)")
    p.add_argument("--end", help="last day YYYY-MM-DD (default: yesterday, UTC)")
    p.add_argument("--symbols", help="comma-separated subset of CRYPTO_LAMBDA_SYMBOLS")
    p.add_argument("--all", action="store_true", help="re-materialize every day in range, not only missing ones")
    p.add_argument("--json", action="store_true", help="print the outcome as JSON")
    p.set_defaults(func=cmd_backfill)

    p = sub.add_parser("status", help="coverage, missing days, last materializations and check results",
                       description="Per symbol: first and last day, missing days, last materialization of each "
                       "asset and the latest asset check results; and the health of each `crypto-lambda up` "
                       "component (pid alive, port answering, restarts, log) under \"components\".")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_status)
