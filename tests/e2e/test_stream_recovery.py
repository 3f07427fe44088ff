"""Crash and outage recovery on Apache Kafka: kill -9 of the streaming consumer, a broker stopped during
production (the spill replays), topics deleted under a checkpoint (the query fails loudly)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from crypto_lambda.config import Settings
from crypto_lambda.lake import read as lake_read
from crypto_lambda.lake.speed import read_speed_bars
from crypto_lambda.lake.tables import SPEED_BARS
from crypto_lambda_app.harness import ReplayRun, expected_trades, read_topic, trades_frame
from replay_exchange.recording import Recording
from streaming_service import consumer
from streaming_service.broker import EmbeddedBroker, delete_topics
from streaming_service.topics import SpeedPaths, Topics
from tests.support import assert_bars_equal_recording

pytestmark = pytest.mark.timeout(300)
HOUR = 3_600_000
SYMBOLS = ("BTCUSDT", "ETHUSDT")


def _count(folder: Path) -> int:
    return len([p for p in folder.iterdir() if p.name.isdigit()]) if folder.is_dir() else 0


def test_consumer_killed_mid_stream_resumes_without_duplicates_or_holes(
        broker: EmbeddedBroker, recording: Recording, spark, lambda_home: Path, tmp_path: Path) -> None:
    settings = Settings(home=lambda_home)
    paths = SpeedPaths.of(settings)
    topics = Topics.with_prefix("kill")
    start = recording.minute_span("BTCUSDT")[0] + 50 * 86_400_000
    end = start + HOUR + 12 * 60_000
    broker.create_topics(topics.all(), partitions=2)
    with ReplayRun(recording, broker.bootstrap, topics, paths.spill, start, end, speed=1200) as run:
        run.wait_until_done()

    # Small micro-batches so the kill lands mid-stream; a wide watermark because capped batches let one
    # partition run ahead of the other in event time.
    cli = [sys.executable, "-c", "import sys; from crypto_lambda_app.cli import main; sys.exit(main())",
           "stream", "consume", "--bootstrap", broker.bootstrap, "--topic-prefix", "kill",
           "--trigger-seconds", "0.5", "--max-offsets-per-trigger", "600", "--queries", "bars",
           "--watermark", "10 minutes"]
    log = open(tmp_path / "consumer.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cli, env={**os.environ, "CRYPTO_LAMBDA_HOME": str(lambda_home)},
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    checkpoint = consumer.checkpoint_dir(consumer.ConsumerConfig(broker.bootstrap, paths, topics), "bars")
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            commits, offsets = _count(checkpoint / "commits"), _count(checkpoint / "offsets")
            if commits >= 3 and offsets > commits:  # a batch is journaled but not committed: kill now
                break
            time.sleep(0.05)
        assert proc.poll() is None, (tmp_path / "consumer.log").read_text()[-3000:]
        os.killpg(proc.pid, signal.SIGKILL)  # the consumer, its JVM and its Python workers
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    before = read_speed_bars(settings)
    assert 0 < len(before) < 120, "the kill should land mid-stream"

    config = consumer.ConsumerConfig(bootstrap=broker.bootstrap, paths=paths, topics=topics,
                                     available_now=True, queries=("bars",), watermark="10 minutes")
    consumer.run(config, spark)

    bars = read_speed_bars(settings)
    assert_bars_equal_recording(bars, recording, SYMBOLS, start, start + HOUR)
    listed = {Path(unquote(urlparse(u).path)).resolve() for u in lake_read.file_uris(settings.lake, SPEED_BARS)}
    on_disk = {p.resolve() for p in paths.bars.rglob("*.parquet")}
    assert listed <= on_disk  # orphans from the killed batch may exist on disk; no version references them
    hour_end = f"open_time < timestamp_millis({start + HOUR})"
    assert spark.read.format("delta").load(str(paths.bars)).where(hour_end).count() == 120


def test_broker_stopped_during_production_loses_nothing(recording: Recording, lambda_home: Path,
                                                        tmp_path: Path) -> None:
    """Kafka stopped for longer than the producer waits: records spill to disk and are replayed once it is back.
    The broker keeps its log on disk, so the topic ends up holding every trade of the hour."""
    paths = SpeedPaths.of(Settings(home=lambda_home))
    topics = Topics.with_prefix("outage")
    start = recording.minute_span("BTCUSDT")[0] + 60 * 86_400_000
    end = start + HOUR
    delivered: list[tuple[float, bytes]] = []
    broker = EmbeddedBroker(tmp_path / "kafka", log_path=tmp_path / "kafka.log").start()
    try:
        broker.create_topics(topics.all(), partitions=2)
        run = ReplayRun(recording, broker.bootstrap, topics, paths.spill, start, end, speed=300,
                        on_delivered=lambda rec: delivered.append((time.monotonic(), rec.value)))
        with run:
            time.sleep(3.0)
            broker.stop()  # controlled shutdown; its data stays on disk
            stopped_at = time.monotonic()
            time.sleep(3.0)
            restarted_at = time.monotonic()
            broker.start()
            run.wait_until_done(timeout=240)  # generous: kafka-python reconnect backoff under CI load
            producer = run.producer
            knobs = run.knobs
        stored = trades_frame(r.value for r in read_topic(broker.bootstrap, topics.trades))
    finally:
        broker.stop()

    stats = producer.publisher.stats
    assert stats.outages >= 1 and producer.spill.appended > 0 and stats.replayed > 0
    assert producer.spill.pending == 0 and not producer.spill.segments()
    assert not any(stopped_at <= t < restarted_at for t, _ in delivered)
    # A record the broker wrote but whose ack the shutdown cut off is spilled and sent again by a new
    # producer session (idempotence is per session): only spilled records can appear twice, and the
    # consumer's trade-id dedup drops them.
    assert stored.duplicated(["symbol", "trade_id"]).sum() <= producer.spill.appended
    for symbol in SYMBOLS:
        want = set(expected_trades(recording, knobs, symbol, start, end)["trade_id"])
        got = set(stored.loc[stored["symbol"] == symbol, "trade_id"])
        assert want <= got, f"{len(want - got)} {symbol} trades lost"


def _send_trades(bootstrap: str, topics: Topics, first_id: int, minutes: int, t0: int) -> None:
    """Binance-shaped trades, one per 10 s of each minute, for both symbols (ids count up from first_id)."""
    import json

    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    trade_id = first_id
    for i in range(minutes * 6):
        for symbol in SYMBOLS:
            ts = t0 + i * 10_000
            value = {"e": "trade", "E": ts, "s": symbol, "t": trade_id, "p": str(100 + i), "q": "1", "T": ts}
            producer.send(topics.trades, key=symbol.encode(), value=json.dumps(value).encode())
            trade_id += 1
    producer.flush()
    producer.close()


def test_deleted_topics_under_a_checkpoint_fail_loudly(broker: EmbeddedBroker, spark, lambda_home: Path) -> None:
    """Topics deleted and recreated while the checkpoint remembers their old offsets: data the query never read
    is gone, so by default (failOnDataLoss) it stops with an error naming the option instead of going on."""
    paths = SpeedPaths.of(Settings(home=lambda_home))
    topics = Topics.with_prefix("recreated")
    t0 = 1_700_000_000_000 // 60_000 * 60_000
    config = consumer.ConsumerConfig(bootstrap=broker.bootstrap, paths=paths, topics=topics,
                                     available_now=True, queries=("bars",))
    broker.create_topics(topics.all(), partitions=1)
    _send_trades(broker.bootstrap, topics, first_id=1, minutes=30, t0=t0)
    consumer.run(config, spark)
    before = read_speed_bars(Settings(home=lambda_home))
    # last trade at 29:50, watermark 2 minutes -> 27:50: minutes 0-26 committed, 27-29 held in state
    assert len(before) == 2 * 27
    delete_topics(broker.bootstrap, topics.all())
    broker.create_topics(topics.all(), partitions=1)  # 10 minutes now end below the checkpointed offsets
    _send_trades(broker.bootstrap, topics, first_id=10_000, minutes=10, t0=t0 + 40 * 60_000)
    with pytest.raises(Exception, match="failOnDataLoss"):  # StreamingQueryException from the source
        consumer.run(config, spark)
    assert len(read_speed_bars(Settings(home=lambda_home))) == len(before)  # nothing half-written
