"""Run every benchmark (``make bench``): full rebuild, Dagster backfill, one partition, forecasts, streaming and the
Spark standalone cluster (bench_cluster.py, several minutes of its own); print their tables.

Figures land in ``$CRYPTO_LAMBDA_HOME/bench/<name>.json`` (rebuild, backfill, partition; coldstart with
``--explore``). The first run also builds the bootstrapped input (~35 s) and the AppCDS archive (~30-70 s),
cached under the same directory. About 8-10 minutes on 2 cores; ``--explore`` adds ~6.

    .venv/bin/python bench/run_all.py [--only rebuild,backfill,partition] [--explore]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import Figure, log  # noqa: E402

BENCHES = ("rebuild", "backfill", "partition", "forecast", "streaming", "cluster")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help=f"comma-separated subset of {', '.join(BENCHES)}")
    parser.add_argument("--explore", action="store_true", help="also run the cold-start exploration table")
    args = parser.parse_args(argv)
    wanted = args.only.split(",") if args.only else list(BENCHES)
    unknown = set(wanted) - set(BENCHES)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    started = time.perf_counter()
    log(f"benchmarks {', '.join(wanted)}; figures -> {common.bench_home()}; load average "
        f"{os.getloadavg()[0]:.1f} (other processes on this machine skew every figure)")
    failed = []
    for name in [*wanted, *(["coldstart"] if args.explore else [])]:
        module = importlib.import_module(name if name == "coldstart" else f"bench_{name}")
        try:
            module.main([])
        except Exception:  # noqa: BLE001 - one broken benchmark must not hide the others' figures
            traceback.print_exc()
            failed.append(name)
    summary = []
    for name in [*wanted, *(["coldstart"] if args.explore else [])]:
        path = common.bench_home() / f"{name}.json"
        rows = json.loads(path.read_text()) if path.exists() else []
        summary += [Figure(f"{name}: {r['name']}", r["value"], r["unit"], r["baseline"], r["target"], r["met"])
                    for r in rows if r.get("target")]
    common.print_table(f"all targets ({time.perf_counter() - started:.0f}s in total)", summary)
    if failed:
        print(f"FAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
