"""Names shared by producer, consumer and readers: Kafka topics (their one home), and where the speed layer's
tables (named in :mod:`crypto_lambda.lake.tables`), checkpoints and spill live.

One topic per stream kind (trades, klines) plus one for gap markers; key = symbol. Defaults can be
overridden with ``KAFKA_TOPIC_PREFIX`` (e.g. per test) or per topic on the command line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from crypto_lambda.config import Settings
from crypto_lambda.lake.tables import SPEED_BARS, SPEED_GAPS, SPEED_PROVISIONAL, SPEED_QUARANTINE, table_path

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_WS_URL = "wss://stream.binance.com:9443"


def bootstrap_servers() -> str:
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS", DEFAULT_BOOTSTRAP)


def ws_base_url() -> str:
    return os.environ.get("BINANCE_WS_URL", DEFAULT_WS_URL).rstrip("/")


@dataclass(frozen=True)
class Topics:
    trades: str
    klines: str
    gaps: str

    @classmethod
    def with_prefix(cls, prefix: str | None = None) -> Topics:
        prefix = prefix if prefix is not None else os.environ.get("KAFKA_TOPIC_PREFIX", "binance")
        return cls(f"{prefix}.trades", f"{prefix}.klines", f"{prefix}.gaps")

    def all(self) -> tuple[str, str, str]:
        return (self.trades, self.klines, self.gaps)

    def for_kind(self, kind: str) -> str:
        """Binance stream kind (``trade``, ``kline_1m``) or ``gap`` to topic."""
        return {"trade": self.trades, "kline_1m": self.klines, "gap": self.gaps}[kind]


@dataclass(frozen=True)
class SpeedPaths:
    """Where the speed layer keeps its tables, checkpoints and the producer's spill under CRYPTO_LAMBDA_HOME."""

    lake: Path
    checkpoints: Path
    spill: Path

    @classmethod
    def of(cls, settings: Settings) -> SpeedPaths:
        return cls(lake=settings.lake, checkpoints=settings.checkpoints / "stream",
                   spill=settings.home / "spill" / "producer")

    @property
    def bars(self) -> Path:
        return table_path(self.lake, SPEED_BARS)

    @property
    def gaps(self) -> Path:
        return table_path(self.lake, SPEED_GAPS)

    @property
    def provisional(self) -> Path:
        return table_path(self.lake, SPEED_PROVISIONAL)

    @property
    def quarantine(self) -> Path:
        return table_path(self.lake, SPEED_QUARANTINE)

    def tables(self) -> tuple[Path, ...]:
        return (self.bars, self.gaps, self.provisional, self.quarantine)
