"""Speed layer job: Kafka -> Spark Structured Streaming -> Delta tables, exactly once.

Two queries on one SparkSession, each with its own checkpoint under ``checkpoints/stream/kafka/``:

* ``bars`` reads the trades topic, parses it with :func:`~streaming_service.events.parse_events`, keeps valid
  trades, applies an event-time watermark (default 2 minutes), drops duplicate trade ids within it and appends
  1-minute OHLCV bars (:func:`crypto_lambda.bars.minute_bars`) to the Delta table ``speed_klines_1m``
  (partitioned by symbol and ``month``, a stored column: the sink cannot fill a generated one) through Delta's
  streaming sink. Exactly once: offsets are journaled in the checkpoint before a batch runs, and the sink's
  commit carries a ``txn`` action (query id, batch id) so a re-run batch is not appended twice.
* ``side`` reads all topics once more and, per micro-batch (``foreachBatch``), in one pass
  (:func:`~streaming_service.events.side_records`): appends every invalid record (raw bytes, reason, position)
  to ``speed_quarantine``, gap markers to ``speed_gaps`` and the newest kline update of each minute to
  ``speed_provisional_1m`` (read newest-wins by :func:`speed_lake.provisional_daily_bar`: today's bar within
  one trigger of a tick). Each append is idempotent (a Delta ``txn`` action: app id = the side checkpoint's
  query id, version = the batch id), so a batch replayed after a crash commits nothing twice. The rows are
  committed by delta-rs from the driver (:func:`crypto_lambda.lake.write.append_once`): a Spark job per
  append cost 1.1-1.3 s, up to three per batch, on the provisional bar's latency path. Both queries parse
  with :func:`~streaming_service.events.parse_events`, so a record gets the same verdict in each.

A minute's committed bar appears once the watermark passes its end, i.e. about a minute plus the watermark
delay after it opened; until then the provisional table has it. In ``available_now`` mode a run stops when
it has caught up with the topics' ends at start time; the last ``watermark`` minutes stay in the state store
until later data moves the watermark (a later run emits them).

Source: Spark's own Kafka connector, ``format("kafka")``, loaded from the jars ``jvm/pom.xml`` locks
(``spark.jars``, set by :mod:`crypto_lambda.spark`); the same path locally, in compose and on a cluster.
``failOnDataLoss`` is true: offsets the checkpoint expects but the broker no longer has stop the query.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from crypto_lambda.bars import minute_bars
from crypto_lambda.lake import read as lake_read
from crypto_lambda.lake import speed as speed_lake
from crypto_lambda.lake import write as lake_write
from crypto_lambda.lake.tables import MONTH, SPEED_BARS, SPEED_GAPS, SPEED_PROVISIONAL, SPEED_QUARANTINE
from crypto_lambda.spark import env_spark_conf
from streaming_service.events import MAX_EVENT_LEAD_MS, parse_events, side_records, valid_trades
from streaming_service.topics import SpeedPaths, Topics

log = logging.getLogger(__name__)

EXPECTED_EVENT = ("trade", "kline", "gap")
# SQL settings the queries are started with (and that a checkpoint then keeps: Spark restores them from its
# offset log on restart, so they apply to new checkpoints only). Measured by bench/bench_streaming.py:
# * One shuffle partition per 2 cores (1 here): every partition of a stateful step is a state store to load,
#   update and checkpoint per micro-batch, and the source's tasks need the other core. On 2 cores, 6,000-trade
#   micro-batches (the live rate) took 1.64 s with 1 against 1.97 s with 2 (bars; side 0.76 s against 1.00 s),
#   100,000-trade ones the same (bench/bench_streaming.py). A deployment sets its own in CRYPTO_LAMBDA_SPARK_CONF.
# * RocksDB state store with changelog checkpointing: the dedup state holds every trade id of the watermark
#   window (millions at 20k msg/s); the default in-memory store copies its whole map for each new version
#   and snapshots it, RocksDB updates in place and uploads only the changed keys.
STREAM_SQL_CONF: dict[str, str] = {
    "spark.sql.shuffle.partitions": str(max(1, (os.cpu_count() or 2) // 2)),
    "spark.sql.streaming.stateStore.providerClass":
        "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider",
    "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
}


# Task slots of a consumer process's own local Spark (SPARK_MASTER or CRYPTO_LAMBDA_SPARK_CONF still win):
# twice the cores, because the source's tasks wait on the broker and the two queries run side by side. With
# local[2] the full consumer left a core idle part of the time: 19,317 msg/s, with local[4] 27,528 (2 cores,
# bench/bench_streaming.py).
# A 768 MB driver heap and RocksDB's memory bounded: the state is on disk (RocksDB), a micro-batch of 100k
# trades needs far less, and the live consumer's heap stayed near 600 MB committed with a 1 GB limit (JVM
# native memory tracking). The whole consumer (JVM + Python driver) then peaks at 1.2-1.3 GB
# (bench/bench_streaming.py, live phase, summed PSS); the 2 GB batch default only lets the heap grow further.
STREAM_SPARK_DEFAULTS: dict[str, str] = {
    "spark.master": f"local[{2 * (os.cpu_count() or 1)}]",
    "spark.driver.memory": "768m",
    "spark.sql.streaming.stateStore.rocksdb.boundedMemoryUsage": "true",
    "spark.sql.streaming.stateStore.rocksdb.maxMemoryUsageMB": "256",
}


def stream_spark():
    """The consumer process's SparkSession (a session that already exists is reused as it is)."""
    from crypto_lambda.spark import get_spark

    return get_spark(defaults=STREAM_SPARK_DEFAULTS)


