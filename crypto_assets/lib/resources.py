"""Resources: where data lives and which partitions exist (lake), where data comes from (exchange), and what
computes it (Spark).

``LakeResource`` is the one carrier of the run's :class:`~crypto_lambda.config.Settings`: ``build_resources``
fills its fields from the settings the definitions were built with, and assets and checks read
``lake.settings()``, which is built from those fields only (never re-read from the environment). Sensors and
schedules close over that same ``Settings`` object (Dagster's ``build_sensor_context(definitions=...)``, which
the tests and the demo tick sensors with, does not bind the definitions' resources to a sensor's resource
parameters), so a sensor and the runs it requests agree on the symbols and dates.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from dagster_pyspark import PySparkResource

from crypto_lambda.config import DEFAULT_API_URL, DEFAULT_START, DEFAULT_SYMBOLS, Settings
from crypto_lambda.exchange.client import BinanceClient
from crypto_lambda.spark import prepare_environment, spark_conf
from crypto_lambda.timeutil import parse_day


class LakeResource(dg.ConfigurableResource):
    """The state directory (CRYPTO_LAMBDA_HOME) and the settings that shape the partitions."""

    home: str
    symbols: list[str] = list(DEFAULT_SYMBOLS)
    start: str = DEFAULT_START
    minute_start: str | None = None
    api_url: str = DEFAULT_API_URL

    @classmethod
    def from_settings(cls, settings: Settings) -> LakeResource:
        return cls(home=str(settings.home), symbols=list(settings.symbols), start=settings.start.isoformat(),
                   minute_start=settings.minute_start.isoformat() if settings.minute_start else None,
                   api_url=settings.api_url)

    def settings(self) -> Settings:
        return Settings(home=Path(self.home), symbols=tuple(self.symbols), start=parse_day(self.start),
                        minute_start=parse_day(self.minute_start) if self.minute_start else None,
                        api_url=self.api_url)


class ExchangeResource(dg.ConfigurableResource):
    """Binance REST (or the replay exchange, by base URL)."""

    base_url: str
    max_attempts: int = 6

    def client(self) -> BinanceClient:
        return BinanceClient(self.base_url, max_attempts=self.max_attempts)


def build_resources(settings: Settings) -> dict[str, object]:
    prepare_environment()
    return {
        "lake": LakeResource.from_settings(settings),
        "exchange": ExchangeResource(base_url=settings.api_url),
        "pyspark": PySparkResource(spark_config=spark_conf()),
    }
