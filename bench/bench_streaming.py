"""Speed layer: sustained msg/s through Apache Kafka -> Spark (its Kafka connector) -> Delta Lake, tick-to-table
latency, provisional daily bar latency, peak memory and the time from `crypto-lambda up` to the first committed
bar, beside kafka-python's raw consume rate measured in the same run.

Why these phases: on 2 cores a Python producer cannot outrun the consumer (the two share the cores), so
throughput is measured on a backlog and latency on a live feed.

1. load: ``--messages`` synthetic Binance trade events (2 symbols) into a fresh topic by 2 generator processes.
2. raw: kafka-python reads that topic back (assign/seek): the baseline.
3. drain: one child per variant (three floors: Spark's Kafka source alone, + parsing, + the cheapest 1-minute
   windows, each into the no-op sink; bars query; bars without dedup; full consumer = bars + side) warms its JVM
   on ``--warm-batches`` full-size micro-batches (a consumer runs for days, so its JIT is warm), then re-reads
   the whole topic with a fresh checkpoint in available-now mode, ``--per-trigger`` records per micro-batch
   (default 100,000 = 20,000 msg/s times the consumer's 5 s trigger): sustained rate = records / (last commit
   of any query - first plan). The cold first micro-batch is reported beside it, the load average range
   during each child beside every figure.
4. live: the real pipeline as separate processes: ``replay-exchange`` (WebSocket knobs from the environment),
   ``stream produce`` and ``stream consume`` (default 5 s trigger). Tick-to-table latency per trade = commit
   time of the micro-batch that processed it - its Kafka timestamp (producer receive time); provisional
   latency = first time a kline update is visible in the provisional files - its Kafka timestamp; both after
   a warm-up (the consumer's first micro-batches pay JIT and Python worker start). Peak resident
   memory of each process tree (broker, producer, consumer incl. JVM and Python workers; summed PSS, see
   :func:`rss_mb`) is sampled every 0.5 s.
5. up: `crypto-lambda up` on a fresh home (replay at 30x): seconds from spawn to the first committed minute bar.

    .venv/bin/python bench/bench_streaming.py [--messages 600000] [--live-seconds 60]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import Figure, log  # noqa: E402
from streaming_procs import batches, live, raw_consume, rss_mb, spawn, up_to_first_bar  # noqa: E402

from streaming_service.broker import EmbeddedBroker, ensure_topics  # noqa: E402
from streaming_service.topics import Topics  # noqa: E402

SYMBOLS = ("BTCUSDT", "ETHUSDT")
# Targets (issue #12): the full consumer at >= 0.8x the raw kafka-python rate of the same run, p99 tick-to-table
# <= 10 s, consumer peak RSS <= 1.5 GB; the provisional daily bar within a minute (#3).
TARGET_RAW_RATIO, TARGET_P99_S, TARGET_PROVISIONAL_S, TARGET_CONSUMER_RSS_MB = 0.8, 10.0, 60.0, 1536.0


# -- phase 1 and 2: load and raw consume --------------------------------------------------------------------

def child_generate(bootstrap: str, topic: str, count: int, part: int, parts: int) -> None:
    """Generator process: trades of both symbols, event time = now, prices within a 1% band."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=512 * 1024, acks="all")
    for i in range(part, count, parts):
        symbol = SYMBOLS[i % 2]
        now = int(time.time() * 1000)
        value = (f'{{"e":"trade","E":{now},"s":"{symbol}","t":{i // 2 + 1},"p":"{100000 + (i % 997) * 0.01:.2f}",'
                 f'"q":"0.00{1 + i % 9}00000","T":{now},"m":{"true" if i % 3 else "false"},"M":true}}')
        producer.send(topic, key=symbol.encode(), value=value.encode())
    producer.flush()
    producer.close()


def load(bootstrap: str, topic: str, count: int, workdir: Path) -> float:
    started = time.perf_counter()
    procs = [spawn([sys.executable, __file__, "--child-generate", bootstrap, topic, str(count), str(i), "2"], {},
                   workdir / f"generate-{i}.log") for i in range(2)]
    for proc in procs:
        if proc.wait() != 0:
            raise RuntimeError(f"generator failed: {(workdir / 'generate-0.log').read_text()[-2000:]}")
    return count / (time.perf_counter() - started)



# -- phase 3: drain -----------------------------------------------------------------------------------------

