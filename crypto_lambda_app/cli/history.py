"""`history TABLE`: a lake table's commit log (delta-rs, no JVM): who wrote which version, when, and how much."""

from __future__ import annotations

import argparse
import json


def _rows_written(metrics: dict) -> int | None:
    """Rows a commit added that were not there before (a replaceWhere copies untouched rows: not counted)."""
    for key in ("numOutputRows", "numAddedRows", "numTargetRowsInserted", "num_added_rows"):  # Spark, delta-rs
        if key in metrics:
            return int(metrics[key] or 0) - int(metrics.get("numCopiedRows", 0) or 0)
    return None


def _int(value) -> int | None:
    return None if value is None else int(value)  # Delta keeps operation metrics as strings


def _first(metrics: dict, *keys: str):
    return next((metrics[k] for k in keys if k in metrics), None)


def history_rows(lake, name: str, limit: int | None) -> list[dict]:
    from crypto_lambda.lake import read

    rows = []
    for entry in read.table_history(lake, name, limit):
        metrics = entry["metrics"]
        rows.append({"version": entry["version"], "time": entry["timestamp"].isoformat(timespec="seconds"),
                     "operation": entry["operation"], "run_id": entry["user_metadata"].get("run_id"),
                     "rows_written": _rows_written(metrics),
                     "files_added": _int(_first(metrics, "numFiles", "numAddedFiles", "num_added_files")),
                     "files_removed": _int(_first(metrics, "numRemovedFiles", "num_removed_files"))})
    return rows


def format_rows(rows: list[dict]) -> str:
    head = ("version", "time", "operation", "run_id", "rows_written", "files_added", "files_removed")
    cells = [[("-" if r[h] is None else str(r[h])) for h in head] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def cmd_history(args: argparse.Namespace) -> int:
    from crypto_lambda.config import load_settings

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit {args.limit} must be at least 1")
    rows = history_rows(load_settings().lake, args.table, args.limit)
    print(json.dumps(rows, indent=2) if args.json else format_rows(rows))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("history", help="print a lake table's commit log (versions for query --as-of)",
                       description="Print the commit log of a lake Delta table, newest first: version, time (UTC), "
                       "operation (WRITE, OPTIMIZE, VACUUM, STREAMING UPDATE, ...), the Dagster run id that "
                       "wrote it, rows written and files added/removed. Reads the log with delta-rs (no JVM). "
                       "Example: crypto-lambda history serving_daily --limit 5")
    p.add_argument("table", help="table name, e.g. serving_daily (an unknown name lists the tables)")
    p.add_argument("--limit", type=int, default=None, help="show only the newest N commits")
    p.add_argument("--json", action="store_true", help="print JSON records instead of a table")
    p.set_defaults(func=cmd_history)
