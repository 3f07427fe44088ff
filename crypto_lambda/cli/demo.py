"""`demo`: run the main job on the embedded sample (what `make demo` calls)."""

from __future__ import annotations

import argparse


def cmd_demo(args: argparse.Namespace) -> int:
    from crypto_lambda.demo import run_demo

    return run_demo(days=args.days)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="batch layer end to end on the shipped real sample, through Dagster",
                       description="Start the replay exchange (recording shifted to end today), import half of "
                       "the recorded minutes, backfill the rest through Dagster, run the checks, print a summary "
                       "and stop. State goes to CRYPTO_LAMBDA_HOME (default ./.lambda_home).")
    p.add_argument("--days", type=int, default=90, help="days of minute data to backfill (max 90, default 90)")
    p.set_defaults(func=cmd_demo)
