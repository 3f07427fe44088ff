"""Speed layer: Binance WebSocket -> Kafka -> Spark Structured Streaming -> Parquet, exactly once.

* :mod:`producer` (+ :mod:`publisher`, :mod:`spill`): one combined-stream WebSocket connection -> Kafka topics
  ``<prefix>.trades`` / ``.klines`` / ``.gaps`` (key = symbol), spilling to disk while the broker is away.
* :mod:`broker`: embedded Apache Kafka in KRaft mode, 1 or 3 nodes (tests, demo, ``make up``); any Kafka
  works the same.
* :mod:`consumer` (+ :mod:`bars`): two streaming queries (Spark's Kafka connector), minute bars through the file
  sink plus quarantine, gap markers and provisional minutes.
* :mod:`speed_lake`: reading the outputs without Spark (committed files only; "today so far").
* :mod:`harness`: drives all of it against the replay exchange (tests, benchmark).
"""
