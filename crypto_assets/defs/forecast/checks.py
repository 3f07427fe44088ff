"""Asset checks of the forecasts: the served model must beat doing nothing, and its interval must mean what it
says. Like the batch checks, they read what is on disk (the ``forecast_metrics`` table and the ``latest``
pointers), for every configured symbol that has been forecast; the thresholds are the ones the run that wrote
the metrics was configured with (stored in its pointer). Both read the price rows (``target == "price"``).
"""

import dagster as dg
import pandas as pd

from crypto_assets.lib.resources import LakeResource
from crypto_lambda.config import Settings
from crypto_lambda.forecast.config import NAIVE, ForecastConfig
from crypto_lambda.forecast.outputs import read_latest, read_metrics
from crypto_lambda.lake.tables import FORECASTS

ERROR = dg.AssetCheckSeverity.ERROR
WARN = dg.AssetCheckSeverity.WARN
DEFAULTS = ForecastConfig()
MAPE_VS_NAIVE = "mape_vs_naive"
INTERVAL_COVERAGE = "interval_coverage"
CHECKS = ((FORECASTS, MAPE_VS_NAIVE), (FORECASTS, INTERVAL_COVERAGE))


def _latest(settings: Settings) -> dict[str, tuple[pd.DataFrame, dict]]:
    """symbol -> (rows of the mean-over-horizons and H-day labels, thresholds) for each forecast symbol."""
    out = {}
    for symbol in settings.symbols:
        metrics = read_metrics(settings.lake, symbol)
        if metrics is None or metrics.empty:
            continue
        pointer = read_latest(settings.home, symbol) or {}
        thresholds = {"mape_ceiling_30d": DEFAULTS.mape_ceiling_30d, "coverage_band": list(DEFAULTS.coverage_band),
                      "horizon": DEFAULTS.horizon, "coverage_horizons": list(DEFAULTS.report_horizons),
                      **pointer.get("thresholds", {})}
        out[symbol] = (metrics, thresholds)
    return out


def _figure(metrics: pd.DataFrame, model_mask: pd.Series, horizon: str, column: str) -> float:
    rows = metrics[model_mask & (metrics["horizon"] == horizon)]
    return float(rows[column].iloc[0]) if len(rows) else float("nan")


def mape_vs_naive_report(settings: Settings) -> tuple[bool, dg.AssetCheckSeverity, dict]:
    """ERROR if any symbol's champion has a higher mean MAPE than naive (or no champion, or no naive);
    otherwise WARN if a champion's H-day MAPE is above the configured ceiling."""
    latest = _latest(settings)
    by_symbol, worse, above = {}, [], []
    for symbol, (m, th) in latest.items():
        h = str(th["horizon"])
        mean = f"1-{h}"
        champ = m["is_champion"].astype(bool)
        champion = str(m.loc[champ, "model"].iloc[0]) if champ.any() else None
        row = {"champion": champion, "champion_mean_mape": _figure(m, champ, mean, "mape"),
               "naive_mean_mape": _figure(m, m["model"] == NAIVE, mean, "mape"),
               f"champion_mape_{h}d": _figure(m, champ, h, "mape"), "ceiling": th["mape_ceiling_30d"]}
        by_symbol[symbol] = row
        if champion is None or not row["champion_mean_mape"] <= row["naive_mean_mape"]:  # NaN fails too
            worse.append(symbol)
        elif row[f"champion_mape_{h}d"] > th["mape_ceiling_30d"]:
            above.append(symbol)
    meta = {"symbols_checked": len(latest), "worse_than_naive": dg.MetadataValue.json(worse),
            "above_ceiling": dg.MetadataValue.json(above), "by_symbol": dg.MetadataValue.json(by_symbol)}
    if not latest:
        return False, ERROR, {**meta, "reason": "no forecast metrics on disk"}
    if worse:
        return False, ERROR, meta
    return not above, WARN, meta


def interval_coverage_report(settings: Settings) -> tuple[bool, dg.AssetCheckSeverity, dict]:
    """WARN if any champion's CV coverage of its 80 % interval is outside the band at ANY of the run's
    coverage horizons (1/7/14/30 days by default): a band that is right on average can still be too narrow at
    30 days and too wide at 1."""
    latest = _latest(settings)
    by_symbol, outside = {}, []
    for symbol, (m, th) in latest.items():
        low, high = th["coverage_band"]
        champ = m["is_champion"].astype(bool)
        per_h = {str(h): _figure(m, champ, str(h), "coverage80") for h in th["coverage_horizons"]}
        bad = [h for h, cov in per_h.items() if not low <= cov <= high]  # NaN (no row) is outside too
        by_symbol[symbol] = {"champion": str(m.loc[champ, "model"].iloc[0]) if champ.any() else None,
                             "coverage80_by_horizon": per_h,
                             "coverage80_mean": _figure(m, champ, f"1-{th['horizon']}", "coverage80"),
                             "horizons_outside": bad, "band": [low, high]}
        if bad:
            outside.append(symbol)
    meta = {"symbols_checked": len(latest), "outside_band": dg.MetadataValue.json(outside),
            "by_symbol": dg.MetadataValue.json(by_symbol)}
    if not latest:
        return False, WARN, {**meta, "reason": "no forecast metrics on disk"}
    return not outside, WARN, meta


def build_forecast_checks() -> list[dg.AssetChecksDefinition]:
    @dg.asset_check(asset=FORECASTS, name=MAPE_VS_NAIVE, description="ERROR when the champion's mean CV MAPE is "
                    "worse than naive's; WARN when its 30-day MAPE is above the run's ceiling (mape_ceiling_30d).")
    def mape_vs_naive(lake: LakeResource) -> dg.AssetCheckResult:
        passed, severity, meta = mape_vs_naive_report(lake.settings())
        return dg.AssetCheckResult(passed=passed, severity=severity, metadata=meta)

    @dg.asset_check(asset=FORECASTS, name=INTERVAL_COVERAGE, description="WARN when the champion's 80 % interval "
                    "covers outside 70-90 % of actuals in cross-validation at any of 1/7/14/30 days (band "
                    "configurable per run).")
    def interval_coverage(lake: LakeResource) -> dg.AssetCheckResult:
        passed, severity, meta = interval_coverage_report(lake.settings())
        return dg.AssetCheckResult(passed=passed, severity=severity, metadata=meta)

    return [mape_vs_naive, interval_coverage]
