"""Resources: where data lives (lake), where it comes from (exchange), and what computes it (Spark)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from dagster_pyspark import PySparkResource

from crypto_lambda.config import Settings, load_settings
from crypto_lambda.exchange.client import BinanceClient
from crypto_lambda.spark import prepare_environment, spark_conf


class LakeResource(dg.ConfigurableResource):
    """The state directory (CRYPTO_LAMBDA_HOME) and the settings that shape the partitions."""

    home: str

    def settings(self) -> Settings:
        base = load_settings()
        return Settings(home=Path(self.home), symbols=base.symbols, start=base.start,
                        minute_start=base.minute_start, api_url=base.api_url)


class ExchangeResource(dg.ConfigurableResource):
    """Binance REST (or the replay exchange, by base URL)."""

    base_url: str
    max_attempts: int = 6

    def client(self) -> BinanceClient:
        return BinanceClient(self.base_url, max_attempts=self.max_attempts)


def build_resources(settings: Settings) -> dict[str, object]:
    prepare_environment()
    return {
        "lake": LakeResource(home=str(settings.home)),
        "exchange": ExchangeResource(base_url=settings.api_url),
        "pyspark": PySparkResource(spark_config=spark_conf()),
    }