# Floors: the consumer's reading steps alone into Spark's no-op sink, i.e. what any Spark Structured Streaming
# consumer of this topic pays per record before it aggregates, dedups or commits anything.
FLOORS = {"read": "Spark's Kafka source alone", "parse": "Kafka source + parse_events + valid-trade filter",
          "window": "+ 1-minute event-time windows (count, sum), watermark"}


def start_floor(spark, config, stage: str) -> list:
    from pyspark.sql import functions as F

    from streaming_service import consumer, events

    kafka = consumer.read_kafka(spark, config, (config.topics.trades,))
    out = kafka if stage == "read" else events.valid_trades(
        events.parse_events(kafka, config.expected(), config.max_event_lead_ms))
    if stage == "window":  # the least a bar needs: no open/close ordering, no dedup, no table
        out = (out.withWatermark("trade_ts", config.watermark).groupBy(F.window("trade_ts", "1 minute"), "symbol")
               .agg(F.count(F.lit(1)).alias("trades"), F.sum("qty").alias("volume")))
    trigger = {"availableNow": True} if config.available_now else {"processingTime": "0.5 seconds"}
    return [out.writeStream.queryName(f"floor-{stage}").format("noop").outputMode("append")
            .option("checkpointLocation", str(consumer.checkpoint_dir(config, "bars"))).trigger(**trigger).start()]


def child_drain(bootstrap: str, prefix: str, per_trigger: int, queries: str, dedup: bool, home: Path,
                warm_batches: int) -> None:
    """Drain child: warm the JVM on ``warm_batches`` full-size micro-batches of the topic (a consumer runs for
    days, so its JIT is warm: 3 batches of 10k left the JIT compilers with ~20 % of the CPU during the
    measurement), then replay the whole topic with a fresh checkpoint in available-now mode. ``queries`` is
    the consumer's (bars, side) or a floor (:data:`FLOORS`)."""
    from crypto_lambda.config import Settings
    from streaming_service import consumer
    from streaming_service.topics import SpeedPaths

    spark = consumer.stream_spark()

    def config(name: str, limit: int, **extra: object) -> consumer.ConsumerConfig:
        names = ("bars",) if queries in FLOORS else tuple(queries.split(","))
        return consumer.ConsumerConfig(bootstrap=bootstrap, paths=SpeedPaths.of(Settings(home=home / name)),
                                       topics=Topics.with_prefix(prefix), max_offsets_per_trigger=limit,
                                       queries=names, dedup=dedup, **extra)  # type: ignore[arg-type]

    def start(cfg: consumer.ConsumerConfig) -> list:
        return start_floor(spark, cfg, queries) if queries in FLOORS else consumer.start(spark, cfg)

    started = time.time()
    running = start(config("warm", per_trigger, trigger_seconds=0.5))
    deadline = time.time() + 600
    while time.time() < deadline and any(len([p for p in q.recentProgress if p["numInputRows"]]) < warm_batches
                                         and q.isActive for q in running):
        time.sleep(0.5)
    for query in running:
        query.stop()
    warm_s = time.time() - started
    if queries in FLOORS:
        with consumer._sql_conf(spark, consumer.STREAM_SQL_CONF):
            for query in start(config("run", per_trigger, available_now=True)):
                query.awaitTermination()
    else:
        consumer.run(config("run", per_trigger, available_now=True), spark)
    print(json.dumps({"warmup_s": warm_s}), flush=True)


def drain(bootstrap: str, prefix: str, per_trigger: int, queries: str, dedup: bool, workdir: Path,
          label: str, warm_batches: int) -> dict:
    home = workdir / f"home-{label}"
    shutil.rmtree(home, ignore_errors=True)
    args = [sys.executable, __file__, "--child-drain", bootstrap, prefix, str(per_trigger), queries,
            "1" if dedup else "0", str(home), str(warm_batches)]
    started = time.time()
    proc = spawn(args, {}, workdir / f"drain-{label}.log")
    peak = 0.0
    loads = []
    while proc.poll() is None:
        peak = max(peak, rss_mb(proc.pid))
        loads.append(os.getloadavg()[0])
        time.sleep(0.5)
    if proc.returncode != 0:
        raise RuntimeError(f"drain {label} failed: {(workdir / f'drain-{label}.log').read_text()[-3000:]}")
    cold = [b for b in batches(home / "warm" / "checkpoints" / "stream" / "kafka" / "bars") if b["committed"]]
    root = home / "run" / "checkpoints" / "stream" / "kafka"
    data = [b for b in batches(root / "bars") if b["committed"] and b["rows"]]
    rows = sum(b["rows"] for b in data)
    # the topic counts as processed when every query has committed it (the side query may finish later)
    names = ["bars"] if queries in FLOORS else queries.split(",")
    done = max(b["committed"] for q in names for b in batches(root / q) if b["committed"])
    rate = rows / max(done - data[0]["planned"], 1e-9)
    return {"rows": rows, "sustained": rate, "first_batch_s": cold[0]["committed"] - cold[0]["planned"],
            "wall_s": time.time() - started, "batches": len(data), "peak_rss_mb": peak,
            "load_min": min(loads, default=0.0), "load_max": max(loads, default=0.0)}


