"""A Spark standalone cluster on one box (issue #16): what it costs and how a run survives a dead worker.

Why: the cluster's value is scale-out and fault tolerance on several hosts; on one 2-core box it can only add
cost (two more daemons, executor JVMs, task shipping, jars fetched per executor), and this says how much.
Figures, each beside a baseline from the same run:
1. ``crypto-lambda cluster up`` time: spawn of the master to 2 workers ALIVE on the master's /json/.
2. RSS of the master and of each worker at idle, and the peak of each during a backfill (a worker's own JVM
   apart from its executor JVM), sampled every 0.5 s.
3. The shipped 90 days x 2 symbols through Dagster (``crypto-lambda backfill --json`` in a fresh process,
   what a user runs): on the cluster (SPARK_MASTER=spark://...) against local mode (the baseline).
4. The same backfill with worker-1 and its executor SIGKILLed once executors write the raw minutes' files:
   time from the kill to the run's success, the whole run against the run without a kill, and the time to
   bring a replacement worker up.
The replay exchange (the sample shifted to end today) runs in this process; every backfill has its own home.

    .venv/bin/python bench/bench_cluster.py
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import Figure, log  # noqa: E402

from crypto_lambda import machine  # noqa: E402
from crypto_lambda.config import Settings  # noqa: E402
from crypto_lambda.lake import read as lr  # noqa: E402
from crypto_lambda.lake import tables as lt  # noqa: E402
from crypto_lambda_app.stack import cluster as cl  # noqa: E402
from crypto_lambda_app.stack import procs  # noqa: E402
from replay_exchange.recording import Recording  # noqa: E402
from replay_exchange.server import ReplayServer  # noqa: E402

SYMBOLS = ("BTCUSDT", "ETHUSDT")
CLI = [sys.executable, "-c", "import sys; from crypto_lambda_app.cli import main; sys.exit(main())"]


class RssSampler(threading.Thread):
    """Peak RSS (MiB) per cluster process role every 0.5 s: master, worker-<i> JVM, worker-<i> executors."""

    def __init__(self, state: dict) -> None:
        super().__init__(daemon=True)
        self.state, self.peak, self.stop = state, {}, threading.Event()

    def sample(self) -> dict[str, float]:
        own = {e["pid"]: e["name"] for e in self.state["processes"]}
        now: dict[str, float] = {}
        for name, pids in cl.component_pids(self.state).items():
            for pid in pids:
                role = name if own.get(pid) == name else f"{name} executors"
                now[role] = now.get(role, 0.0) + (machine.rss_mb(pid) or 0.0)
        return now

    def run(self) -> None:
        while not self.stop.wait(0.5):
            for role, mb in self.sample().items():
                self.peak[role] = max(self.peak.get(role, 0.0), mb)


def backfill(home: Path, url: str, first: dt.date, master: str | None = None, kill: Settings | None = None) -> dict:
    """``crypto-lambda backfill --json`` in a fresh process; with ``kill`` (the cluster's settings) worker-1 and
    its executor get SIGKILL once the raw table's first data file exists."""
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    env = {**os.environ, "CRYPTO_LAMBDA_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"),
           "BINANCE_API_URL": url, "CRYPTO_LAMBDA_SYMBOLS": ",".join(SYMBOLS),
           "CRYPTO_LAMBDA_START": first.isoformat(), "CRYPTO_LAMBDA_MINUTE_START": first.isoformat(),
           "PYTHONPATH": os.pathsep.join(filter(None, (str(common.REPO), os.environ.get("PYTHONPATH"))))}
    env.pop("SPARK_MASTER", None)
    if master:
        env["SPARK_MASTER"] = master
    started = time.monotonic()
    proc = subprocess.Popen([*CLI, "backfill", "--json"], env=env, cwd=common.REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    killed_at, killed = None, []
    raw = home / "lake" / lt.RAW_KLINES
    while kill is not None and proc.poll() is None and killed_at is None:
        if raw.is_dir() and any(raw.rglob("*.parquet")):
            killed, killed_at = cl.kill_worker(kill, 1), time.monotonic()
        time.sleep(0.05)
    out, _ = proc.communicate(timeout=1800)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"backfill failed (exit {proc.returncode}): {out[-2000:]}")
    outcome = json.loads(out)
    bars = lr.read(Settings(home=home).lake, lt.DAILY_OHLCV)
    return {"wall": round(wall, 2), "seconds": outcome["seconds"], "success": outcome["success"],
            "rows": len(bars), "duplicates": int(bars.duplicated(["symbol", "date"]).sum()),
            "kill_to_end": round(time.monotonic() - killed_at, 2) if killed_at else None,
            "kill_after": round(killed_at - started, 2) if killed_at else None, "killed_pids": killed}


