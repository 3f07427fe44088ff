"""`lake migrate`: convert a home written by the old file-per-day layout into Delta tables, once, verified."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger("crypto_lambda.lake")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("lake", help="lake maintenance: `lake migrate` upgrades an old-layout home",
                            description="Commands on the lake's Delta tables as a whole.")
    lake_sub = parser.add_subparsers(dest="lake_command", required=True, metavar="SUBCOMMAND")
    migrate = lake_sub.add_parser(
        "migrate", help="convert old Parquet-per-day datasets into Delta tables (verified, then moved aside)",
        description="Find datasets of $CRYPTO_LAMBDA_HOME in the old layout (lake/<dataset>/<SYMBOL>/<day>."
                    "parquet, lake/<dataset>/<SYMBOL>.parquet, the speed layer's file-sink output, "
                    "quarantine/<kind>/*.parquet), write each as a Delta table (one commit), compare row counts "
                    "and per-(symbol, day) row checksums with the old files, and only then move the old files "
                    "to $CRYPTO_LAMBDA_HOME/pre_delta/<time>/ (or delete them with --remove-old). On any "
                    "mismatch nothing moves and the command fails naming the dataset and day. A rerun is a "
                    "no-op.")
    migrate.add_argument("--remove-old", action="store_true",
                         help="delete the old files after verification instead of keeping them in pre_delta/")
    migrate.add_argument("--dry-run", action="store_true", help="only list the old-layout datasets found")
    migrate.set_defaults(func=run_migrate)


def run_migrate(args: argparse.Namespace) -> int:
    from crypto_lambda.config import home_dir
    from crypto_lambda.lake import legacy, migrate

    home = home_dir()
    found = legacy.find_old(home)
    if args.dry_run or not found:
        for ds in found:
            print(f"{ds.name}: {len(ds.files)} old files under {ds.root}")
        if not found:
            print(f"{home}: no old-layout datasets; nothing to migrate")
        return 0
    done = migrate.migrate(home, remove_old=args.remove_old)
    width = max(len(m.name) for m in done)
    print(f"{'table':<{width}}  {'old files':>9}  {'rows':>10}  {'days ok':>7}  version  schema")
    for m in done:
        print(f"{m.name:<{width}}  {m.files:>9,}  {m.rows:>10,}  {m.groups:>7,}  {m.version!s:>7}  "
              f"{'lake' if m.known_schema else 'own'}")
    where = "deleted" if args.remove_old else f"kept under {home / migrate.BACKUP}"
    print(f"{len(done)} datasets migrated and verified; old files {where}")
    return 0
