"""Processes of the streaming benchmark: spawning and stopping them, their memory (summed PSS of a process tree),
the micro-batches a query's checkpoint records, and the two phases that run the real pipeline as separate
processes: ``live`` (replay exchange -> producer -> consumer, tick-to-table latency) and ``up`` (time from
`crypto-lambda up` to the first committed bar). Used by bench_streaming.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import common
import numpy as np
from deltalake import DeltaTable

from crypto_lambda.lake.tables import SPEED_BARS, SPEED_PROVISIONAL, is_table, table_path
from crypto_lambda.machine import free_port
from streaming_service.broker import ensure_topics
from streaming_service.topics import Topics

CLI = [sys.executable, "-c", "import sys; from crypto_lambda_app.cli import main; sys.exit(main())"]


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def rss_mb(root: int) -> float:
    """Resident memory of a process tree: the sum of each process's PSS (its private pages plus its share of
    shared ones). Not the sum of VmRSS: the JVM forks short-lived children (Hadoop's local file system shells
    out), a forked child's VmRSS repeats its parent's shared pages, and a sample that caught one counted the
    consumer's JVM twice (peaks of 2.1-2.4 GB against 1.3 GB from one run to the next). For a single process
    PSS is its RSS less the libraries it shares with others."""
    total = 0
    for pid in _tree(root):
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def spawn(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    handle = open(log_path, "wb")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(args, env={**os.environ, **env}, stdout=handle, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=common.REPO)
    handle.close()
    return proc


def stop(proc: subprocess.Popen, timeout: float = 60) -> None:
    """SIGTERM to the process itself (the consumer then finishes its micro-batch; its JVM follows), the whole
    process group only if it does not exit."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)



def batches(checkpoint: Path) -> list[dict]:
    """Micro-batches of a query from its checkpoint: end offsets, rows, plan and commit times."""
    out, previous = [], None
    if not (checkpoint / "offsets").is_dir():
        return out
    for path in sorted((checkpoint / "offsets").iterdir(), key=lambda p: int(p.name) if p.name.isdigit() else -1):
        if not path.name.isdigit():
            continue
        lines = path.read_text().splitlines()
        ends = {(t, int(p)): int(o) for t, parts in json.loads(lines[2]).items() for p, o in parts.items()}
        starts = previous or {k: 0 for k in ends}
        commit = checkpoint / "commits" / path.name
        out.append({"batch": int(path.name), "ends": ends, "starts": dict(starts),
                    "rows": sum(ends[k] - starts.get(k, 0) for k in ends), "planned": path.stat().st_mtime,
                    "committed": commit.stat().st_mtime if commit.exists() else None})
        previous = ends
    return out


