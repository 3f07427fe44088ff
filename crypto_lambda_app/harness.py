"""Helpers that drive the speed layer end to end against the replay exchange: used by the tests, the
benchmark and demos (so they exercise the real producer, broker and WebSocket, not a shortcut).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from replay_exchange.recording import Recording
from replay_exchange.server import ReplayKnobs, ReplayServer
from replay_exchange.streams import MinuteTable, StreamKnobs, configure_streams, minute_trades
from streaming_service.producer import ProducerConfig, StreamProducer
from streaming_service.topics import Topics

LOT = 100_000_000


def expected_trades(recording: Recording, knobs: StreamKnobs, symbol: str, start_ms: int,
                    end_ms: int) -> pd.DataFrame:
    """The trades the replay streams for ``symbol`` in [start_ms, end_ms) (whole recorded minutes)."""
    table = MinuteTable(recording, symbol, knobs)
    rows = []
    first, last = (int(i) for i in np.searchsorted(table.open_ms, [start_ms, end_ms]))
    for i in range(first, last):
        rows += [(symbol, tid, t, price, lots / LOT) for t, tid, price, lots, _ in minute_trades(table, i, knobs.seed)]
    return pd.DataFrame(rows, columns=["symbol", "trade_id", "trade_time_ms", "price", "qty"])


def read_topic(bootstrap: str, topic: str, timeout: float = 20.0) -> list:
    """Every record of a topic up to its exact current end (all partitions), ordered by partition/offset."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), enable_auto_commit=False, group_id=None,
                             fetch_max_wait_ms=20, client_id="crypto-lambda-read-topic")
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        ends = consumer.end_offsets(tps)
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        out: dict = {tp: [] for tp in tps}
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp] for tp in tps) and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=200).items():
                out[tp].extend(r for r in records if r.offset < ends[tp])
        return [r for tp in tps for r in out[tp]]
    finally:
        consumer.close()


def trades_frame(values: Iterable[bytes]) -> pd.DataFrame:
    """Trade events (raw Kafka values) as symbol, trade_id, trade_time_ms, price, qty; others skipped."""
    rows = []
    for value in values:
        try:
            event = json.loads(value)
        except (ValueError, TypeError):
            continue
        if isinstance(event, dict) and event.get("e") == "trade":
            rows.append((event["s"], int(event["t"]), int(event["T"]), float(event["p"]), float(event["q"])))
    return pd.DataFrame(rows, columns=["symbol", "trade_id", "trade_time_ms", "price", "qty"])


@dataclass
class ReplayRun:
    """A replay exchange plus producer publishing to Kafka; ``wait_until(end_ms)`` then ``stop()``."""

    recording: Recording
    bootstrap: str
    topics: Topics
    spill_dir: Path
    start_ms: int
    end_ms: int
    speed: float = 600.0
    symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT")
    trades_per_minute: int = 40
    disconnect_after_s: float | None = None
    on_delivered: object = None
    max_connection_age_s: float | None = None  # set before the producer starts: its first wait reads it

    def start(self) -> ReplayRun:
        knobs = ReplayKnobs()
        self.knobs = configure_streams(knobs, speed=self.speed, start_ms=self.start_ms, end_ms=self.end_ms,
                                       trades_per_minute=self.trades_per_minute,
                                       disconnect_after_s=self.disconnect_after_s)
        self.server = ReplayServer(self.recording, knobs).start()
        config = ProducerConfig(symbols=self.symbols, bootstrap=self.bootstrap, ws_url=self.server.ws_url,
                                spill_dir=self.spill_dir, topics=self.topics, stats_interval_s=5.0,
                                backoff_initial_s=0.2)
        if self.max_connection_age_s is not None:
            config.max_connection_age_s = self.max_connection_age_s
        self.producer = StreamProducer(config, on_delivered=self.on_delivered).start_thread()  # type: ignore[arg-type]
        return self

    def done(self) -> bool:
        """Every symbol's stream reached the end and Kafka acknowledged everything forwarded."""
        seen = self.producer.last_seen
        last = self.end_ms - 1
        reached = all(seen.get(s, 0) >= last for s in self.symbols)
        stats = self.producer.publisher.stats
        return reached and self.producer.publisher.buffered() == 0 and stats.acked >= stats.submitted

    def wait_until_done(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"replay not finished after {timeout}s: last seen {self.producer.last_seen}, "
                                   f"{self.producer.publisher.stats}")
            time.sleep(0.1)

    def stop(self) -> None:
        self.producer.join()
        self.server.stop()

    def __enter__(self) -> ReplayRun:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
