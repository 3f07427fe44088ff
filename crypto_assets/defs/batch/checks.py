"""Asset checks of the batch layer: duplicates, OHLC sanity, gaps (missing or incomplete days), and the
realized variance's agreement with the range estimate.

Checks read the committed tables (delta-rs, not the run's outputs), so they verify what is actually in the
lake, and only the run's rectangle (from its partition tags): a daily run checks one day, not 14 years.
A check run without partition tags (e.g. launched alone) checks the whole table. The rules and measurements
live in :mod:`crypto_lambda.quality` and :mod:`crypto_lambda.coverage`.

``rv_range_agreement``: on days that have both, the 1-minute realized variance and the Garman-Klass range
estimate must tell the same story, or the forecasts' spliced series (range before the minutes, RV after)
would change meaning where the source changes. WARN, with the correlation and the ratio in metadata. Bands,
from the shipped sample (90 complete days, 2025-05-20..08-17): log-variance correlation 0.84 (BTC) / 0.81
(ETH), median RV/GK 1.17 / 1.14 (RV sees every minute's move, the range only the day's extremes). A
correlation under 0.6 or a median ratio outside 0.67-1.5, over all days or the latest 30, is a drift.
"""

import dagster as dg

from crypto_assets.lib.partitions import from_tags
from crypto_assets.lib.resources import LakeResource
from crypto_lambda.batch.rect import Rect
from crypto_lambda.config import Settings
from crypto_lambda.coverage import gap_report, minute_stats
from crypto_lambda.lake import read as lake_read
from crypto_lambda.lake.tables import DAILY_FILLED, DAILY_OHLCV, RAW_KLINES, REALIZED_VOL
from crypto_lambda.quality import MIN_DAY_COMPLETENESS, bar_violations
from crypto_lambda.volatility import MINUTES, agreement, read_realized

ERROR = dg.AssetCheckSeverity.ERROR
NO_DUPLICATE_MINUTES = "no_duplicate_minutes"
OHLC_SANE = "ohlc_sane"
NO_GAPS = "no_gaps"
RV_RANGE_AGREEMENT = "rv_range_agreement"
CHECKS = ((RAW_KLINES, NO_DUPLICATE_MINUTES), (DAILY_OHLCV, OHLC_SANE), (DAILY_FILLED, NO_GAPS),
          (REALIZED_VOL, RV_RANGE_AGREEMENT))

MIN_LOG_CORR = 0.6
RATIO_BAND = (0.67, 1.5)
RECENT_DAYS = 30


def run_rect(context: dg.AssetCheckExecutionContext, settings: Settings) -> Rect | None:
    return from_tags(context.run.tags, settings.symbols)


def _scope(rect: Rect | None) -> dict:
    if rect is None:
        return {}
    return {"symbols": list(rect.symbols), "start": rect.start, "end": rect.end}


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


def build_batch_checks() -> list[dg.AssetChecksDefinition]:
    @dg.asset_check(asset=RAW_KLINES, name=NO_DUPLICATE_MINUTES, description="In the run's partitions: no "
                    "(symbol, open_time) appears twice; every row's date is the UTC day of its open_time.")
    def no_duplicate_minutes(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
        settings = lake.settings()
        rect = run_rect(context, settings)
        stats = minute_stats(settings, **_scope(rect))
        scope = {"partitions_checked": rect.partitions if rect else "all", "table_version":
                 lake_read.version(settings.lake, RAW_KLINES)}
        if not stats["rows"] and rect is None:
            return dg.AssetCheckResult(passed=False, severity=ERROR, metadata={**scope, "rows": 0,
                                                                               "reason": "no data"})
        # an empty rectangle (the exchange lacks those days) has no duplicates; no_gaps reports the hole
        return dg.AssetCheckResult(passed=stats["duplicate_minutes"] == 0 and stats["misdated_rows"] == 0,
                                   severity=ERROR, metadata={**scope, **stats})

    @dg.asset_check(asset=DAILY_OHLCV, name=OHLC_SANE, description="In the run's partitions: low <= open, "
                    "close <= high; volume >= 0; no NaN.")
    def ohlc_sane(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
        settings = lake.settings()
        frame = lake_read.read(settings.lake, DAILY_OHLCV, **_scope(run_rect(context, settings)))
        bad = bar_violations(frame)
        examples = [f"{r.date}|{r.symbol}" for r in bad.head(10).itertuples()] if len(bad) else []
        return dg.AssetCheckResult(passed=len(bad) == 0 and len(frame) > 0, severity=ERROR, metadata={
            "bars_checked": len(frame), "violations": len(bad), "examples": dg.MetadataValue.json(examples)})

    @dg.asset_check(asset=DAILY_FILLED, name=NO_GAPS, description="Every day present from the first bar to "
                    "yesterday, no forward-filled or incomplete "
                    f"(< {MIN_DAY_COMPLETENESS * 100:g} % of minutes) day in the minute-partition range.")
    def no_gaps(lake: LakeResource) -> dg.AssetCheckResult:
        report = gap_report(lake.settings())
        totals = {k: sum(r[k] for r in report.values()) for k in ("absent", "filled", "incomplete")}
        return dg.AssetCheckResult(passed=not any(totals.values()), severity=ERROR, metadata={
            **{f"{k}_days": v for k, v in totals.items()}, "by_symbol": dg.MetadataValue.json(report)})

    @dg.asset_check(asset=REALIZED_VOL, name=RV_RANGE_AGREEMENT, description="WARN when 1-minute realized "
                    "variance and the Garman-Klass range estimate drift apart on days with both (log correlation "
                    "< 0.6 or median RV/GK outside 0.67-1.5, over all days or the latest 30).")
    def rv_range_agreement(lake: LakeResource) -> dg.AssetCheckResult:
        passed, meta = rv_range_report(lake.settings())
        return dg.AssetCheckResult(passed=passed, severity=dg.AssetCheckSeverity.WARN, metadata=meta)

    return [no_duplicate_minutes, ohlc_sane, no_gaps, rv_range_agreement]
