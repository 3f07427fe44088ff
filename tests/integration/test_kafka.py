"""The embedded Apache Kafka itself: on-disk storage that survives a restart, and a 3-node KRaft cluster that
keeps the speed layer exact when the leader of a partition is killed mid-stream."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kafka.errors import KafkaError

from crypto_lambda.config import Settings
from crypto_lambda.deploy import KAFKA_BROKERS, kafka_replication
from crypto_lambda.lake.speed import read_speed_bars
from crypto_lambda_app.harness import ReplayRun, expected_trades, read_topic, trades_frame
from replay_exchange.recording import Recording
from streaming_service import consumer
from streaming_service.broker import EmbeddedBroker, partition_state, topic_config
from streaming_service.topics import SpeedPaths, Topics
from tests.support import assert_bars_equal_recording

pytestmark = pytest.mark.timeout(420)
HOUR = 3_600_000
SYMBOLS = ("BTCUSDT", "ETHUSDT")


def test_broker_keeps_topics_offsets_and_messages_across_restarts(tmp_path: Path) -> None:
    from kafka import KafkaProducer, TopicPartition

    data = tmp_path / "kafka"
    first = EmbeddedBroker(data, log_path=tmp_path / "kafka.log").start()
    try:
        first.create_topics(["kept"], partitions=2)
        producer = KafkaProducer(bootstrap_servers=first.bootstrap, acks="all", enable_idempotence=True)
        for i in range(3000):
            producer.send("kept", key=str(i % 7).encode(), value=str(i).encode())
        producer.flush()
        producer.close()
    finally:
        first.stop()  # SIGTERM: controlled shutdown
    assert first.nodes[0].proc is None

    second = EmbeddedBroker(data, log_path=tmp_path / "kafka.log")  # a new process, as the next `make up`
    assert (second.cluster_id, second.bootstrap) == (first.cluster_id, first.bootstrap)
    with second:
        assert second.create_topics(["kept"], partitions=2) == []  # already there
        values = sorted(int(r.value) for r in read_topic(second.bootstrap, "kept"))
        from kafka import KafkaConsumer

        probe = KafkaConsumer(bootstrap_servers=second.bootstrap, group_id=None)
        ends = probe.end_offsets([TopicPartition("kept", p) for p in (0, 1)])
        probe.close()
    assert values == list(range(3000))
    assert sum(ends.values()) == 3000
    with pytest.raises(ValueError, match="1-broker cluster, not 3"):
        EmbeddedBroker(data, brokers=3)


def test_cluster_ids_never_look_like_an_option(monkeypatch: pytest.MonkeyPatch) -> None:
    """An id starting with '-' made `kafka-storage format -t <id>` fail with a usage error (1 start in 64)."""
    import uuid

    from streaming_service import broker

    dash = uuid.UUID(bytes=b"\xfb" + bytes(15))  # base64 of 0xfb... starts with '-' (URL-safe alphabet)
    draws = iter([dash, uuid.UUID(int=7)])
    monkeypatch.setattr(broker.uuid, "uuid4", lambda: next(draws))
    cluster_id = broker.new_cluster_id()
    assert not cluster_id.startswith("-") and len(cluster_id) == 22


def _wait_isr(bootstrap: str, topic: str, size: int, timeout: float = 90.0) -> dict:
    """Partition states once every partition has ``size`` in-sync replicas (or at the timeout). A node that is
    (re)starting refuses connections for a moment, and the admin client may pick it first: retried."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = partition_state(bootstrap, topic)
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
            continue
        if all(len(p["isr"]) == size for p in state.values()) or time.monotonic() > deadline:
            return state
        time.sleep(0.5)


def test_three_brokers_survive_a_killed_leader_without_loss_or_duplicates(
        recording: Recording, spark, lambda_home: Path, tmp_path: Path) -> None:
    settings = Settings(home=lambda_home)
    paths = SpeedPaths.of(settings)
    topics = Topics.with_prefix("ha")
    start = recording.minute_span("BTCUSDT")[0] + 40 * 86_400_000 + 9 * HOUR
    end = start + HOUR + 12 * 60_000  # 12 more minutes move the watermark past the hour
    want = kafka_replication(KAFKA_BROKERS)  # the deployment's rule: docker-compose.yml's cluster has the same
    with EmbeddedBroker(tmp_path / "kafka3", brokers=KAFKA_BROKERS, log_path=tmp_path / "kafka.log") as cluster:
        cluster.create_topics(topics.all(), partitions=2)
        state = _wait_isr(cluster.bootstrap, topics.trades, want.factor)
        assert all(len(p["isr"]) == want.factor == 3 for p in state.values()), state
        assert topic_config(cluster.bootstrap, topics.trades)["min.insync.replicas"] == str(want.min_insync) == "2"
        victim = state[0]["leader"]
        with ReplayRun(recording, cluster.bootstrap, topics, paths.spill, start, end, speed=300) as run:
            deadline = time.monotonic() + 60
            while run.producer.publisher.stats.acked < 1500 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert run.producer.publisher.stats.acked >= 1500, "the producer should be streaming by now"
            cluster.kill(victim)  # kill -9 of the node leading trades partition 0, mid-stream
            run.wait_until_done(timeout=240)
            knobs, spilled = run.knobs, run.producer.spill.appended
        moved = partition_state(cluster.bootstrap, topics.trades)
        assert all(p["leader"] != victim and victim not in p["isr"] for p in moved.values()), moved

        # The speed layer reads the surviving replicas while the killed node is still down.
        config = consumer.ConsumerConfig(bootstrap=cluster.bootstrap, paths=paths, topics=topics,
                                         available_now=True, queries=("bars",))
        consumer.run(config, spark)
        stored = trades_frame(r.value for r in read_topic(cluster.bootstrap, topics.trades))

        cluster.start_node(victim)
        back = _wait_isr(cluster.bootstrap, topics.trades, 3)
        assert all(len(p["isr"]) == 3 for p in back.values()), f"node {victim} did not rejoin: {back}"

    for symbol in SYMBOLS:
        want = set(expected_trades(recording, knobs, symbol, start, end)["trade_id"])
        got = set(stored.loc[stored["symbol"] == symbol, "trade_id"])
        assert want <= got, f"{len(want - got)} {symbol} trades lost"
    # Retries within one producer session are deduplicated by the brokers (idempotence); only records that
    # went through the spill could be stored twice, and the consumer drops those by trade id.
    assert stored.duplicated(["symbol", "trade_id"]).sum() <= spilled
    assert_bars_equal_recording(read_speed_bars(settings), recording, SYMBOLS, start, start + HOUR)