def measure(args: argparse.Namespace) -> tuple[list[Figure], dict]:
    workdir = common.bench_home() / "streaming"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    prefix = "drain"
    with EmbeddedBroker(workdir / "kafka", log_path=workdir / "kafka.log") as broker:
        topics = Topics.with_prefix(prefix)
        ensure_topics(broker.bootstrap, topics.all(), 2)
        log(f"load: {args.messages:,} trades into {topics.trades}; load average {os.getloadavg()[0]:.1f}")
        load_rate = load(broker.bootstrap, topics.trades, args.messages, workdir)
        log(f"  {load_rate:,.0f} msg/s from 2 generator processes")
        raw_rate, raw_n, stamps = raw_consume(broker.bootstrap, topics.trades)
        log(f"raw kafka-python consume: {raw_n:,} records, {raw_rate:,.0f} msg/s")
        runs = {}
        plan = (("floor-read", "read", False), ("floor-parse", "parse", False), ("floor-window", "window", False),
                ("bars", "bars", True),
                ("bars-nodedup", "bars", False), ("full", "bars,side", True))
        for label, queries, dedup in plan if "drain" in args.phases else ():
            runs[label] = drain(broker.bootstrap, prefix, args.per_trigger, queries, dedup, workdir, label,
                                args.warm_batches)
            log(f"drain {label}: {runs[label]['sustained']:,.0f} msg/s sustained over {runs[label]['batches']} "
                f"warm batches (cold first batch {runs[label]['first_batch_s']:.1f}s); load average "
                f"{runs[label]['load_min']:.1f}-{runs[label]['load_max']:.1f}")
        if "live" not in args.phases:
            return [], {"drain": runs}
        log(f"live: replay x{args.live_speed:g}, {args.live_tpm} trades/min/symbol for {args.live_seconds:.0f}s")
        lv = live(broker.bootstrap, args.live_seconds, args.live_warmup, args.live_speed, args.live_tpm, workdir,
                  broker.pid or 0)
        broker_heap = broker.heap
    up_s = up_to_first_bar(workdir) if "up" in args.phases else float("nan")
    log(f"make up -> first committed bar: {up_s:.1f} s")
    if not runs:  # live only: keep the drain figures of the last full run
        previous = common.bench_home() / "streaming.details.json"
        runs = json.loads(previous.read_text())["drain"] if previous.exists() else {}
    if not runs:
        raise SystemExit("no drain figures yet: run with --phases drain,live first")
    mem = lv["peak_rss_mb"]

    def loadavg(run: dict) -> str:
        return f"load avg {run.get('load_min', 0):.1f}-{run.get('load_max', 0):.1f}"

    figures = [
        Figure("kafka-python raw consume", raw_rate, "msg/s", None, "", None, f"{raw_n:,} records, same run"),
        *[Figure(f"floor: {FLOORS[stage]}", runs[f"floor-{stage}"]["sustained"], "msg/s", raw_rate, "", None,
                 "Spark's no-op sink: the per-record cost under every Spark consumer of the topic, before any "
                 f"aggregation, dedup or commit; {loadavg(runs[f'floor-{stage}'])}")
          for stage in FLOORS if f"floor-{stage}" in runs],
        Figure("sustained bars query (dedup)", runs["bars"]["sustained"], "msg/s", raw_rate, "", None,
               f"{args.per_trigger:,} rows/batch, warm JVM; cold first batch {runs['bars']['first_batch_s']:.1f}s; "
               f"{loadavg(runs['bars'])}"),
        Figure("sustained bars query (no dedup)", runs["bars-nodedup"]["sustained"], "msg/s", raw_rate, "", None,
               loadavg(runs["bars-nodedup"])),
        Figure("sustained full consumer (bars+side)", runs["full"]["sustained"], "msg/s", raw_rate,
               f">= {TARGET_RAW_RATIO:g}x raw", runs["full"]["sustained"] >= TARGET_RAW_RATIO * raw_rate,
               f"the consumer as deployed: until both queries committed (the side query reads every topic "
               f"again); {loadavg(runs['full'])}"),
        Figure("tick-to-table p50", lv["p50"], "s", None, "", None,
               f"live {lv['rate']:,.0f} trades/s through the real producer; 5 s trigger; the first "
               f"{lv['warmup_s']:.0f}s (cold micro-batches and their backlog) not counted"),
        Figure("tick-to-table p99", lv["p99"], "s", None, f"<= {TARGET_P99_S:g} s", lv["p99"] <= TARGET_P99_S,
               f"max {lv['max']:.1f}s; {loadavg(lv)}"),
        Figure("provisional daily bar latency p99", lv["provisional_p99"], "s", None,
               f"<= {TARGET_PROVISIONAL_S:g} s", lv["provisional_max"] <= TARGET_PROVISIONAL_S,
               f"p50 {lv['provisional_p50']:.1f}s, max {lv['provisional_max']:.1f}s, "
               f"{lv['provisional_samples']} kline updates"),
        Figure("peak RSS consumer (live)", mem["consumer"], "MB", None, f"<= {TARGET_CONSUMER_RSS_MB:,.0f} MB",
               mem["consumer"] <= TARGET_CONSUMER_RSS_MB, "driver JVM + Python workers; drain peak "
               f"{runs['full']['peak_rss_mb']:,.0f} MB"),
        Figure("peak RSS broker / producer", mem["broker"], "MB", None, "", None,
               f"broker (one KRaft node, {broker_heap} heap) {mem['broker']:,.0f} MB, producer "
               f"{mem['producer']:,.0f} MB"),
        Figure("make up -> first committed bar", up_s, "s", None, "", None,
               "fresh home, every component started in order (Kafka formats its storage)"),
        Figure("load generators (2 processes)", load_rate, "msg/s"),
    ]
    return figures, {"drain": runs, "live": lv, "raw_rate": raw_rate, "up_to_first_bar_s": up_s,
                     "load_rate": load_rate,
                     "load_average": os.getloadavg()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=600_000, help="backlog size for the drain phase")
    parser.add_argument("--per-trigger", type=int, default=100_000,
                        help="maxOffsetsPerTrigger while draining (default 100,000: 20k msg/s x 5 s trigger)")
    parser.add_argument("--live-seconds", type=float, default=60.0, help="measured part of the live phase")
    parser.add_argument("--live-warmup", type=float, default=20.0,
                        help="measure once the consumer has caught up with batches planned this long after start")
    parser.add_argument("--live-speed", type=float, default=60.0, help="replay speed of the live phase")
    parser.add_argument("--live-tpm", type=int, default=600, help="trades per minute per symbol (live)")
    parser.add_argument("--phases", default="drain,live,up",
                        help="drain,live,up (live alone reuses drain figures)")
    parser.add_argument("--child-generate", nargs=5, metavar=("BOOTSTRAP", "TOPIC", "N", "PART", "PARTS"))
    parser.add_argument("--warm-batches", type=int, default=6,
                        help="full-size micro-batches each drain child runs first to warm its JIT (default 6)")
    parser.add_argument("--child-drain", nargs=7, metavar=("BOOTSTRAP", "PREFIX", "PER_TRIGGER", "QUERIES",
                                                           "DEDUP", "HOME", "WARM_BATCHES"))
    args = parser.parse_args(argv)
    if args.child_generate:
        bootstrap, topic, count, part, parts = args.child_generate
        child_generate(bootstrap, topic, int(count), int(part), int(parts))
        return 0
    if args.child_drain:
        bootstrap, prefix, per_trigger, queries, dedup, home, warm = args.child_drain
        child_drain(bootstrap, prefix, int(per_trigger), queries, dedup == "1", Path(home), int(warm))
        return 0
    figures, details = measure(args)
    common.print_table("streaming (broker -> Spark -> Delta Lake)", figures)
    path = common.write_figures("streaming", figures, details)
    log(f"figures -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
