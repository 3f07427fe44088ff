"""Parsing of the Kafka topics' events, shared by every reader of them (the streaming job, the benchmark and
the tests); the bars built from the valid trades follow :mod:`crypto_lambda.bars`.

Kafka values are Binance event JSON (``e`` = trade | kline) or the producer's gap markers (``e`` = gap).
One explicit schema parses all three (field names are case-sensitive: Binance uses both ``e`` and ``E``);
:func:`parse_events` adds a ``reason`` column that is null for a valid record and otherwise names the first
problem, so one filter splits good records from quarantine and a bad record never stops the stream.

The record's JSON schema is :data:`crypto_lambda.schema.KAFKA_EVENT_SCHEMA`.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from crypto_lambda.config import SYMBOL_CHARS
from crypto_lambda.quality import OHLC_VIOLATION, ohlc_consistent_col
from crypto_lambda.schema import (
    GLOBAL_LISTING_FLOOR,
    KAFKA_EVENT_NAMED_SCHEMA,
    KAFKA_EVENT_SCHEMA,
    LISTING_FLOORS,
    close_time_offset_ms,
)
from crypto_lambda.timeutil import MINUTE_MS, day_start_ms

# config.validate_symbol's pattern, for Spark's rlike
# Java regex (Spark's rlike): ^ and \z, since Java's $ also matches before a final line terminator.
SYMBOL_PATTERN = rf"^{SYMBOL_CHARS}\z"


def _num(text: Column) -> Column:
    return text.try_cast("double")


def _bad_number(col: Column, positive: bool = True) -> Column:
    bad = col.isNull() | F.isnan(col) | (F.abs(col) == F.lit(float("inf")))
    return bad | (col <= 0) if positive else bad | (col < 0)


MAX_EVENT_LEAD_MS = 60_000  # schema.validate's "not after now + 1 minute", with the record's Kafka time as now


def _after_listing(ms: Column, symbol: Column) -> Column:
    """schema.validate's listing floor, per symbol."""
    floor = F.lit(day_start_ms(GLOBAL_LISTING_FLOOR))
    for prefix, day in reversed(LISTING_FLOORS.items()):
        floor = F.when(symbol.startswith(prefix), F.lit(day_start_ms(day))).otherwise(floor)
    return ms >= floor


