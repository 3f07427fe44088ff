"""Checks of the serving layer: is it fresh, and do speed and batch agree where both saw a day?

They read the Delta tables with delta-rs (no JVM), only the configured symbols' partitions and columns."""

import dagster as dg
import pandas as pd

from crypto_assets.resources import LakeResource
from crypto_lambda.config import Settings
from crypto_lambda.lake import read as lake_read
from crypto_lambda.lake.tables import DAILY_FILLED, SERVING_DAILY, SPEED_DAILY
from crypto_lambda.timeutil import yesterday_utc

AGREEMENT_WARN = 1e-3  # 0.1 % relative difference between a complete speed bar and the batch bar
FIELDS = ("open", "high", "low", "close", "volume")


def speed_batch_differences(settings: Settings) -> pd.DataFrame:
    """Per (symbol, date) with a complete batch bar and a complete speed bar: relative difference by field."""
    symbols = list(settings.symbols)
    batch = lake_read.read(settings.lake, DAILY_FILLED, symbols)
    speed = lake_read.read(settings.lake, SPEED_DAILY, symbols)
    if batch.empty or speed.empty:
        return pd.DataFrame(columns=["symbol", "date", *FIELDS])
    batch = batch[(~batch["is_filled"]) & (batch["source"] == "minutes")]
    speed = speed[~speed["is_provisional"].fillna(False).astype(bool)]
    both = batch.merge(speed, on=["symbol", "date"], suffixes=("_batch", "_speed"))
    for field in FIELDS:
        both[field] = ((both[f"{field}_speed"] - both[f"{field}_batch"]).abs()
                       / both[f"{field}_batch"].abs().where(both[f"{field}_batch"] != 0))
    return both[["symbol", "date", *FIELDS]].reset_index(drop=True)

def build_serving_checks() -> list[dg.AssetChecksDefinition]:
    @dg.asset_check(asset="serving_daily", description="The latest served day is yesterday or later, for every "
                    "symbol (holds while the stack runs).")
    def serving_fresh(lake: LakeResource) -> dg.AssetCheckResult:
        settings = lake.settings()
        served = lake_read.read(settings.lake, SERVING_DAILY, list(settings.symbols), columns=["symbol", "date"])
        last = served.groupby("symbol")["date"].max() if len(served) else pd.Series(dtype=object)
        latest = {s: str(last[s]) if s in last.index else None for s in settings.symbols}
        stale = [s for s, d in latest.items() if d is None or d < str(yesterday_utc())]
        return dg.AssetCheckResult(passed=not stale, severity=dg.AssetCheckSeverity.WARN, metadata={
            "latest_day": dg.MetadataValue.json(latest), "stale_symbols": dg.MetadataValue.json(stale)})

    @dg.asset_check(asset="serving_daily", description="Speed and batch bars agree on days both have complete "
                    f"(max relative difference; WARN above {AGREEMENT_WARN:.1%}).")
    def speed_batch_agreement(lake: LakeResource) -> dg.AssetCheckResult:
        diffs = speed_batch_differences(lake.settings())
        worst = {f: float(diffs[f].max()) if len(diffs) else 0.0 for f in FIELDS}
        return dg.AssetCheckResult(passed=all(v <= AGREEMENT_WARN for v in worst.values()),
                                   severity=dg.AssetCheckSeverity.WARN,
                                   metadata={"days_compared": len(diffs), **{f"max_rel_diff_{f}": v
                                                                             for f, v in worst.items()}})

    return [serving_fresh, speed_batch_agreement]