def measure() -> tuple[list[Figure], dict]:
    recording = Recording.from_sample(shift_to_today=True)
    first = dt.datetime.fromtimestamp(recording.minute_span("BTCUSDT")[0] / 1000, dt.UTC).date()
    days = (dt.datetime.now(dt.UTC).date() - first).days
    root = common.bench_home() / "cluster"
    settings = Settings(home=root / "cluster_home")
    shutil.rmtree(settings.home, ignore_errors=True)
    details: dict = {"first": first, "days": days, "loadavg_start": os.getloadavg()}
    with ReplayServer(recording) as server:
        log(f"local backfill {days} d x 2 (fresh process, local[2]); load {os.getloadavg()[0]:.1f}")
        local = backfill(root / "local_home", server.url, first)
        log(f"  {local}")
        log("cluster up: master + 2 workers (1 core, 1g)")
        started = time.monotonic()
        state = cl.start_cluster(settings, cl.ClusterOptions(port=0, webui_port=0, ready_timeout=300), log)
        up_s = time.monotonic() - started
        try:
            time.sleep(3.0)
            idle = RssSampler(state).sample()
            log(f"  up in {up_s:.1f}s; idle RSS {idle}")
            sampler = RssSampler(state)
            sampler.start()
            log(f"cluster backfill; load {os.getloadavg()[0]:.1f}")
            on_cluster = backfill(root / "cluster_run_home", server.url, first, state["master_url"])
            sampler.stop.set()
            log(f"  {on_cluster}; peak RSS {sampler.peak}")
            log("cluster backfill with kill -9 of worker-1 (and its executor) mid-write")
            killed = backfill(root / "cluster_kill_home", server.url, first, state["master_url"], kill=settings)
            log(f"  {killed}")
            restart_s = cl.start_worker(settings, 1, log)
            log(f"  worker-1 back in {restart_s:.1f}s")
        finally:
            pids = cl.stop_cluster(settings)
            left = procs.marked_pids(state["cluster_id"])
            log(f"cluster down: {len(pids)} processes stopped, {len(left)} left")
    details.update(local=local, cluster=on_cluster, kill=killed, up_s=up_s, idle_rss=idle, peak_rss=sampler.peak,
                   restart_s=restart_s, loadavg_end=os.getloadavg())
    complete = all(r["rows"] == days * 2 and r["duplicates"] == 0 and r["success"]
                   for r in (local, on_cluster, killed))
    figures = [
        Figure("cluster up (spawn -> 2 workers ALIVE)", round(up_s, 2), "s"),
        *(Figure(f"RSS idle: {role}", round(mb), "MiB") for role, mb in sorted(idle.items())),
        *(Figure(f"RSS peak in backfill: {role}", round(mb), "MiB") for role, mb in sorted(sampler.peak.items())),
        Figure(f"backfill {days} d x 2 on the cluster (run_backfill)", on_cluster["seconds"], "s",
               local["seconds"], note="baseline = the same backfill in local mode (local[2]), same run"),
        Figure("backfill process on the cluster (spawn->exit)", on_cluster["wall"], "s", local["wall"]),
        Figure("backfill with worker-1 killed (spawn->exit)", killed["wall"], "s", on_cluster["wall"],
               note=f"killed {len(killed['killed_pids'])} processes {killed['kill_after']}s after spawn; "
                    "baseline = the cluster run without a kill"),
        Figure("kill -> run succeeded", killed["kill_to_end"], "s",
               round(on_cluster["wall"] - (killed["kill_after"] or 0), 2),
               note="baseline = the no-kill run's time left after the same moment"),
        Figure("replacement worker ALIVE", round(restart_s, 2), "s"),
        Figure("daily bars complete, 0 duplicated (all 3 runs)", int(complete), "ok", target="1", met=complete),
    ]
    return figures, details


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    figures, details = measure()
    common.print_table("Spark standalone cluster on one box: up time, memory, backfill vs local, a dead worker",
                       figures)
    print(f"figures -> {common.write_figures('cluster', figures, details)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