@dataclass
class ConsumerConfig:
    bootstrap: str
    paths: SpeedPaths
    topics: Topics = field(default_factory=Topics.with_prefix)
    trigger_seconds: float = 5.0
    available_now: bool = False
    starting_offsets: str = "earliest"
    max_offsets_per_trigger: int | None = None
    watermark: str = "2 minutes"
    dedup: bool = True
    queries: tuple[str, ...] = ("bars", "side")
    # False: a partition whose end is below the checkpointed offset (topic recreated) is read again from 0
    # instead of failing the query. Only an explicit `stream consume --no-fail-on-data-loss` sets it.
    fail_on_data_loss: bool = True
    # Events more than this after their Kafka time are quarantined; None only for a replay exchange that runs
    # recorded time faster than the clock (`crypto-lambda up` with REPLAY_WS_SPEED > 1).
    max_event_lead_ms: int | None = MAX_EVENT_LEAD_MS

    def expected(self) -> dict[str, str]:
        return dict(zip(self.topics.all(), EXPECTED_EVENT, strict=True))


def read_kafka(spark, config: ConsumerConfig, topics: tuple[str, ...]):
    reader = (spark.readStream.format("kafka").option("kafka.bootstrap.servers", config.bootstrap)
              .option("subscribe", ",".join(topics)).option("startingOffsets", config.starting_offsets)
              .option("failOnDataLoss", str(config.fail_on_data_loss).lower()))
    if config.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(config.max_offsets_per_trigger))
    return reader.load()


def checkpoint_dir(config: ConsumerConfig, query: str) -> Path:
    return config.paths.checkpoints / "kafka" / query


def _guard_output(config: ConsumerConfig) -> None:
    """A new checkpoint on a bars table that already holds bars would read the topics from the start again and
    append every bar a second time (the sink's idempotence is per query id, which a new checkpoint changes)."""
    commits = checkpoint_dir(config, "bars") / "commits"
    has_commits = commits.is_dir() and any(commits.iterdir())
    if not has_commits and lake_read.file_count(config.paths.lake, SPEED_BARS) > 0:
        raise ValueError(f"{config.paths.bars} already holds streaming bars but {commits.parent} has no checkpoint "
                         "for them (a deleted checkpoint, or one written by an older release): reading the topics "
                         "again would store those bars twice; use another --output or --reset")


def reset(config: ConsumerConfig) -> None:
    """Delete the speed layer's outputs and checkpoints: a full re-read of the topics."""
    for path in (*config.paths.tables(), config.paths.checkpoints):
        shutil.rmtree(path, ignore_errors=True)


