"""Speed layer: Binance WebSocket -> Kafka -> Spark Structured Streaming -> Delta tables, exactly once.

* :mod:`producer` (+ :mod:`publisher`, :mod:`spill`): one combined-stream WebSocket connection -> Kafka topics
  ``<prefix>.trades`` / ``.klines`` / ``.gaps`` (key = symbol), spilling to disk while the broker is away.
* :mod:`broker`: embedded Apache Kafka in KRaft mode, 1 or 3 nodes (tests, demo, ``make up``); any Kafka
  works the same.
* :mod:`consumer` (+ :mod:`bars`): two streaming queries (Spark's Kafka connector), minute bars through Delta's
  streaming sink plus quarantine, gap markers and provisional minutes as idempotent Delta appends.

The speed tables' definitions and their JVM-free readers ("today so far") are the core library's
(:mod:`crypto_lambda.lake.speed`): the live page and the sensors read them without this package.
"""
