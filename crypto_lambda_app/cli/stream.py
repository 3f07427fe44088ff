"""`stream broker|produce|consume|replay|today`: the speed layer's commands.

Every address, topic, symbol and path is an option with an environment default (KAFKA_BOOTSTRAP_SERVERS,
KAFKA_TOPIC_PREFIX, BINANCE_WS_URL, CRYPTO_LAMBDA_SYMBOLS, CRYPTO_LAMBDA_HOME), so the same commands run
against the embedded broker, compose's Apache Kafka or the real exchange.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import threading
from pathlib import Path

from crypto_lambda.config import load_settings, parse_symbols
from crypto_lambda.timeutil import parse_day, today_utc

log = logging.getLogger("crypto_lambda.stream")


def _topic_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--topic-prefix", default=None,
                        help="topics are <prefix>.trades/.klines/.gaps (default $KAFKA_TOPIC_PREFIX or binance)")
    parser.add_argument("--trades-topic", help="override the trades topic")
    parser.add_argument("--klines-topic", help="override the klines topic")
    parser.add_argument("--gaps-topic", help="override the gap-marker topic")


def _bootstrap_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap", default=None,
                        help="Kafka bootstrap servers (default $KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092)")


def _topics(args: argparse.Namespace):
    from streaming_service.topics import Topics

    base = Topics.with_prefix(args.topic_prefix)
    return Topics(args.trades_topic or base.trades, args.klines_topic or base.klines, args.gaps_topic or base.gaps)


def _bootstrap(args: argparse.Namespace) -> str:
    from streaming_service.topics import bootstrap_servers

    return args.bootstrap or bootstrap_servers()


def _quiet_kafka(verbose: bool, level: int = logging.CRITICAL) -> None:
    """kafka-python logs every connection at INFO and every refused one at ERROR; during an outage the
    producer's own spill/reconnect lines say enough."""
    if not verbose:
        logging.getLogger("kafka").setLevel(level)