def raw_consume(bootstrap: str, topic: str) -> tuple[float, int, dict]:
    """kafka-python alone: every record of the topic, partition by partition, as the Spark tasks read."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), group_id=None, enable_auto_commit=False,
                             check_crcs=True, fetch_max_bytes=64 << 20, max_partition_fetch_bytes=16 << 20,
                             max_poll_records=20000, fetch_max_wait_ms=50)
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
    ends = consumer.end_offsets(tps)
    timestamps: dict = {}
    started = time.perf_counter()
    n = 0
    for tp in tps:
        consumer.assign([tp])
        consumer.seek(tp, 0)
        stamps = np.empty(ends[tp], dtype=np.int64)
        while consumer.position(tp) < ends[tp]:
            for record in consumer.poll(timeout_ms=500).get(tp, []):
                stamps[record.offset] = record.timestamp
                n += 1
        timestamps[(tp.topic, tp.partition)] = stamps
    rate = n / (time.perf_counter() - started)
    consumer.close()
    return rate, n, timestamps


# -- phase 4: live ------------------------------------------------------------------------------------------

def caught_up(home: Path, not_before: float, timeout: float) -> float:
    """When both queries have committed a micro-batch planned after ``not_before`` within 2 triggers (the
    cold start's backlog is gone); measuring starts then."""
    deadline = time.time() + timeout
    root = home / "checkpoints" / "stream" / "kafka"
    while time.time() < deadline:
        ready = []
        for query in ("bars", "side"):
            done = [b for b in batches(root / query) if b["committed"] and b["planned"] >= not_before]
            ready.append(any(b["committed"] - b["planned"] <= 10 for b in done))
        if all(ready):
            return time.time()
        time.sleep(1)
    raise TimeoutError("the consumer did not catch up with the live feed")


def live(bootstrap: str, seconds: float, warmup: float, speed: float, tpm: int, workdir: Path,
         broker_pid: int) -> dict:
    from replay_exchange.recording import Recording

    home = workdir / "home-live"
    shutil.rmtree(home, ignore_errors=True)
    prefix = "live"
    ensure_topics(bootstrap, Topics.with_prefix(prefix).all(), 2)
    start_ms = Recording.from_sample().minute_span("BTCUSDT")[0] + 30 * 86_400_000
    port = free_port()
    env = {"CRYPTO_LAMBDA_HOME": str(home), "REPLAY_WS_SPEED": str(speed), "REPLAY_WS_START_MS": str(start_ms),
           "REPLAY_WS_TRADES_PER_MINUTE": str(tpm)}
    exchange = spawn([*CLI, "replay-exchange", "--port", str(port)], env, workdir / "live-exchange.log")
    consumer = spawn([*CLI, "stream", "consume", "--bootstrap", bootstrap, "--topic-prefix", prefix], env,
                     workdir / "live-consume.log")
    checkpoint = home / "checkpoints" / "stream" / "kafka" / "bars"
    while not (checkpoint / "offsets").is_dir():  # the consumer's JVM is up and has planned a batch
        if consumer.poll() is not None:
            raise RuntimeError((workdir / "live-consume.log").read_text()[-3000:])
        time.sleep(0.5)
    producer = spawn([*CLI, "stream", "produce", "--bootstrap", bootstrap, "--topic-prefix", prefix,
                      "--ws-url", f"ws://127.0.0.1:{port}", "--stats-seconds", "10"], env, workdir / "live-produce.log")
    producer_started = time.time()
    peaks = {"broker": 0.0, "producer": 0.0, "consumer": 0.0}
    seen: dict = {}
    provisional = table_path(home / "lake", SPEED_PROVISIONAL)
    measured_from = caught_up(home, time.time() + warmup, timeout=300)  # the first micro-batches are cold
    ended = measured_from + seconds
    loads = []
    while time.time() < ended:
        loads.append(os.getloadavg()[0])
        for name, pid in (("broker", broker_pid), ("producer", producer.pid), ("consumer", consumer.pid)):
            peaks[name] = max(peaks[name], rss_mb(pid))
        now = time.time()
        # Only what the table has committed counts as visible (delta-rs reads the newest version).
        if is_table(provisional):
            table = DeltaTable(str(provisional)).to_pyarrow_dataset().to_table(
                columns=["symbol", "open_time", "event_ms", "received_ms"])
            for row in zip(*(table[c].to_pylist() for c in table.column_names), strict=True):
                if row[3] / 1000 >= measured_from:
                    seen.setdefault(row[:3], now - row[3] / 1000)
        time.sleep(0.5)
    stop(producer)
    time.sleep(12)  # two triggers: the consumer catches up with what the producer flushed
    stop(consumer)
    stop(exchange)
    _, n, stamps = raw_consume(bootstrap, Topics.with_prefix(prefix).trades)
    latencies = []
    for b in batches(checkpoint):
        if b["committed"] is None:
            continue
        for key, end in b["ends"].items():
            ts = stamps.get(key)
            if ts is not None and end > b["starts"].get(key, 0):
                sent = ts[b["starts"].get(key, 0):end] / 1000
                latencies.append(b["committed"] - sent[sent >= measured_from])
    lat = np.concatenate(latencies) if latencies else np.array([np.nan])
    prov = np.array(list(seen.values())) if seen else np.array([np.nan])
    return {"trades": n, "rate": n / (ended - producer_started), "warmup_s": measured_from - producer_started,
            "measured_s": seconds,
            "p50": float(np.percentile(lat, 50)),
            "p99": float(np.percentile(lat, 99)), "max": float(np.max(lat)),
            "provisional_p50": float(np.percentile(prov, 50)), "provisional_p99": float(np.percentile(prov, 99)),
            "provisional_max": float(np.max(prov)), "provisional_samples": len(seen),
            "peak_rss_mb": peaks, "speed": speed, "trades_per_minute": tpm,
            "load_min": min(loads, default=0.0), "load_max": max(loads, default=0.0)}


def up_to_first_bar(workdir: Path, timeout: float = 300.0) -> float:
    """Seconds from spawning `crypto-lambda up` on a fresh home to the first committed streaming minute bar."""
    from crypto_lambda.config import Settings
    from crypto_lambda.lake import read as lake_read

    home = workdir / "home-up"
    shutil.rmtree(home, ignore_errors=True)
    ports = [free_port() for _ in range(4)]
    env = {"CRYPTO_LAMBDA_HOME": str(home), "REPLAY_WS_SPEED": "30"}
    began = time.time()
    proc = spawn([*CLI, "up", "--exchange-port", str(ports[0]), "--broker-port", str(ports[1]), "--dagster-port",
                  str(ports[2]), "--web-port", str(ports[3])], env, workdir / "up.log")
    lake = Settings(home=home).lake
    try:
        while time.time() - began < timeout:
            if proc.poll() is not None:
                raise RuntimeError(f"up exited: {(workdir / 'up.log').read_text()[-3000:]}")
            if lake_read.file_count(lake, SPEED_BARS):
                return time.time() - began
            time.sleep(0.5)
        raise TimeoutError(f"no committed bar {timeout:.0f} s after up")
    finally:
        stop(proc, timeout=150)


