"""Kafka side of the producer: a bounded in-memory queue in, ``acks=all`` records out, a spill file while
the broker is unreachable.

Why a thread: kafka-python blocks (metadata waits, full buffers) and the WebSocket loop must keep answering
pings, so the loop only ever does a non-blocking ``submit``. Ordering: on the first failed delivery the
publisher stops sending, closes the producer (in-flight records fail, in order, into the spill), then moves
what is queued behind them to the spill too; on recovery it (re)creates topics, replays the spill oldest
first and only then resumes sending from the queue, so each partition keeps event order. A fresh
KafkaProducer per broker session avoids stale idempotence state after a broker restart. The queue is
bounded; if it overflows (broker slow and the machine slower) records go straight to the spill, still
never dropped.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from streaming_service.broker import ensure_topics
from streaming_service.spill import SpilledRecord, SpillFile

log = logging.getLogger(__name__)

Delivered = Callable[[SpilledRecord], None]


@dataclass
class PublisherConfig:
    bootstrap: str
    topics: tuple[str, ...] = ()  # created (if missing) on every broker (re)connect when create_topics
    partitions: int = 2
    create_topics: bool = True
    queue_size: int = 100_000
    linger_ms: int = 10
    batch_size: int = 256 * 1024
    delivery_timeout_ms: int = 8_000
    request_timeout_ms: int = 4_000
    probe_interval_s: float = 1.0
    close_timeout_s: float = 2.0


@dataclass
class PublisherStats:
    submitted: int = 0
    acked: int = 0
    failed: int = 0
    overflowed: int = 0
    replayed: int = 0
    outages: int = 0


def _abort(producer, timeout_s: float) -> None:
    """Close a producer whose broker went away: in-flight batches are aborted, so their errbacks spill them.

    kafka-python 3.0's ``close(timeout)`` flushes first and raises when that times out, before it reaches
    the force-close that aborts the pending batches; those records would then never be acked or spilled
    (seen when Kafka shut down mid-stream: thousands missing). So on a timeout the sender is force-closed here,
    which fails every pending batch into ``_on_error``, and the sender thread is joined.
    """
    try:
        producer.close(timeout=timeout_s)
        return
    except Exception as exc:  # noqa: BLE001 - KafkaTimeoutError from the flush
        log.info("kafka producer did not flush within %.0f s (%s): aborting its pending batches", timeout_s, exc)
    sender = getattr(producer, "_sender", None)
    if sender is not None:
        sender.force_close()
        sender.join(timeout_s + 5)
        if sender.is_alive():
            log.warning("kafka producer sender still alive after force close")


class Publisher(threading.Thread):
    """``submit()`` from any thread; ``close()`` drains the queue (to Kafka, or to the spill) and stops."""

    def __init__(self, config: PublisherConfig, spill: SpillFile, on_delivered: Delivered | None = None) -> None:
        super().__init__(name="kafka-publisher", daemon=True)
        self.config = config
        self.spill = spill
        self.on_delivered = on_delivered
        self.queue: queue.Queue[SpilledRecord] = queue.Queue(config.queue_size)
        self.stats = PublisherStats()
        self.up = False
        self._producer = None
        self._failure = threading.Event()
        self._closing = threading.Event()
        self._next_probe = 0.0

    # -- called from other threads ---------------------------------------------------------------------

    def submit(self, topic: str, key: bytes | None, value: bytes, timestamp_ms: int | None = None) -> None:
        record = SpilledRecord(topic, key, value, timestamp_ms)
        self.stats.submitted += 1
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.stats.overflowed += 1
            self.spill.append(record)

    def buffered(self) -> int:
        return self.queue.qsize()

    def close(self, timeout: float = 30.0) -> None:
        self._closing.set()
        self.join(timeout)
        self.spill.close()

    # -- the publisher thread --------------------------------------------------------------------------

    def run(self) -> None:
        while True:
            if not self.up:
                if time.monotonic() >= self._next_probe:
                    self._recover()
                if not self.up:
                    self._drain_to_spill()
                    if self._closing.is_set():
                        return
                    time.sleep(0.05)
                continue
            try:
                record = self.queue.get(timeout=0.1)
            except queue.Empty:
                if self._closing.is_set():
                    self._shutdown()
                    return
                continue
            self._send(record)
            if self._failure.is_set():
                self._go_down("delivery failed")

    def _new_producer(self):
        from kafka import KafkaProducer

        cfg = self.config
        # Idempotent: a retried batch after a leader change is written once (the broker dedups by producer id
        # and sequence), so a broker failover neither loses (acks=all) nor duplicates records.
        return KafkaProducer(bootstrap_servers=cfg.bootstrap.split(","), acks="all", enable_idempotence=True,
                             linger_ms=cfg.linger_ms,
                             batch_size=cfg.batch_size, delivery_timeout_ms=cfg.delivery_timeout_ms,
                             request_timeout_ms=cfg.request_timeout_ms, max_block_ms=2_000,
                             bootstrap_timeout_ms=2_000, reconnect_backoff_max_ms=1_000,
                             client_id="crypto-lambda-producer")

    def _send(self, record: SpilledRecord) -> None:
        try:
            future = self._producer.send(record.topic, value=record.value, key=record.key,  # type: ignore[union-attr]
                                         timestamp_ms=record.timestamp_ms)
        except Exception as exc:  # noqa: BLE001 - metadata timeout, buffer full, closed producer ...
            self._on_error(record, exc)
            return
        future.add_callback(self._on_ok, record)
        future.add_errback(lambda exc, rec=record: self._on_error(rec, exc))

    def _on_ok(self, record: SpilledRecord, _metadata: object) -> None:
        self.stats.acked += 1
        if self.on_delivered is not None:
            self.on_delivered(record)

    def _on_error(self, record: SpilledRecord, exc: BaseException) -> None:
        self.stats.failed += 1
        self.spill.append(record)
        if not self._failure.is_set():
            log.warning("kafka delivery failed (%s: %s); spilling to %s", type(exc).__name__, exc,
                        self.spill.folder)
        self._failure.set()

    def _go_down(self, why: str) -> None:
        """Fail everything in flight into the spill (in order), then everything queued behind it."""
        self.up = False
        self.stats.outages += 1
        producer, self._producer = self._producer, None
        if producer is not None:
            _abort(producer, self.config.close_timeout_s)
        self._drain_to_spill()
        self._next_probe = time.monotonic() + self.config.probe_interval_s
        log.warning("broker unreachable (%s): spilling; %d records pending in the spill", why, self.spill.pending)

    def _drain_to_spill(self) -> None:
        while True:
            try:
                self.spill.append(self.queue.get_nowait())
            except queue.Empty:
                return

    def _recover(self) -> None:
        """Connect, make sure the topics exist, replay the spill; on any failure stay down and retry later."""
        self._next_probe = time.monotonic() + self.config.probe_interval_s
        try:
            producer = self._new_producer()
        except Exception as exc:  # noqa: BLE001 - NoBrokersAvailable and friends
            log.debug("broker still unreachable: %s", exc)
            return
        try:
            if self.config.create_topics and self.config.topics:
                ensure_topics(self.config.bootstrap, self.config.topics, self.config.partitions)
            self._replay(producer)
        except Exception as exc:  # noqa: BLE001
            log.warning("replaying the spill failed (%s); will retry", exc)
            _abort(producer, 1.0)
            return
        self._producer = producer
        self._failure.clear()
        self.up = True
        log.info("connected to kafka %s", self.config.bootstrap)

    def _replay(self, producer) -> None:
        for segment in self.spill.seal():
            records = list(SpillFile.read(segment))
            futures = [producer.send(r.topic, value=r.value, key=r.key, timestamp_ms=r.timestamp_ms)
                       for r in records]
            producer.flush(timeout=self.config.delivery_timeout_ms / 1000 + 2)
            failed = [f for f in futures if not f.succeeded()]
            if failed:
                raise RuntimeError(f"{len(failed)} of {len(records)} spilled records not acknowledged "
                                   f"({failed[0].exception})")
            self.spill.remove(segment, len(records))
            self.stats.replayed += len(records)
            self.stats.acked += len(records)
            if self.on_delivered is not None:
                for record in records:
                    self.on_delivered(record)
            log.info("replayed %d spilled records from %s", len(records), segment.name)

    def _shutdown(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.flush(timeout=self.config.delivery_timeout_ms / 1000 + 2)
            except Exception as exc:  # noqa: BLE001 - whatever failed is in the spill via the errback
                log.warning("final flush: %s", exc)
            _abort(producer, 5.0)
        self._drain_to_spill()