def register(sub: argparse._SubParsersAction) -> None:
    stream = sub.add_parser("stream", help="speed layer: broker, producer and streaming consumer",
                            description="Binance WebSocket -> Kafka -> Spark Structured Streaming -> Delta Lake.")
    cmds = stream.add_subparsers(dest="stream_command", required=True, metavar="STREAM_COMMAND")

    broker = cmds.add_parser("broker", help="run the embedded Apache Kafka (KRaft) in the foreground",
                             description="Start Apache Kafka in KRaft mode (combined broker + controller) on "
                                         "127.0.0.1 with its data under $CRYPTO_LAMBDA_HOME/kafka (kept across "
                                         "restarts), create the topics, and run until Ctrl-C or SIGTERM "
                                         "(controlled shutdown). The jars come from `make jvm`.")
    broker.add_argument("--port", type=int, default=9092,
                        help="port of the first broker (default 9092; 0 = any free port; a data folder keeps the "
                             "ports it was created with)")
    broker.add_argument("--partitions", type=int, default=2, help="partitions per topic (default 2)")
    broker.add_argument("--brokers", type=int, default=1, choices=(1, 3),
                        help="1 node (default) or a 3-node quorum: topics with replication 3, min.insync.replicas 2")
    broker.add_argument("--data-dir", type=Path, help="storage folder (default $CRYPTO_LAMBDA_HOME/kafka, or "
                                                      "kafka-3 for --brokers 3)")
    _topic_args(broker)
    broker.set_defaults(func=cmd_broker)

    produce = cmds.add_parser("produce", help="publish Binance WebSocket streams to Kafka",
                              description="Subscribe to <symbol>@trade and <symbol>@kline_1m on one combined "
                                          "stream and publish to Kafka (acks=all), spilling to "
                                          "$CRYPTO_LAMBDA_HOME/spill while the broker is unreachable.")
    produce.add_argument("--symbols", help="comma-separated symbols (default $CRYPTO_LAMBDA_SYMBOLS)")
    produce.add_argument("--ws-url", help="WebSocket base URL (default $BINANCE_WS_URL or "
                                          "wss://stream.binance.com:9443)")
    produce.add_argument("--kinds", default="trade,kline_1m", help="stream kinds (default trade,kline_1m)")
    produce.add_argument("--partitions", type=int, default=2, help="partitions for topics it creates")
    produce.add_argument("--no-create-topics", action="store_true", help="never create topics")
    produce.add_argument("--stats-seconds", type=float, default=60.0, help="metrics log interval (default 60)")
    produce.add_argument("--max-connection-hours", type=float, default=23.5,
                         help="rotate the WebSocket connection after this long (Binance cuts at 24 h)")
    _bootstrap_arg(produce)
    _topic_args(produce)
    produce.set_defaults(func=cmd_produce)

    for name, helptext in (("consume", "run the Spark Structured Streaming job"),
                           ("replay", "process what the topics hold now and stop (consume --available-now; "
                                      "with --reset or a fresh --output/--checkpoint it re-reads everything)")):
        parser = cmds.add_parser(name, help=helptext, description=helptext + ": minute bars to Parquet "
                                 "(exactly once), quarantine, gap markers and provisional minutes.")
        _bootstrap_arg(parser)
        _topic_args(parser)
        parser.add_argument("--output", type=Path, help="lake folder the speed layer's Delta tables go to "
                                                        "(default $CRYPTO_LAMBDA_HOME/lake)")
        parser.add_argument("--checkpoint", type=Path,
                            help="checkpoint root (default $CRYPTO_LAMBDA_HOME/checkpoints/stream)")
        parser.add_argument("--trigger-seconds", type=float, default=5.0, help="micro-batch interval (default 5)")
        if name == "consume":
            parser.add_argument("--available-now", action="store_true",
                                help="process what the topics hold now, then stop")
        parser.add_argument("--starting-offsets", default="earliest",
                            help="earliest | latest | JSON, for a new checkpoint (default earliest)")
        parser.add_argument("--max-offsets-per-trigger", type=int,
                            help="cap records per micro-batch (a backlog after downtime then drains in steps)")
        parser.add_argument("--watermark", default="2 minutes", help="event-time watermark (default 2 minutes)")
        parser.add_argument("--no-dedup", action="store_true", help="do not drop duplicate trade ids")
        parser.add_argument("--no-fail-on-data-loss", action="store_true",
                            help="when offsets the checkpoint expects are gone from the broker (topic deleted, "
                                 "retention), skip them instead of stopping with an error (LOSES DATA)")
        parser.add_argument("--no-future-bound", action="store_true",
                            help="do not quarantine events more than a minute after their Kafka time (only for a "
                                 "replay exchange faster than the clock, REPLAY_WS_SPEED > 1)")
        parser.add_argument("--queries", default="bars,side", help="which queries to run (default bars,side)")
        parser.add_argument("--reset", action="store_true",
                            help="delete speed-layer outputs and checkpoints first (re-read everything)")
        parser.set_defaults(func=cmd_consume, available_now_default=(name == "replay"))

    today = cmds.add_parser("today", help="print the provisional daily bar(s) from the speed layer",
                            description="Committed streaming minute bars plus in-progress minutes, per symbol.")
    today.add_argument("--symbols", help="comma-separated symbols (default $CRYPTO_LAMBDA_SYMBOLS)")
    today.add_argument("--day", help="UTC day YYYY-MM-DD (default today)")
    today.set_defaults(func=cmd_today)


def cmd_broker(args: argparse.Namespace) -> int:
    from streaming_service.broker import EmbeddedBroker

    _quiet_kafka(getattr(args, "verbose", False), logging.WARNING)
    settings = load_settings()
    data_dir = args.data_dir or settings.home / ("kafka" if args.brokers == 1 else f"kafka-{args.brokers}")
    broker = EmbeddedBroker(data_dir, port=args.port or None, brokers=args.brokers,
                            log_path=settings.home / "logs" / "kafka.log")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with broker:
        created = broker.create_topics(_topics(args).all(), args.partitions)
        log.info("Kafka on %s (data %s); created topics: %s", broker.bootstrap, data_dir,
                 ", ".join(created) or "none (already there)")
        print(f"KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap}", flush=True)
        while not stop.wait(1.0):
            dead = [n.node_id for n in broker.nodes if n.proc is None or n.proc.poll() is not None]
            if dead:
                log.error("Kafka node(s) %s exited unexpectedly: see %s", dead, broker.log_path)
                return 1
    return 0


