"""crypto-lambda core library: kline schema, readers, lake I/O, exchange client and replay exchange.

The Dagster code location (`crypto_assets`) and the speed layer (`streaming_service`) both build on
this package, so every concept (schema, time arithmetic, lake layout) has exactly one home here.
"""

__version__ = "0.1.0"
