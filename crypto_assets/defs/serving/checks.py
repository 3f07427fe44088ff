"""Checks of the serving layer: is it fresh, and do speed and batch agree where both saw a day?

They read the Delta tables with delta-rs (no JVM), only the configured symbols' partitions and columns; the
speed/batch comparison is :func:`crypto_lambda.serving.speed_batch_differences`."""

import dagster as dg
import pandas as pd

from crypto_assets.lib.resources import LakeResource
from crypto_lambda.lake import read as lake_read
from crypto_lambda.lake.tables import SERVING_DAILY
from crypto_lambda.serving import AGREEMENT_FIELDS, speed_batch_differences
from crypto_lambda.timeutil import yesterday_utc

AGREEMENT_WARN = 1e-3  # 0.1 % relative difference between a complete speed bar and the batch bar
SERVING_FRESH = "serving_fresh"
SPEED_BATCH_AGREEMENT = "speed_batch_agreement"
CHECKS = ((SERVING_DAILY, SERVING_FRESH), (SERVING_DAILY, SPEED_BATCH_AGREEMENT))


def build_serving_checks() -> list[dg.AssetChecksDefinition]:
    @dg.asset_check(asset=SERVING_DAILY, name=SERVING_FRESH, description="The latest served day is yesterday or "
                    "later, for every symbol (holds while the stack runs).")
    def serving_fresh(lake: LakeResource) -> dg.AssetCheckResult:
        settings = lake.settings()
        served = lake_read.read(settings.lake, SERVING_DAILY, list(settings.symbols), columns=["symbol", "date"])
        last = served.groupby("symbol")["date"].max() if len(served) else pd.Series(dtype=object)
        latest = {s: str(last[s]) if s in last.index else None for s in settings.symbols}
        stale = [s for s, d in latest.items() if d is None or d < str(yesterday_utc())]
        return dg.AssetCheckResult(passed=not stale, severity=dg.AssetCheckSeverity.WARN, metadata={
            "latest_day": dg.MetadataValue.json(latest), "stale_symbols": dg.MetadataValue.json(stale)})

    @dg.asset_check(asset=SERVING_DAILY, name=SPEED_BATCH_AGREEMENT, description="Speed and batch bars agree on "
                    f"days both have complete (max relative difference; WARN above {AGREEMENT_WARN:.1%}).")
    def speed_batch_agreement(lake: LakeResource) -> dg.AssetCheckResult:
        diffs = speed_batch_differences(lake.settings())
        worst = {f: float(diffs[f].max()) if len(diffs) else 0.0 for f in AGREEMENT_FIELDS}
        return dg.AssetCheckResult(passed=all(v <= AGREEMENT_WARN for v in worst.values()),
                                   severity=dg.AssetCheckSeverity.WARN,
                                   metadata={"days_compared": len(diffs), **{f"max_rel_diff_{f}": v
                                                                             for f, v in worst.items()}})

    return [serving_fresh, speed_batch_agreement]
