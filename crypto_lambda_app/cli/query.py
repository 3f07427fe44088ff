"""`query`: Spark SQL over the lake's Delta tables as views (raw_klines_1m, daily_ohlcv, daily_filled,
speed_klines_1m, speed_daily, serving_daily, forecast_metrics, ...), optionally as of a version or time."""

from __future__ import annotations

import argparse


def cmd_query(args: argparse.Namespace) -> int:
    import sys

    from crypto_lambda.config import load_settings
    from crypto_lambda.query import format_frame, parse_as_of, run_query
    from crypto_lambda.spark import get_spark

    if args.limit < 1:
        raise ValueError(f"--limit {args.limit} must be at least 1")
    settings = load_settings()
    as_of = parse_as_of(args.as_of, settings.lake)  # bad input fails before the JVM starts
    spark = get_spark()
    if not getattr(args, "verbose", False):  # a failed task's Java stack traces: the error line says enough
        spark.sparkContext.setLogLevel("FATAL")
    result = run_query(spark, settings, args.sql, limit=args.limit, allow_writes=args.allow_writes, as_of=as_of)
    print(format_frame(result.frame, args.format))
    if result.truncated:
        print(f"note: showing the first {result.limit:,} rows; the result has more (--limit N to change)",
              file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("query", help="run Spark SQL over the lake's views",
                       description="Run Spark SQL over the lake's Delta tables, one view each, named after the "
                       "assets: raw_klines_1m, daily_ohlcv, daily_history_1d, daily_filled, speed_klines_1m "
                       "(streaming minute bars), speed_daily, serving_daily, forecast_metrics, forecasts, ... "
                       "(`crypto-lambda history TABLE` lists a table's versions). Example: crypto-lambda query "
                       "\"SELECT symbol, count(*) FROM serving_daily GROUP BY symbol\". Read-only unless "
                       "--allow-writes; the Spark warehouse and scratch space live under CRYPTO_LAMBDA_HOME/spark.")
    p.add_argument("sql", help="the SQL statement")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output format")
    p.add_argument("--limit", type=int, default=10_000, help="return at most N rows (default 10,000; a note "
                   "says when the result had more)")
    p.add_argument("--allow-writes", action="store_true",
                   help="allow statements that write, drop or create (locations must be under "
                        "CRYPTO_LAMBDA_HOME); without it only SELECT, SHOW, DESCRIBE, EXPLAIN and temporary "
                        "views run")
    p.add_argument("--as-of", action="append", metavar="[TABLE=]VERSION|TIMESTAMP",
                   help="time travel: read every view as of a version or ISO timestamp (UTC when no zone; a table "
                        "created later is left out), or TABLE=VERSION|TIMESTAMP for one table; repeatable, the "
                        "per-table value wins")
    p.set_defaults(func=cmd_query)
