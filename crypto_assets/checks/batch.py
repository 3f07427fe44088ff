"""Asset checks of the batch layer: duplicates, OHLC sanity, and gaps (missing or incomplete days).

Checks read the lake directly (not the run's outputs), so they verify what is actually on disk.
"""


import datetime as dt

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
from dagster_pyspark import PySparkResource
from pyspark.sql import functions as F

from crypto_assets.resources import LakeResource
from crypto_lambda import lake as lk
from crypto_lambda.config import MIN_DAY_COMPLETENESS, Settings
from crypto_lambda.timeutil import MINUTES_PER_DAY, day_range, yesterday_utc

ERROR = dg.AssetCheckSeverity.ERROR


def _daily_frames(settings: Settings, dataset: str) -> pd.DataFrame:
    folder = settings.lake / dataset
    files = sorted(folder.glob("*/*.parquet")) + sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if not files:
        return pd.DataFrame()
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)


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
        path = lk.symbol_path(settings.lake, lk.DAILY_FILLED, symbol)
        expected = set(day_range(settings.first_minute_day, last_day))
        if not path.exists():
            report[symbol] = {"absent": len(expected), "filled": 0, "incomplete": 0, "examples": ["no series"]}
            continue
        frame = pq.read_table(path).to_pandas()
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
    @dg.asset_check(asset="raw_klines_1m", description="No (symbol, open_time) appears twice; every row "
                    "sits in its own day's partition.")
    def no_duplicate_minutes(lake: LakeResource, pyspark: PySparkResource) -> dg.AssetCheckResult:
        settings = lake.settings()
        files = [str(p) for p in sorted((settings.lake / lk.RAW_KLINES).glob("*/*.parquet"))]
        if not files:
            return dg.AssetCheckResult(passed=False, severity=ERROR, metadata={"rows": 0, "reason": "no data"})
        spark = pyspark.spark_session
        frame = spark.read.parquet(*files).withColumn("_file", F.input_file_name())
        stats = frame.agg(
            F.count(F.lit(1)).alias("rows"),
            F.count_distinct("symbol", "open_time").alias("distinct"),
            F.sum(F.when(~F.col("_file").contains(F.date_format("open_time", "yyyy-MM-dd")), 1).otherwise(0))
            .alias("misfiled"),
        ).first()
        dups = int(stats["rows"] - stats["distinct"])
        misfiled = int(stats["misfiled"] or 0)
        return dg.AssetCheckResult(passed=dups == 0 and misfiled == 0, severity=ERROR, metadata={
            "rows": int(stats["rows"]), "duplicate_minutes": dups, "misfiled_rows": misfiled,
            "partitions_scanned": len(files)})

    @dg.asset_check(asset="daily_ohlcv", description="low <= open, close <= high; volume >= 0; no NaN.")
    def ohlc_sane(lake: LakeResource) -> dg.AssetCheckResult:
        frame = _daily_frames(lake.settings(), lk.DAILY_OHLCV)
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
