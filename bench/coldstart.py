"""Spark cold-start exploration: what each fix buys on the full rebuild, each in a fresh process.

Why: on 2 cores Spark's fixed costs (JVM start, ~10k classes loaded, SparkContext, the first job's JIT and
codegen) dwarf the work. Candidates measured here: JVM flags (C1 only, serial GC), an AppCDS class archive
(Java 17: -XX:ArchiveClassesAtExit once, then -XX:SharedArchiveFile), split settings, and a long-lived Spark
Connect server that cold clients talk to over gRPC. Every variant rebuilds from the lake's Delta table
raw_klines_1m (bench/common.py ``ensure_delta_input``); DuckDB reads the files its log references.

    .venv/bin/python bench/coldstart.py [--repeats 2] [--only NAME,...]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import Figure, log  # noqa: E402

from crypto_lambda.lake.tables import RAW_KLINES  # noqa: E402
from crypto_lambda.machine import free_port  # noqa: E402
from crypto_lambda.spark import LOCAL_SPARK_CONF  # noqa: E402

JAVA_OPTS = "spark.driver.extraJavaOptions"
CONNECT_MODULES = ("grpc", "grpc_status", "google.rpc", "zstandard")


def base_java_opts() -> str:
    return LOCAL_SPARK_CONF.get(JAVA_OPTS, "")


# -- AppCDS -----------------------------------------------------------------------------------------------------


def cds_archive() -> Path:
    return common.bench_home() / "spark-cds.jsa"


def _cds_key() -> str:
    """An archive is only valid for the same JDK and the same Spark jars; a mismatch rebuilds it."""
    import pyspark

    jars = sorted(p.name for p in (Path(pyspark.__file__).parent / "jars").glob("*.jar"))
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
    return hashlib.sha256(json.dumps([java, pyspark.__version__, jars, base_java_opts()]).encode()).hexdigest()


def cds_conf() -> dict[str, str]:
    return {JAVA_OPTS: f"{base_java_opts()} -XX:SharedArchiveFile={cds_archive()}"}


def ensure_cds_archive() -> Path:
    """Dump the classes a rebuild loads into an AppCDS archive (once; ~180 MB; about one Spark run)."""
    path, marker = cds_archive(), cds_archive().with_suffix(".key")
    key = _cds_key()
    if path.exists() and marker.exists() and marker.read_text() == key:
        return path
    path.unlink(missing_ok=True)
    log(f"building the AppCDS archive {path} (one training run of the rebuild on a month of files)")
    started = time.perf_counter()
    from bench_rebuild import run_engine

    run_engine("spark", "delta", repeats=1, conf={JAVA_OPTS: f"{base_java_opts()} -XX:ArchiveClassesAtExit={path}"})
    last = -1  # the JVM writes the archive as it exits, possibly after the Python child returned
    for _ in range(120):
        size = path.stat().st_size if path.exists() else -1
        if size > 0 and size == last:
            break
        last = size
        time.sleep(1)
    if not path.exists():
        raise RuntimeError(f"the JVM wrote no AppCDS archive at {path}")
    marker.write_text(key)
    log(f"  AppCDS archive: {path.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - started:.1f}s")
    return path


# -- Spark Connect ------------------------------------------------------------------------------------------------


def connect_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in CONNECT_MODULES)


def serve_connect(port: int) -> None:
    """A long-lived Spark: the project's own session (get_spark) with the Spark Connect plugin, warmed by one
    rebuild, serving until stdin closes."""
    t0 = time.time()
    from crypto_lambda.bars import daily_bars
    from crypto_lambda.spark import get_spark

    spark = get_spark({"spark.plugins": "org.apache.spark.sql.connect.SparkConnectPlugin",
                       "spark.connect.grpc.binding.address": "127.0.0.1",
                       "spark.connect.grpc.binding.port": str(port)})
    ready = time.time() - t0
    from crypto_lambda.lake.write import spark_read

    started = time.time()
    daily_bars(spark_read(spark, common.delta_lake(), RAW_KLINES)).toPandas()
    common.emit({"ready": round(ready, 2), "warmup": round(time.time() - started, 2)})
    sys.stdin.read()
    spark.stop()


class ConnectServer:
    """Starts :func:`serve_connect` in a child process and stops it (closing its stdin, then by pid)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"sc://127.0.0.1:{self.port}"
        self.timings: dict[str, float] = {}
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> ConnectServer:
        log(f"starting a Spark Connect server on port {self.port} (once; then warmed by one rebuild)")
        self._proc = subprocess.Popen([sys.executable, __file__, "--serve-connect", str(self.port)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                      text=True, cwd=common.REPO)
        line = self._proc.stdout.readline() if self._proc.stdout else ""
        if not line.startswith("{"):
            self.__exit__()
            raise RuntimeError("the Spark Connect server did not start")
        self.timings = json.loads(line)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is None:
            return
        if self._proc.stdin:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None


# -- the exploration ---------------------------------------------------------------------------------------------


def variants() -> list[tuple[str, dict[str, str], str]]:
    """(name, Spark conf overrides on top of LOCAL_SPARK_CONF, why)."""
    opts = base_java_opts()
    cds = f"-XX:SharedArchiveFile={cds_archive()}"
    return [
        ("LOCAL_SPARK_CONF", {}, "the project's conf as it is now"),
        ("+ maxPartitionBytes=32m", {"spark.sql.files.maxPartitionBytes": "33554432"}, "more, smaller splits "
         "of the ~1.5 MB month files: fewer tasks idle at the end on 2 cores"),
        ("+ -XX:TieredStopAtLevel=1", {JAVA_OPTS: f"{opts} -XX:TieredStopAtLevel=1"}, "C1 JIT only"),
        ("+ -XX:+UseSerialGC", {JAVA_OPTS: opts.replace("-XX:+UseParallelGC", "-XX:+UseSerialGC")}, "serial GC"),
        ("+ AppCDS", {JAVA_OPTS: f"{opts} {cds}"}, "class-data sharing archive of Spark's classes"),
        ("+ AppCDS + TieredStopAtLevel=1", {JAVA_OPTS: f"{opts} {cds} -XX:TieredStopAtLevel=1"}, "both"),
    ]


def explore(repeats: int, only: set[str] | None) -> tuple[list[Figure], list[dict]]:
    from bench_rebuild import run_engine

    common.ensure_delta_input()
    ensure_cds_archive()
    rows: list[dict] = []
    log("DuckDB reference")
    duck = run_engine("duckdb", "delta", repeats)
    rows.append({"variant": "DuckDB (baseline)", "why": "", **_row(duck)})
    for name, conf, why in variants():
        if only and name not in only:
            continue
        log(f"variant: {name}")
        rows.append({"variant": name, "why": why, "conf": conf, **_row(run_engine("spark", "delta", repeats,
                                                                                  conf=conf))})
        log(f"  {rows[-1]}")
    if connect_available() and (not only or "Spark Connect" in only):
        with ConnectServer() as server:
            log("variant: Spark Connect client")
            client = run_engine("spark", "delta", repeats, remote=server.url)
        rows.append({"variant": "Spark Connect client", "why": f"long-lived server (start {server.timings['ready']}s"
                     f", warm-up job {server.timings['warmup']}s, once)", **_row(client)})
    base_warm = rows[0]["warm"]
    figures = []
    for row in rows[1:]:
        figures.append(Figure(f"cold {row['variant']} (spawn->exit)", row["wall"], "s", rows[0]["wall"],
                              "<= 4.0x DuckDB", row["wall"] / rows[0]["wall"] <= 4.0, f"result at {row['cold']}s, "
                              f"session {row['session']}s, first job {row['first_job']}s"))
        figures.append(Figure(f"warm {row['variant']}", row["warm"], "s", base_warm, "<= 1.5x DuckDB",
                              row["warm"] / base_warm <= 1.5))
    return figures, rows


def _row(result: dict) -> dict:
    return {"cold": result["cold"], "session": result["t_session"], "first_job": result["jobs"]["delta"][0],
            "warm": result["warm"]["delta"], "wall": result["wall"], "loadavg": os.getloadavg()[0]}


def print_rows(rows: list[dict]) -> None:
    print("\n== cold-start exploration (full rebuild, fresh process each; seconds) ==")
    print(f"{'variant':<34} {'cold':>7} {'session':>8} {'1st job':>8} {'warm':>7} {'exit':>7} {'load':>5}")
    for r in rows:
        print(f"{r['variant']:<34} {r['cold']:>7.2f} {r['session']:>8.2f} {r['first_job']:>8.2f} "
              f"{r['warm']:>7.2f} {r['wall']:>7.2f} {r['loadavg']:>5.1f}")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2, help="jobs per process (warm = best after the first)")
    parser.add_argument("--only", help="comma-separated variant names to run")
    parser.add_argument("--serve-connect", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_connect:
        serve_connect(args.serve_connect)
        return 0
    only = set(args.only.split(",")) if args.only else None
    figures, rows = explore(max(2, args.repeats), only)
    print_rows(rows)
    common.print_table("cold-start exploration vs DuckDB", figures)
    print(f"figures -> {common.write_figures('coldstart', figures, {'rows': rows})}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
