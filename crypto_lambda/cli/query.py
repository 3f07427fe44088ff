"""`query`: Spark SQL over the lake's views (raw_klines_1m, daily_ohlcv, daily_filled, speed_klines_1m,
speed_daily, serving_daily, forecast_metrics, ...)."""

from __future__ import annotations

import argparse


def cmd_query(args: argparse.Namespace) -> int:
    from crypto_lambda.config import load_settings
    from crypto_lambda.query import format_frame, run_query
    from crypto_lambda.spark import get_spark

    frame = run_query(get_spark(), load_settings(), args.sql, limit=args.limit)
    print(format_frame(frame, args.format))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("query", help="run Spark SQL over the lake's views",
                       description="Run Spark SQL over views named after the assets: raw_klines_1m, daily_ohlcv, "
                       "daily_history_1d, daily_filled, speed_klines_1m (streaming minute bars), speed_daily, "
                       "serving_daily, forecast_metrics. Example: crypto-lambda query \"SELECT symbol, "
                       "count(*) FROM serving_daily GROUP BY symbol\"")
    p.add_argument("sql", help="the SQL statement")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output format")
    p.add_argument("--limit", type=int, default=None, help="return at most N rows")
    p.set_defaults(func=cmd_query)
