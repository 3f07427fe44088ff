"""`import`: load history files into the staging area of raw partitions."""

from __future__ import annotations

import argparse
import json

from crypto_lambda.config import load_settings, validate_symbol
from crypto_lambda.timeutil import parse_day

DESCRIPTION = """\
Load 1-minute kline history files into the staging area (<home>/imports/SYMBOL/YYYY-MM-DD.parquet).
The batch layer uses staged days instead of downloading them from the exchange.

Accepted files (the format is detected from the name and content):
  Binance dumps   SYMBOL-1m-YYYY-MM[-DD].zip or .csv from data.binance.vision
                  (ms or µs open times; a sibling .CHECKSUM is verified)
  Kaggle CSV      header Timestamp,Open,High,Low,Close,Volume (Unix seconds); needs --symbol
  freqtrade       *.feather with date,open,high,low,close,volume (BTC_USDT-1m.feather -> BTCUSDT)
  REST JSON       *.json array of 12-field /api/v3/klines rows

A directory imports every supported file inside it (sorted, not recursive). Invalid rows are quarantined
in the lake's quarantine table (kind "import") with a reason; re-importing a day merges with what is staged."""

EPILOG = """\
examples:
  crypto-lambda import ~/Downloads/BTCUSDT-1m-2024-01.zip
  crypto-lambda import data/bitstamp.csv --symbol BTCUSDT --start 2020-01-01 --end 2020-12-31
  crypto-lambda import crypto_lambda/sample/klines_1m --shift-days 120 --json"""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("import", help="load history files (Binance dumps, Kaggle CSV, freqtrade, JSON)",
                            description=DESCRIPTION, epilog=EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", metavar="PATH", help="file or directory to import")
    parser.add_argument("--symbol", help="symbol for every file, e.g. BTCUSDT (overrides the file name)")
    parser.add_argument("--shift-days", type=int, default=0, metavar="N",
                        help="move every open time by N whole days (replay a recording as if recent)")
    parser.add_argument("--start", metavar="YYYY-MM-DD",
                        help="keep only days from this UTC date on (compared after the shift)")
    parser.add_argument("--end", metavar="YYYY-MM-DD",
                        help="keep only days up to this UTC date, inclusive (after the shift)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from crypto_lambda.imports import import_paths  # keeps `crypto-lambda --help` fast

    symbol = validate_symbol(args.symbol.strip().upper()) if args.symbol else None
    start = parse_day(args.start, what="--start") if args.start else None
    end = parse_day(args.end, what="--end") if args.end else None
    summary = import_paths(args.paths, load_settings(), symbol=symbol, shift_days=args.shift_days,
                           start=start, end=end, progress=not args.json)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
        return 0
    reasons = ", ".join(f"{reason} x{n:,}" for reason, n in sorted(summary.quarantine_reasons.items()))
    print(f"files: {len(summary.files)}  good rows: {summary.rows_good:,}  "
          f"quarantined: {summary.rows_quarantined:,}{f' ({reasons})' if reasons else ''}  "
          f"duplicates: {summary.duplicates:,}")
    if summary.rows_outside_window:
        print(f"outside --start/--end: {summary.rows_outside_window:,} rows skipped")
    for sym, days in summary.symbols.items():
        print(f"  {sym}: {days.days} day(s) staged, {days.first} .. {days.last}")
    if not summary.symbols:
        print("  nothing staged")
    if summary.quarantine_version is not None:
        print(f"  quarantine: {summary.quarantine_table} (kind import, version {summary.quarantine_version})")
    return 0