def parse_events(kafka: DataFrame, expected: dict[str, str] | None = None,
                 max_lead_ms: int | None = MAX_EVENT_LEAD_MS) -> DataFrame:
    """Kafka rows (key, value, topic, partition, offset, timestamp) -> typed events plus ``reason``.

    ``expected`` maps topic -> event type (``trade``/``kline``/``gap``); a record of another type on that
    topic is quarantined as ``event_type_does_not_match_topic``. A trade or kline more than ``max_lead_ms``
    after the record's Kafka timestamp (when the producer received it) is ``*_in_the_future``: the Kafka time
    stands for "now", so replaying an old topic later gives the same verdicts. ``None`` lifts the bound, for a
    replay exchange that streams recorded time faster than the clock (``REPLAY_WS_SPEED`` > 1).

    The JSON is parsed by one ``from_json`` in a projection of its own, and everything else reads fields of
    that column. Why: ``from_json`` is most of the parsing cost, and Spark inlines an expression into every
    place that references it when they sit in one projection (a struct built from its fields evaluated it
    once per field: 9 parses per record, measured 42 us/record instead of 5).
    """
    parsed = kafka.select(
        "topic", "partition", "offset", F.col("timestamp").alias("kafka_ts"), "key",
        F.col("value").alias("raw"),
        F.from_json(F.col("value").cast("string"), KAFKA_EVENT_SCHEMA).cast(KAFKA_EVENT_NAMED_SCHEMA).alias("j"))
    price, qty = _num(F.col("j.p")), _num(F.col("j.q"))
    ko, kh, kl, kc, kv = (_num(F.col(f"j.k.{f}")) for f in ("o", "h", "l", "c", "v"))
    symbol = F.col("j.s")
    kind = F.col("j.e")
    topic_kind = F.lit(None).cast("string")
    if expected:
        mapping = F.create_map(*[F.lit(x) for pair in expected.items() for x in pair])
        topic_kind = mapping[F.col("topic")]
    received_ms = F.unix_millis(F.col("kafka_ts"))
    ahead = (lambda ms: F.lit(False)) if max_lead_ms is None else (lambda ms: ms > received_ms + max_lead_ms)
    reason = (
        F.when(F.col("raw").isNull(), "empty_value")
        .when(kind.isNull(), "unparseable_json")
        .when(~kind.isin("trade", "kline", "gap"), "unknown_event_type")
        .when(topic_kind.isNotNull() & (topic_kind != kind), "event_type_does_not_match_topic")
        .when(symbol.isNull() | ~symbol.rlike(SYMBOL_PATTERN), "invalid_symbol")
        .when(F.col("key").isNotNull() & (F.col("key").cast("string") != symbol), "key_does_not_match_symbol")
        .when((kind == "trade") & (F.col("j.trade_id").isNull() | (F.col("j.trade_id") < 0)), "invalid_trade_id")
        .when((kind == "trade") & (F.col("j.trade_ms").isNull() | (F.col("j.trade_ms") <= 0)), "invalid_trade_time")
        .when((kind == "trade") & _bad_number(price), "invalid_price")
        .when((kind == "trade") & _bad_number(qty), "invalid_quantity")
        .when((kind == "trade") & ~_after_listing(F.col("j.trade_ms"), symbol), "invalid_trade_time")
        .when((kind == "trade") & ahead(F.col("j.trade_ms")), "trade_time_in_the_future")
        .when((kind == "kline") & (F.col("j.k").isNull() | F.col("j.k.open_ms").isNull()), "missing_kline")
        .when((kind == "kline") & (F.col("j.k.i") != "1m"), "unsupported_kline_interval")
        .when((kind == "kline") & (F.col("j.k.open_ms") % 60000 != 0), "kline_open_time_not_minute_aligned")
        .when((kind == "kline") & (_bad_number(ko) | _bad_number(kh) | _bad_number(kl) | _bad_number(kc)
                                   | _bad_number(kv, positive=False)), "invalid_kline_value")
        .when((kind == "kline") & ~ohlc_consistent_col(ko, kh, kl, kc), OHLC_VIOLATION)
        .when((kind == "kline") & ~_after_listing(F.col("j.k.open_ms"), symbol), "kline_open_time_before_listing")
        .when((kind == "kline") & ahead(F.col("j.k.open_ms")), "kline_open_time_in_the_future")
        .when((kind == "kline") & (F.col("j.k.close_ms") != F.col("j.k.open_ms") + close_time_offset_ms(MINUTE_MS)),
              "kline_close_time_mismatch")
        .when((kind == "kline") & (F.col("j.k.n") < 0), "invalid_kline_trades")
        .when((kind == "gap") & (F.col("j.from").isNull() | F.col("j.to").isNull()
                                 | (F.col("j.from") > F.col("j.to"))), "invalid_gap_range")
    )
    return parsed.select(
        "topic", "partition", "offset", "kafka_ts", "raw", kind.alias("event"), symbol.alias("symbol"),
        F.col("j.event_ms").alias("event_ms"),
        F.col("j.trade_id").alias("trade_id"), price.alias("price"), qty.alias("qty"),
        F.timestamp_millis(F.col("j.trade_ms")).alias("trade_ts"), F.col("j.m").alias("buyer_maker"),
        F.col("j.k.open_ms").alias("kline_open_ms"), ko.alias("k_open"), kh.alias("k_high"), kl.alias("k_low"),
        kc.alias("k_close"), kv.alias("k_volume"), F.col("j.k.n").alias("k_trades"),
        F.col("j.k.x").alias("k_closed"),
        F.col("j.from").alias("gap_from_ms"), F.col("j.to").alias("gap_to_ms"),
        F.col("j.reason").alias("gap_reason"),
        reason.alias("reason"),
    )


def valid_trades(events: DataFrame) -> DataFrame:
    """Valid trade events. One predicate on purpose: Spark pushes each conjunct of a filter below the parsing
    projection separately, inlining ``from_json`` into it, so ``reason IS NULL AND event = 'trade'`` parsed
    every record twice."""
    return events.where(F.coalesce(F.col("reason"), F.when(F.col("event") != "trade", "not_a_trade")).isNull())


def side_records(events: DataFrame) -> DataFrame:
    """Everything the side outputs need, in one pass and one small shuffle: each invalid record (``kind`` =
    bad), each gap marker (gap) and, per (symbol, minute), the newest kline update (kline; newest by event
    time, closed last, then Kafka position). Valid trades, the bulk, are dropped before the shuffle."""
    kind = (F.when(F.col("reason").isNotNull(), "bad").when(F.col("event") == "gap", "gap")
            .when(F.col("event") == "kline", "kline"))
    keyed = events.withColumn("kind", kind).where(F.col("kind").isNotNull())
    is_kline = F.col("kind") == "kline"
    keys = [F.when(is_kline, F.col("symbol")).otherwise(F.col("topic")).alias("k1"),
            F.when(is_kline, F.col("kline_open_ms")).otherwise(F.col("partition").cast("long")).alias("k2"),
            F.when(is_kline, F.lit(0)).otherwise(F.col("offset")).alias("k3")]
    payload = F.struct(*[c for c in keyed.columns if c != "kind"])
    order = F.struct("event_ms", "k_closed", "partition", "offset")
    return keyed.groupBy("kind", *keys).agg(F.max_by(payload, order).alias("r")).select("kind", "r.*")
