"""The streaming parse on Spark (static DataFrames shaped like Kafka rows, no broker): each record parsed once
and classified."""

from __future__ import annotations

import json


def test_each_record_is_parsed_once_and_classified(spark) -> None:
    """The bars query's plan evaluates ``from_json`` once per record (Spark used to inline it into every field
    reference and into pushed-down filters: 10 parses a record, half the consumer's CPU), and the single
    parse still sorts records into valid trades and quarantine reasons."""
    from streaming_service.events import parse_events, valid_trades

    good = {"e": "trade", "E": 1, "s": "BTCUSDT", "t": 7, "p": "1.5", "q": "2", "T": 1_748_736_000_000, "m": True}
    rows = [(b"BTCUSDT", json.dumps(good).encode(), "t.trades", 0, 0),
            (b"BTCUSDT", json.dumps({**good, "p": "-1"}).encode(), "t.trades", 0, 1),
            (b"BTCUSDT", b"{not json", "t.trades", 0, 2),
            (b"BTCUSDT", json.dumps({**good, "e": "kline"}).encode(), "t.trades", 0, 3),
            (b"BTCUSDT", json.dumps({**good, "T": 60_000}).encode(), "t.trades", 0, 4),  # 1970: before listing
            # received (Kafka time) at T + 5 ms but stamped two minutes later: a clock from the future
            (b"BTCUSDT", json.dumps({**good, "T": good["T"] + 120_005}).encode(), "t.trades", 0, 5),
            # Java's $ matches before a final newline: the symbol rule must not
            (None, json.dumps({**good, "s": "BTCUSDT\n"}).encode(), "t.trades", 0, 6)]
    kafka = spark.createDataFrame(rows, "key binary, value binary, topic string, partition int, offset long") \
        .selectExpr("*", f"timestamp_millis({good['T']} + offset) AS timestamp")
    events = parse_events(kafka, {"t.trades": "trade"})
    valid = valid_trades(events)
    plan = valid._jdf.queryExecution().optimizedPlan().toString()
    assert plan.count("from_json(") == 1, plan
    assert [(r.trade_id, r.price, r.qty) for r in valid.collect()] == [(7, 1.5, 2.0)]
    reasons = {r.offset: r.reason for r in events.collect()}
    assert reasons == {0: None, 1: "invalid_price", 2: "unparseable_json", 3: "event_type_does_not_match_topic",
                       4: "invalid_trade_time", 5: "trade_time_in_the_future", 6: "invalid_symbol"}
    # Lifted only for a replay faster than the clock: then the same record is a valid trade.
    unbounded = {r.offset: r.reason for r in parse_events(kafka, {"t.trades": "trade"}, None).collect()}
    assert unbounded[5] is None and unbounded[4] == "invalid_trade_time"
