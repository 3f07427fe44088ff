"""`demo`: run the main job on the embedded sample (what `make demo` calls)."""

from __future__ import annotations

import argparse


def cmd_demo(args: argparse.Namespace) -> int:
    from crypto_lambda_app.demo import run_demo

    if not 1 <= args.days <= 90:
        raise ValueError(f"--days {args.days}: the shipped sample has 90 days of minutes (1..90)")
    return run_demo(days=args.days, stream_seconds=args.stream_seconds, forecasts=not args.no_forecasts)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="every layer end to end on the shipped real sample, through Dagster",
                       description="Start the replay exchange (recording shifted to end today), import half of "
                       "the recorded minutes and backfill the rest through Dagster; stream today's recorded "
                       "minutes through the embedded Kafka broker and Spark Structured Streaming; run the "
                       "speed-output sensor, speed_daily, serving_daily and the forecasts; print a summary "
                       "and stop everything started. State goes to CRYPTO_LAMBDA_HOME (default ./.lambda_home).")
    p.add_argument("--days", type=int, default=90, help="days of minute data to backfill (1..90, default 90)")
    p.add_argument("--stream-seconds", type=float, default=60.0,
                   help="wall time to replay today's recorded minutes in (default 60)")
    p.add_argument("--no-forecasts", action="store_true", help="skip the forecasts (saves about 45 s)")
    p.set_defaults(func=cmd_demo)
