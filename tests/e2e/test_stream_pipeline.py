"""Speed layer end to end with a real broker, real Spark and a real WebSocket: replay exchange -> producer
-> Apache Kafka -> Structured Streaming (available-now) -> Delta tables, read back with delta-rs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from crypto_lambda.config import Settings
from crypto_lambda.lake import read as lake_read
from crypto_lambda.lake.speed import (
    gap_minutes,
    provisional_daily_bar,
    read_gaps,
    read_speed_bars,
    read_stream_quarantine,
)
from crypto_lambda.lake.tables import SPEED_BARS
from crypto_lambda_app.harness import ReplayRun, expected_trades, read_topic, trades_frame
from replay_exchange.recording import Recording
from streaming_service import consumer
from streaming_service.broker import EmbeddedBroker
from streaming_service.topics import SpeedPaths, Topics

pytestmark = pytest.mark.timeout(300)
HOUR = 3_600_000
SYMBOLS = ("BTCUSDT", "ETHUSDT")


def _start(recording: Recording, days: int) -> int:
    return recording.minute_span("BTCUSDT")[0] + days * 86_400_000 + 9 * HOUR


MALFORMED = [  # (topic kind, key, value, expected reason)
    ("trades", b"BTCUSDT", b"not json at all", "unparseable_json"),
    ("trades", b"BTCUSDT", b"\xff\xfe\x00garbage", "unparseable_json"),
    ("trades", b"BTCUSDT", b'{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"abc","q":"1","T":1}', "invalid_price"),
    ("trades", b"BTCUSDT", b'{"e":"trade","E":1,"s":"BTCUSDT","t":2,"p":"5","q":"-1","T":1}', "invalid_quantity"),
    ("trades", b"btc-usdt", b'{"e":"trade","E":1,"s":"btc-usdt","t":3,"p":"5","q":"1","T":1}', "invalid_symbol"),
    ("trades", b"ETHUSDT", b'{"e":"trade","E":1,"s":"BTCUSDT","t":4,"p":"5","q":"1","T":1}',
     "key_does_not_match_symbol"),
    ("trades", b"BTCUSDT", b'{"e":"aggTrade","s":"BTCUSDT"}', "unknown_event_type"),
    ("klines", b"BTCUSDT", b'{"e":"kline","E":1,"s":"BTCUSDT","k":{"t":60000,"i":"1m","o":"5","h":"4","l":"3",'
                          b'"c":"5","v":"1","x":true}}', "ohlc_violation"),
    ("klines", b"BTCUSDT", b'{"e":"trade","E":1,"s":"BTCUSDT","t":5,"p":"5","q":"1","T":1}',
     "event_type_does_not_match_topic"),
    ("gaps", b"BTCUSDT", b'{"e":"gap","E":1,"s":"BTCUSDT","from":9,"to":1}', "invalid_gap_range"),
]


def _inject(bootstrap: str, topics: Topics) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for kind, key, value, _ in MALFORMED:
        producer.send(getattr(topics, kind), key=key, value=value)
    producer.flush()
    producer.close()


def test_streamed_hour_equals_recorded_klines_and_bad_records_are_quarantined(
        broker: EmbeddedBroker, recording: Recording, spark, lambda_home: Path) -> None:
    settings = Settings(home=lambda_home)
    paths = SpeedPaths.of(settings)
    topics = Topics.with_prefix("hour")
    broker.create_topics(topics.all(), partitions=2)
    start = _start(recording, 20)
    end = start + HOUR + 5 * 60_000  # 5 more minutes move the 2-minute watermark past the hour
    _inject(broker.bootstrap, topics)
    with ReplayRun(recording, broker.bootstrap, topics, paths.spill, start, end, speed=1200) as run:
        run.wait_until_done()
        assert run.producer.stats.reconnects == 0 and run.producer.publisher.stats.failed == 0

    config = consumer.ConsumerConfig(bootstrap=broker.bootstrap, paths=paths, topics=topics, available_now=True)
    consumer.run(config, spark)

    day = pd.Timestamp(start, unit="ms", tz="UTC").date()
    bars = read_speed_bars(settings)
    assert not bars.duplicated(["symbol", "open_time"]).any()
    assert (bars["source"] == "stream").all()
    for symbol in SYMBOLS:
        want = recording.minutes(symbol, start, start + HOUR).set_index("open_time")
        got = bars[bars["symbol"] == symbol].set_index("open_time").reindex(want.index)
        assert len(want) == 60 and got["open"].notna().all()
        for col in ("open", "high", "low", "close"):
            assert (got[col].to_numpy() == want[col].to_numpy()).all(), col
        np.testing.assert_allclose(got["volume"], want["volume"], rtol=1e-9, atol=0)
        assert (got["date"] == want.index.date).all()
    hour_end = f"open_time < timestamp_millis({start + HOUR})"
    spark_count = spark.read.format("delta").load(str(paths.bars)).where(hour_end).count()
    assert spark_count == 120  # Spark's own Delta reader agrees with delta-rs
    table = lake_read.open_table(settings.lake, SPEED_BARS)  # partitioned like raw klines, by the sink
    assert table.metadata().partition_columns == ["symbol", "month"]
    actions = pa.table(table.get_add_actions(flatten=True)).to_pylist()
    assert {a["partition.month"] for a in actions} == {day.replace(day=1)}
    assert all(e["operation"] == "STREAMING UPDATE" for e in lake_read.history(settings.lake, SPEED_BARS)[:-1])

    # A deleted checkpoint on a table that has bars would read the topics again and store every bar twice.
    shutil.rmtree(consumer.checkpoint_dir(config, "bars"))
    with pytest.raises(ValueError, match="already holds streaming bars"):
        consumer.run(config, spark)
    assert len(read_speed_bars(settings)) == len(bars)

    quarantined = read_stream_quarantine(settings)  # one idempotent append per batch that had bad records
    assert len(quarantined) == len(MALFORMED)
    assert sorted(quarantined["reason"]) == sorted(m[3] for m in MALFORMED)
    assert set(quarantined["raw"]) == {m[2] for m in MALFORMED}

    for symbol in SYMBOLS:
        bar = provisional_daily_bar(settings, symbol, day)
        want = recording.minutes(symbol, start, end)
        assert bar["minutes"] == 65 and bar["provisional_minutes"] >= 1  # the newest minutes are not committed
        assert (bar["open"], bar["high"], bar["low"], bar["close"]) == (
            want["open"].iloc[0], want["high"].max(), want["low"].min(), want["close"].iloc[-1])
        assert bar["volume"] == pytest.approx(want["volume"].sum(), rel=1e-9)


def test_server_disconnect_yields_gap_markers_covering_the_outage(
        broker: EmbeddedBroker, recording: Recording, spark, lambda_home: Path) -> None:
    settings = Settings(home=lambda_home)
    paths = SpeedPaths.of(settings)
    topics = Topics.with_prefix("gap")
    broker.create_topics(topics.all(), partitions=2)
    start = _start(recording, 30)
    end = start + 30 * 60_000
    with ReplayRun(recording, broker.bootstrap, topics, paths.spill, start, end, speed=600,
                   disconnect_after_s=1.0) as run:
        run.wait_until_done()
        producer = run.producer
        knobs = run.knobs
    assert producer.stats.reconnects == 1 and producer.stats.gaps == 2
    markers = {m["s"]: m for m in producer.gap_markers}
    assert set(markers) == set(SYMBOLS)

    got = trades_frame(r.value for r in read_topic(broker.bootstrap, topics.trades))
    assert not got.duplicated(["symbol", "trade_id"]).any()
    for symbol in SYMBOLS:
        want = expected_trades(recording, knobs, symbol, start, end)
        missing = want[~want["trade_id"].isin(got.loc[got["symbol"] == symbol, "trade_id"])]
        marker = markers[symbol]
        assert len(missing) > 0, "the outage should have cost some trades"
        assert missing["trade_time_ms"].between(marker["from"], marker["to"]).all()
        assert marker["to"] - marker["from"] < 10 * 60_000

    stored = [json.loads(r.value) for r in read_topic(broker.bootstrap, topics.gaps)]
    assert sorted(m["s"] for m in stored) == sorted(SYMBOLS)
    config = consumer.ConsumerConfig(bootstrap=broker.bootstrap, paths=paths, topics=topics, available_now=True,
                                     queries=("side",))
    consumer.run(config, spark)
    gaps = read_gaps(settings)
    assert sorted(gaps["symbol"]) == sorted(SYMBOLS)
    refill = gap_minutes(gaps)
    for symbol in SYMBOLS:
        want = expected_trades(recording, knobs, symbol, start, end)
        lost = want[~want["trade_id"].isin(got["trade_id"])]
        lost_minutes = set(lost["trade_time_ms"] // 60_000 * 60_000)
        assert lost_minutes <= set(refill.loc[refill["symbol"] == symbol, "open_ms"])


def test_connection_rotation_hands_over_without_gap_or_duplicate(
        broker: EmbeddedBroker, recording: Recording, lambda_home: Path) -> None:
    paths = SpeedPaths.of(Settings(home=lambda_home))
    topics = Topics.with_prefix("rotate")
    broker.create_topics(topics.all(), partitions=1)
    start = _start(recording, 40)
    end = start + 40 * 60_000
    run = ReplayRun(recording, broker.bootstrap, topics, paths.spill, start, end, speed=600,
                    max_connection_age_s=1.0)
    run.start()
    try:
        run.wait_until_done()
    finally:
        run.stop()
    assert run.producer.stats.rotations >= 2 and run.producer.stats.gaps == 0
    got = trades_frame(r.value for r in read_topic(broker.bootstrap, topics.trades))
    assert not got.duplicated(["symbol", "trade_id"]).any()
    for symbol in SYMBOLS:
        want = expected_trades(recording, run.knobs, symbol, start, end)
        # The first connection anchors the replay clock at `start`, so everything must be there.
        assert set(want["trade_id"]) == set(got.loc[got["symbol"] == symbol, "trade_id"])
