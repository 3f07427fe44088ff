"""Checks of the serving layer: is it fresh, and do speed and batch agree where both saw a day?"""

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq

from crypto_assets.resources import LakeResource
from crypto_lambda import lake as lk
from crypto_lambda.config import Settings
from crypto_lambda.timeutil import yesterday_utc

AGREEMENT_WARN = 1e-3  # 0.1 % relative difference between a complete speed bar and the batch bar
FIELDS = ("open", "high", "low", "close", "volume")


def speed_batch_differences(settings: Settings) -> pd.DataFrame:
    """Per (symbol, date) with a complete batch bar and a complete speed bar: relative difference by field."""
    rows = []
    for symbol in settings.symbols:
        filled = lk.symbol_path(settings.lake, lk.DAILY_FILLED, symbol)
        folder = settings.lake / lk.SPEED_DAILY / symbol
        if not filled.exists() or not folder.is_dir():
            continue
        batch = pq.read_table(filled).to_pandas()
        batch = batch[(~batch["is_filled"]) & (batch["source"] == "minutes")]
        speed = pd.concat([pq.read_table(f).to_pandas() for f in sorted(folder.glob("*.parquet"))] or [pd.DataFrame()])
        if speed.empty:
            continue
        speed = speed[~speed["is_provisional"]]
        both = batch.merge(speed, on=["symbol", "date"], suffixes=("_batch", "_speed"))
        for field in FIELDS:
            both[field] = ((both[f"{field}_speed"] - both[f"{field}_batch"]).abs()
                           / both[f"{field}_batch"].abs().where(both[f"{field}_batch"] != 0))
        rows.append(both[["symbol", "date", *FIELDS]])
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["symbol", "date", *FIELDS])


def build_serving_checks() -> list[dg.AssetChecksDefinition]:
    @dg.asset_check(asset="serving_daily", description="The latest served day is yesterday or later, for every "
                    "symbol (holds while the stack runs).")
    def serving_fresh(lake: LakeResource) -> dg.AssetCheckResult:
        settings = lake.settings()
        latest = {}
        for symbol in settings.symbols:
            path = lk.symbol_path(settings.lake, lk.SERVING_DAILY, symbol)
            dates = pq.read_table(path, columns=["date"]).column(0).to_pylist() if path.exists() else []
            latest[symbol] = str(max(dates)) if dates else None
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
