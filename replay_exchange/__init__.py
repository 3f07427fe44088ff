"""The local replay exchange: recorded real klines served over Binance's spot REST and WebSocket protocols.

A tool, not part of the product path: tests, the demo, benchmarks and users point ``BINANCE_API_URL`` and
``BINANCE_WS_URL`` at it instead of the real exchange. It builds on the core library only (schemas, readers,
time), so nothing in ``crypto_lambda``, ``streaming_service`` or ``crypto_assets`` may import it
(import-linter, ``make lint``). Run it with ``replay-exchange`` or ``crypto-lambda replay-exchange``.

* :mod:`replay_exchange.recording`: the recorded minutes and 1d klines it serves;
* :mod:`replay_exchange.server`: REST routes (klines, time, exchangeInfo) with weight limits and faults;
* :mod:`replay_exchange.streams`: the WebSocket trade and kline streams, synthesised from the minutes.
"""
