"""`crypto-lambda` command line. Each area registers its own subcommands (see ``register`` in each module)."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Sequence

from crypto_lambda.cli import batch, demo, exchange, imports, query, stream, up, web


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crypto-lambda",
        description="Keep Binance market data complete and current: batch, speed and serving layers.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (demo, imports, batch, exchange, query, stream, web, up):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in () if args.verbose else ("alembic", "py4j", "urllib3", "prophet", "cmdstanpy", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)  # -v shows the libraries' own chatter too
    # Dagster flags the beta APIs we chose deliberately (backfill policies, partition mappings) on every load.
    warnings.filterwarnings("ignore", message=r".*is currently in beta")
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"crypto-lambda: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