def cmd_produce(args: argparse.Namespace) -> int:
    from streaming_service.producer import ProducerConfig, StreamProducer
    from streaming_service.topics import SpeedPaths, ws_base_url

    _quiet_kafka(getattr(args, "verbose", False))
    settings = load_settings()
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    unknown = set(kinds) - {"trade", "kline_1m"}
    if unknown or not kinds:
        raise ValueError(f"--kinds {args.kinds!r}: expected a subset of trade,kline_1m")
    config = ProducerConfig(
        symbols=parse_symbols(args.symbols) if args.symbols else settings.symbols, bootstrap=_bootstrap(args),
        ws_url=args.ws_url or ws_base_url(), spill_dir=SpeedPaths.of(settings).spill, topics=_topics(args),
        kinds=kinds, partitions=args.partitions, create_topics=not args.no_create_topics,
        stats_interval_s=args.stats_seconds, max_connection_age_s=args.max_connection_hours * 3600)
    producer = StreamProducer(config)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, producer.stop)
        await producer.run()

    log.info("producing %s for %s to %s", ",".join(kinds), ",".join(config.symbols), config.bootstrap)
    asyncio.run(main())
    return 0


def cmd_consume(args: argparse.Namespace) -> int:
    from streaming_service import consumer, events
    from streaming_service.topics import SpeedPaths

    _quiet_kafka(getattr(args, "verbose", False))
    settings = load_settings()
    paths = SpeedPaths.of(settings)
    if args.output:
        paths = paths.__class__(**{**paths.__dict__, "lake": args.output.resolve()})
    if args.checkpoint:
        paths = paths.__class__(**{**paths.__dict__, "checkpoints": args.checkpoint.resolve()})
    queries = tuple(q.strip() for q in args.queries.split(",") if q.strip())
    if not queries or set(queries) - {"bars", "side"}:
        raise ValueError(f"--queries {args.queries!r}: expected bars, side or both")
    if args.trigger_seconds <= 0:
        raise ValueError("--trigger-seconds must be positive")
    config = consumer.ConsumerConfig(
        bootstrap=_bootstrap(args), paths=paths, topics=_topics(args), trigger_seconds=args.trigger_seconds,
        available_now=args.available_now_default or getattr(args, "available_now", False),
        starting_offsets=args.starting_offsets, max_offsets_per_trigger=args.max_offsets_per_trigger,
        watermark=args.watermark, dedup=not args.no_dedup, queries=queries,
        fail_on_data_loss=not args.no_fail_on_data_loss,
        max_event_lead_ms=None if args.no_future_bound else events.MAX_EVENT_LEAD_MS)
    if args.reset:
        consumer.reset(config)
    stop = threading.Event()
    spark = None
    if not config.available_now:  # stop between micro-batches (a cancelled one would just re-run)
        # The SparkContext installs its own SIGINT handler (cancel every job, raise KeyboardInterrupt), so the
        # session is created first and our handlers replace it: Ctrl-C and SIGTERM (`crypto-lambda up`) both
        # end the queries between micro-batches.
        spark = consumer.stream_spark()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    consumer.run(config, spark=spark, stop=stop)
    return 0


def cmd_today(args: argparse.Namespace) -> int:
    from crypto_lambda.lake.speed import provisional_daily_bar

    settings = load_settings()
    day = parse_day(args.day, what="--day") if args.day else today_utc()
    symbols = parse_symbols(args.symbols) if args.symbols else settings.symbols
    for symbol in symbols:
        bar = provisional_daily_bar(settings, symbol, day)
        print(json.dumps({"symbol": symbol, "date": day.isoformat(), **({k: (v.isoformat() if hasattr(
            v, "isoformat") else v) for k, v in bar.items() if k not in ("symbol", "date")} if bar else {})}))
    return 0