def _trigger(config: ConsumerConfig) -> dict:
    if config.available_now:
        return {"availableNow": True}
    return {"processingTime": f"{config.trigger_seconds:g} seconds"}


def start_bars(spark, config: ConsumerConfig):
    from pyspark.sql import functions as F

    kafka = read_kafka(spark, config, (config.topics.trades,))
    trades = valid_trades(parse_events(kafka, config.expected(), config.max_event_lead_ms))
    out = minute_bars(trades, config.watermark, config.dedup)
    out = out.withColumn(MONTH, F.trunc("date", "MM"))  # a stored column: see tables.TABLES[SPEED_BARS]
    # Created first (schema, partitioning, properties); the sink then appends into its partitioning.
    path = lake_write.ensure_table(spark, config.paths.lake, SPEED_BARS)
    return (out.writeStream.queryName("speed-bars").format("delta").outputMode("append")
            .option("checkpointLocation", str(checkpoint_dir(config, "bars")))
            .trigger(**_trigger(config)).start(str(path)))


def query_id(checkpoint: Path) -> str:
    """The id Spark gave a checkpoint when it created it (``<checkpoint>/metadata``): stable across restarts,
    new when the checkpoint is deleted, so a fresh checkpoint's batch 0 is not mistaken for the old one's."""
    try:
        return json.loads((checkpoint / "metadata").read_text(encoding="utf-8"))["id"]
    except (OSError, ValueError, KeyError) as exc:
        raise RuntimeError(f"no query id in checkpoint {checkpoint} (started by Spark?)") from exc


def _provisional_rows(klines: pd.DataFrame) -> pd.DataFrame:
    open_time = pd.to_datetime(klines["kline_open_ms"], unit="ms", utc=True)
    return pd.DataFrame({
        "symbol": klines["symbol"], "open_time": open_time,
        "open": klines["k_open"], "high": klines["k_high"], "low": klines["k_low"], "close": klines["k_close"],
        "volume": klines["k_volume"], "trades": klines["k_trades"].astype("Int64"),
        "closed": klines["k_closed"].astype(bool), "event_ms": klines["event_ms"].astype("int64"),
        "received_ms": speed_lake.utc_ms(klines["kafka_ts"]).astype("int64"), "date": open_time.dt.date})


def side_batch(config: ConsumerConfig):
    """The foreachBatch body: quarantine, gap markers, provisional minutes; one idempotent append per table
    that has rows (keyed by the batch id, so a replayed batch is skipped)."""

    paths = config.paths
    app_id: list[str] = []  # resolved on the first batch: Spark writes the checkpoint's metadata at start

    def append(spark, name: str, frame: pd.DataFrame, batch_id: int) -> None:
        if not app_id:
            app_id.append(f"speed-side-{query_id(checkpoint_dir(config, 'side'))}")
        lake_write.append_once(spark, paths.lake, name, frame, app_id=app_id[0], txn_version=batch_id)

    def run(events, batch_id: int) -> None:
        rows = side_records(events).toPandas()
        spark = events.sparkSession
        bad = rows[rows["kind"] == "bad"]
        if len(bad):
            append(spark, SPEED_QUARANTINE,
                   bad.assign(batch_id=batch_id, kafka_ts=speed_lake.utc_ms(bad["kafka_ts"])), batch_id)
            log.warning("batch %d: %d records quarantined (%s)", batch_id, len(bad),
                        ", ".join(f"{r}={n}" for r, n in bad["reason"].value_counts().items()))
        gaps = rows[rows["kind"] == "gap"]
        if len(gaps):
            gaps = gaps.rename(columns={"gap_from_ms": "from_ms", "gap_to_ms": "to_ms", "reason": "_",
                                        "gap_reason": "reason"})
            append(spark, SPEED_GAPS, gaps, batch_id)
        klines = rows[rows["kind"] == "kline"]
        if len(klines):
            append(spark, SPEED_PROVISIONAL, _provisional_rows(klines), batch_id)

    return run


