"""Asset checks of the batch layer: duplicates, OHLC sanity, and gaps (missing or incomplete days).

Checks read the committed tables (delta-rs, not the run's outputs), so they verify what is actually in the
lake, and only the run's rectangle (from its partition tags): a daily run checks one day, not 14 years.
A check run without partition tags (e.g. launched alone) checks the whole table.
"""


import datetime as dt

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from crypto_assets.assets.batch.rect import Rect, from_tags
from crypto_assets.resources import LakeResource
from crypto_lambda.config import MIN_DAY_COMPLETENESS, Settings
from crypto_lambda.lake import read as lake_read
from crypto_lambda.lake.tables import DAILY_FILLED, DAILY_OHLCV, RAW_KLINES
from crypto_lambda.timeutil import MINUTES_PER_DAY, day_range, yesterday_utc

ERROR = dg.AssetCheckSeverity.ERROR


def run_rect(context: dg.AssetCheckExecutionContext, settings: Settings) -> Rect | None:
    return from_tags(context.run.tags, settings.symbols)


def _scope(rect: Rect | None) -> dict:
    if rect is None:
        return {}
    return {"symbols": list(rect.symbols), "start": rect.start, "end": rect.end}


def minute_stats(settings: Settings, rect: Rect | None) -> dict[str, int]:
    """Rows, duplicate (symbol, open_time) and misdated rows (``date`` not the UTC day of ``open_time``) of
    ``raw_klines_1m`` in the rectangle."""
    rows = lake_read.read_arrow(settings.lake, RAW_KLINES, columns=["symbol", "open_time", "date"],
                                **_scope(rect))
    distinct = rows.group_by(["symbol", "open_time"]).aggregate([]).num_rows
    utc_day = pc.cast(pc.cast(rows.column("open_time"), pa.timestamp("ms")), pa.date32())
    misdated = pc.sum(pc.not_equal(utc_day, rows.column("date"))).as_py() or 0
    return {"rows": rows.num_rows, "duplicate_minutes": rows.num_rows - distinct, "misdated_rows": int(misdated)}


def ohlc_violations(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows breaking low <= min(open, close) <= max(open, close) <= high, volume >= 0, or holding NaN."""
    if frame.empty:
        return frame
    body_lo = frame[["open", "close"]].min(axis=1)
    body_hi = frame[["open", "close"]].max(axis=1)
    bad = ~((frame["low"] <= body_lo) & (body_hi <= frame["high"]) & (frame["volume"] >= 0))
    bad |= frame[["open", "high", "low", "close", "volume"]].isna().any(axis=1)
    return frame[bad]


def gap_report(settings: Settings, last_day: dt.date | None = None) -> dict[str, dict]:
    """Per symbol: days absent from daily_filled, forward-filled days in the minute range, and minute
    partitions below the completeness threshold."""
    last_day = last_day or yesterday_utc()
    report: dict[str, dict] = {}
    for symbol in settings.symbols:
        frame = lake_read.read(settings.lake, DAILY_FILLED, [symbol],
                               columns=["date", "is_filled", "minutes_present"])
        expected = set(day_range(settings.first_minute_day, last_day))
        if not len(frame):
            report[symbol] = {"absent": len(expected), "filled": 0, "incomplete": 0, "examples": ["no series"]}
            continue
        dates = set(frame["date"])
        first = min(dates) if dates else settings.first_minute_day
        absent = sorted(set(day_range(first, last_day)) - dates)
        in_minutes = frame[frame["date"] >= settings.first_minute_day]
        filled = sorted(in_minutes.loc[in_minutes["is_filled"], "date"])
        threshold = MIN_DAY_COMPLETENESS * MINUTES_PER_DAY
        partial = in_minutes[(~in_minutes["is_filled"]) & (in_minutes["minutes_present"].fillna(0) < threshold)]
        examples = [f"absent {d}" for d in absent[:5]] + [f"filled {d}" for d in filled[:5]] + [
            f"incomplete {d} ({m} min)" for d, m in zip(partial["date"][:5], partial["minutes_present"][:5],
                                                          strict=False)]
        report[symbol] = {"absent": len(absent), "filled": len(filled), "incomplete": len(partial),
                          "examples": examples}
    return report


def build_batch_checks() -> list[dg.AssetChecksDefinition]:
    @dg.asset_check(asset="raw_klines_1m", description="In the run's partitions: no (symbol, open_time) "
                    "appears twice; every row's date is the UTC day of its open_time.")
    def no_duplicate_minutes(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
        settings = lake.settings()
        rect = run_rect(context, settings)
        stats = minute_stats(settings, rect)
        scope = {"partitions_checked": rect.partitions if rect else "all", "table_version":
                 lake_read.version(settings.lake, RAW_KLINES)}
        if not stats["rows"] and rect is None:
            return dg.AssetCheckResult(passed=False, severity=ERROR, metadata={**scope, "rows": 0,
                                                                               "reason": "no data"})
        # an empty rectangle (the exchange lacks those days) has no duplicates; no_gaps reports the hole
        return dg.AssetCheckResult(passed=stats["duplicate_minutes"] == 0 and stats["misdated_rows"] == 0,
                                   severity=ERROR, metadata={**scope, **stats})

    @dg.asset_check(asset="daily_ohlcv", description="In the run's partitions: low <= open, close <= high; "
                    "volume >= 0; no NaN.")
    def ohlc_sane(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
        settings = lake.settings()
        frame = lake_read.read(settings.lake, DAILY_OHLCV, **_scope(run_rect(context, settings)))
        bad = ohlc_violations(frame)
        examples = [f"{r.date}|{r.symbol}" for r in bad.head(10).itertuples()] if len(bad) else []
        return dg.AssetCheckResult(passed=len(bad) == 0 and len(frame) > 0, severity=ERROR, metadata={
            "bars_checked": len(frame), "violations": len(bad), "examples": dg.MetadataValue.json(examples)})

    @dg.asset_check(asset="daily_filled", description="Every day present from the first bar to yesterday, no "
                    "forward-filled or incomplete (< 99 % of minutes) day in the minute-partition range.")
    def no_gaps(lake: LakeResource) -> dg.AssetCheckResult:
        report = gap_report(lake.settings())
        totals = {k: sum(r[k] for r in report.values()) for k in ("absent", "filled", "incomplete")}
        return dg.AssetCheckResult(passed=not any(totals.values()), severity=ERROR, metadata={
            **{f"{k}_days": v for k, v in totals.items()}, "by_symbol": dg.MetadataValue.json(report)})

    return [no_duplicate_minutes, ohlc_sane, no_gaps]
