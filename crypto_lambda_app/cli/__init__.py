"""`crypto-lambda` command line. Each area registers its own subcommands (see ``register`` in each module)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Sequence

from crypto_lambda.errors import report
from crypto_lambda_app.cli import batch, cluster, demo, history, imports, lake, query, stream, up, web
from replay_exchange import cli as exchange


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crypto-lambda",
        description="Keep Binance market data complete and current: batch, speed and serving layers.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (demo, imports, batch, exchange, query, history, stream, web, up, cluster, lake):
        module.register(sub)
    return parser


class _NoPy4JRootRecords(logging.Filter):
    """py4j logs a lost JVM connection on the root logger, traceback included."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "root" and f"{os.sep}py4j{os.sep}" in record.pathname)


def _quiet_spark() -> None:
    """Without -v, PySpark's own reports of an error (a ~7 KB Java stack trace per SQL error, py4j's traceback
    when the JVM dies, the Arrow fallback warning) are left out: the error boundary says it in one line."""
    for spark_logger in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):
        logging.getLogger(spark_logger).setLevel(logging.CRITICAL)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_NoPy4JRootRecords())
    warnings.filterwarnings("ignore", message=r"toPandas attempted Arrow optimization")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in () if args.verbose else ("alembic", "py4j", "urllib3", "prophet", "cmdstanpy", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)  # -v shows the libraries' own chatter too
    if not args.verbose:
        _quiet_spark()
    # Dagster flags the beta APIs we chose deliberately (backfill policies, partition mappings) on every load.
    warnings.filterwarnings("ignore", message=r".*is currently in beta")
    try:
        if args.command != "lake":  # an old-layout home is converted once, explicitly (crypto_lambda.lake.migrate)
            from crypto_lambda.config import home_dir
            from crypto_lambda.lake.legacy import check_migrated

            check_migrated(home_dir())
        return int(args.func(args) or 0)
    except (Exception, KeyboardInterrupt) as exc:  # the one boundary: one line, an honest exit code
        return report(exc, prog=parser.prog, context=" ".join(sys.argv[1:] if argv is None else argv),
                      verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