def start_side(spark, config: ConsumerConfig):
    kafka = read_kafka(spark, config, config.topics.all())
    events = parse_events(kafka, config.expected(), config.max_event_lead_ms)
    return (events.writeStream.queryName("speed-side").foreachBatch(side_batch(config))
            .option("checkpointLocation", str(checkpoint_dir(config, "side")))
            .trigger(**_trigger(config)).start())


class ProgressLog:
    """Polls the queries' progress (no py4j callback server): a line per query per minute, and a warning when
    rows arrived behind the watermark and were dropped (raise ``--watermark`` if that repeats)."""

    def __init__(self, every_s: float = 60.0) -> None:
        self.every_s = every_s
        self.seen: dict[str, int] = {}
        self.logged: dict[str, float] = {}

    def poll(self, queries: list) -> None:
        for query in queries:
            for p in query.recentProgress:
                if p["batchId"] <= self.seen.get(query.name, -1):
                    continue
                self.seen[query.name] = p["batchId"]
                dropped = sum(op.get("numRowsDroppedByWatermark", 0) for op in p.get("stateOperators", []))
                if dropped:
                    log.warning("%s batch %d: %d rows arrived behind the watermark and were dropped", query.name,
                                p["batchId"], dropped)
                now = time.monotonic()
                if now - self.logged.get(query.name, -1e9) >= self.every_s:
                    self.logged[query.name] = now
                    log.info("%s batch %d: %d rows, %.0f rows/s, watermark %s", query.name, p["batchId"],
                             p["numInputRows"], p.get("processedRowsPerSecond") or 0.0,
                             p.get("eventTime", {}).get("watermark", "-"))


@contextmanager
def _sql_conf(spark, conf: dict[str, str]) -> Iterator[None]:
    """Set ``conf`` while queries start, then restore: a query keeps the settings it started with (its
    session is a clone), and batch jobs sharing this session must not get 2 shuffle partitions."""
    before = {key: spark.conf.get(key, None) for key in conf}
    for key, value in conf.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def start(spark, config: ConsumerConfig) -> list:
    """Start the configured queries; returns the StreamingQuery handles."""
    if "bars" in config.queries:
        _guard_output(config)
    log.info("speed layer reading %s from %s", ",".join(config.topics.all()), config.bootstrap)
    started = []
    deployed = env_spark_conf()  # the deployment's own settings win over these defaults
    with _sql_conf(spark, {k: v for k, v in STREAM_SQL_CONF.items() if k not in deployed}):
        if "bars" in config.queries:
            started.append(start_bars(spark, config))
        if "side" in config.queries:
            started.append(start_side(spark, config))
    return started


def _stop_between_batches(queries: list, timeout: float = 60.0) -> None:
    """``query.stop()`` cancels a running micro-batch (safe, it is re-run on restart, but noisy and wasted), so
    wait for each query to be between triggers first."""
    deadline = time.monotonic() + timeout
    for query in queries:
        while query.isActive and query.status.get("isTriggerActive") and time.monotonic() < deadline:
            time.sleep(0.1)
        if query.isActive:
            query.stop()


def run(config: ConsumerConfig, spark=None, stop: threading.Event | None = None) -> list:
    """Run until the queries end (available-now), one fails, or ``stop`` is set (e.g. by a signal handler:
    it only sets the event, because a py4j call from a handler would re-enter the blocked main thread's)."""
    spark = spark or stream_spark()
    queries = start(spark, config)
    progress = ProgressLog()
    try:
        if config.available_now:
            for query in queries:
                query.awaitTermination()
        else:
            spark.streams.resetTerminated()  # forget queries that ended earlier in this session
            while not (stop and stop.is_set()):
                if spark.streams.awaitAnyTermination(1):
                    break
                progress.poll(queries)
    finally:
        _stop_between_batches(queries)
        progress.every_s = float("inf")  # after the run: only the warnings
        progress.poll(queries)
    for query in queries:
        progress = query.lastProgress or {}
        log.info("%s finished: last batch %s, %s rows", query.name, progress.get("batchId"),
                 progress.get("numInputRows"))
        if query.exception() is not None:
            raise RuntimeError(f"{query.name} failed: {query.exception()}")
    return queries
