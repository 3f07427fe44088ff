"""The lake: every dataset a Delta Lake table under ``CRYPTO_LAMBDA_HOME/lake`` (names and schemas in
:mod:`.tables`, Spark writes in :mod:`.write`, JVM-free reads in :mod:`.read`), plus the atomic file helpers
for what stays a file (state JSON, charts) in :mod:`.files`."""

from crypto_lambda.lake.files import atomic_text
from crypto_lambda.lake.tables import (
    DAILY_FILLED,
    DAILY_HISTORY,
    DAILY_OHLCV,
    QUARANTINE,
    RAW_KLINES,
    REALIZED_VOL,
    SERVING_DAILY,
    SPEED_DAILY,
    TABLES,
    Table,
    table_path,
)

__all__ = ["DAILY_FILLED", "DAILY_HISTORY", "DAILY_OHLCV", "QUARANTINE", "RAW_KLINES", "REALIZED_VOL",
           "SERVING_DAILY", "SPEED_DAILY", "TABLES", "Table", "atomic_text", "table_path"]
