"""Check of ``realized_vol_daily``: on days that have both, the 1-minute realized variance and the Garman-Klass
range estimate must tell the same story, or the forecasts' spliced series (range before the minutes, RV
after) would change meaning where the source changes. WARN, with the correlation and the ratio in metadata.

Bands, from the shipped sample (90 complete days, 2025-05-20..08-17): log-variance correlation 0.84 (BTC) /
0.81 (ETH), median RV/GK 1.17 / 1.14 (RV sees every minute's move, the range only the day's extremes). A
correlation under 0.6 or a median ratio outside 0.67-1.5, over all days or the latest 30, is a drift.
"""

import dagster as dg

from crypto_assets.resources import LakeResource
from crypto_lambda.config import Settings
from crypto_lambda.volatility import MINUTES, VOL_DATASET, agreement, read_realized

MIN_LOG_CORR = 0.6
RATIO_BAND = (0.67, 1.5)
RECENT_DAYS = 30


def _drifted(stats: dict) -> bool:
    """NaN (too few days) is not a drift: there is nothing to compare yet."""
    corr, ratio = stats["log_corr"], stats["median_ratio"]
    return bool(corr < MIN_LOG_CORR or not RATIO_BAND[0] <= ratio <= RATIO_BAND[1]) if stats["days"] >= 3 else False


def rv_range_report(settings: Settings) -> tuple[bool, dict]:
    by_symbol, drifted = {}, []
    for symbol in settings.symbols:
        rows = read_realized(settings.lake, symbol)
        if rows is None:
            continue
        rows = rows.sort_values("date")
        recent = rows[rows["source"] == MINUTES].tail(RECENT_DAYS)
        stats = {"all": agreement(rows), f"last_{RECENT_DAYS}": agreement(recent)}
        by_symbol[symbol] = stats
        if any(_drifted(s) for s in stats.values()):
            drifted.append(symbol)
    meta = {"symbols_checked": len(by_symbol), "drifted": dg.MetadataValue.json(drifted),
            "by_symbol": dg.MetadataValue.json(by_symbol),
            "bands": dg.MetadataValue.json({"min_log_corr": MIN_LOG_CORR, "median_ratio": list(RATIO_BAND)})}
    return not drifted, meta


def build_volatility_checks() -> list[dg.AssetChecksDefinition]:
    @dg.asset_check(asset=VOL_DATASET, description="WARN when 1-minute realized variance and the Garman-Klass range "
                    "estimate drift apart on days with both (log correlation < 0.6 or median RV/GK outside "
                    "0.67-1.5, over all days or the latest 30).")
    def rv_range_agreement(lake: LakeResource) -> dg.AssetCheckResult:
        passed, meta = rv_range_report(lake.settings())
        return dg.AssetCheckResult(passed=passed, severity=dg.AssetCheckSeverity.WARN, metadata=meta)

    return [rv_range_agreement]
