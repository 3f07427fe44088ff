"""``realized_vol_daily`` through a real Dagster instance and Spark: raw minute partitions written from the shipped
real Binance minutes, the 1d history from the shipped daily bars; one run over a date x symbol range must equal
the pandas path day for day, write the range history for the older days (rows of the same Delta table, before the
first minute day) in the same commit, and its check must compare the two."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from crypto_lambda.forecast.pipeline import sample_daily
from crypto_lambda.lake import read as lr
from crypto_lambda.lake import tables as lt
from crypto_lambda.lake import write as lw
from crypto_lambda.schema import DAILY_SCHEMA, KLINE_SCHEMA
from crypto_lambda.volatility import (
    MINUTES,
    RANGE,
    VOL_DATASET,
    read_realized,
    realized_by_day,
    sample_minutes,
)
from tests.support import temp_instance

FIRST, LAST = dt.date(2025, 6, 1), dt.date(2025, 6, 8)  # eight real days of minutes
START = dt.date(2025, 4, 1)  # 61 older days come from the 1d history only
SYMBOLS = ("BTCUSDT", "ETHUSDT")


def write_inputs(spark, settings) -> dict[str, pd.DataFrame]:
    """Raw minute partitions and daily_history_1d as the batch layer writes them; returns the minutes used."""
    used = {}
    for symbol in SYMBOLS:
        minutes = sample_minutes(symbol)
        minutes = minutes[(minutes["open_time"].dt.date >= FIRST) & (minutes["open_time"].dt.date <= LAST)]
        used[symbol] = minutes
        raw = minutes.assign(volume=1.0, quote_volume=None, trades=None, taker_buy_base=None, taker_buy_quote=None,
                             source="import")
        raw = raw[list(KLINE_SCHEMA.names)].assign(date=raw["open_time"].dt.date)
        lw.replace(spark, settings.lake, lt.RAW_KLINES, raw, symbols=[symbol], start=FIRST, end=LAST)
        daily = sample_daily(symbol)
        daily = daily[(daily["date"] >= START) & (daily["date"] < FIRST)].assign(
            quote_volume=None, trades=None, minutes_present=None, source="exchange_1d")
        lw.replace(spark, settings.lake, lt.DAILY_HISTORY, daily[list(DAILY_SCHEMA.names)], symbols=[symbol])
    return used


def minute_days(settings, symbol: str) -> list[dt.date]:
    return [d for d in lr.days(settings.lake, VOL_DATASET, symbol) if d >= FIRST]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, spark):
    from crypto_assets.definitions import build_defs
    from crypto_assets.defs.batch.jobs import VOLATILITY_JOB
    from crypto_assets.lib.partitions import range_tags
    from crypto_lambda.config import load_settings

    home = tmp_path_factory.mktemp("vol") / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CRYPTO_LAMBDA_HOME", str(home))
        mp.setenv("DAGSTER_HOME", str(home / "dagster"))
        mp.setenv("CRYPTO_LAMBDA_SYMBOLS", ",".join(SYMBOLS))
        mp.setenv("CRYPTO_LAMBDA_START", START.isoformat())
        mp.setenv("CRYPTO_LAMBDA_MINUTE_START", FIRST.isoformat())
        settings = load_settings()
        minutes = write_inputs(spark, settings)
        defs = build_defs(settings)
        instance = temp_instance(home / "dagster")
        job = defs.resolve_job_def(VOLATILITY_JOB)
        result = job.execute_in_process(instance=instance, tags=range_tags(FIRST, LAST, SYMBOLS))
        yield {"settings": settings, "result": result, "minutes": minutes, "job": job, "instance": instance}


def test_one_run_writes_every_day_equal_to_the_pandas_rule(run):
    settings, result = run["settings"], run["result"]
    assert result.success
    materializations = result.asset_materializations_for_node(VOL_DATASET)
    assert len(materializations) == 2 * 8
    # days and history in ONE commit, whose version and file count the metadata records
    assert [e["operation"] for e in lr.history(settings.lake, VOL_DATASET)] == ["WRITE", "CREATE TABLE"]
    assert materializations[0].metadata[f"{VOL_DATASET}_version"].value == lr.version(settings.lake, VOL_DATASET)
    assert materializations[0].metadata[f"{VOL_DATASET}_files"].value == lr.file_count(settings.lake, VOL_DATASET)
    for symbol in SYMBOLS:
        assert minute_days(settings, symbol) == [FIRST + dt.timedelta(days=i) for i in range(8)]
        spark_rows = read_realized(settings.lake, symbol)
        days = spark_rows[spark_rows["source"] == MINUTES].sort_values("date").reset_index(drop=True)
        expected = realized_by_day(run["minutes"][symbol]).reset_index(drop=True)
        assert len(days) == 8 and (days["minutes_used"] == 1440).all()
        pd.testing.assert_frame_equal(days[expected.columns].astype({"minutes_used": "int64"}),
                                      expected.astype({"minutes_used": "int64"}), rtol=1e-12)


def test_older_days_are_range_based_and_flagged(run):
    settings = run["settings"]
    for symbol in SYMBOLS:
        rows = read_realized(settings.lake, symbol)
        history = rows[rows["date"] < FIRST]
        assert len(history) == (FIRST - START).days and set(history["source"]) == {RANGE}
        assert (history["minutes_used"] == 0).all()
        assert history["date"].max() < FIRST and history["rv"].isna().all() and (history["range_var"] > 0).all()
        assert (history["variance"] == history["range_var"]).all()


def test_agreement_check_reports_correlation_and_ratio(run):
    [check] = run["result"].get_asset_check_evaluations()
    assert check.check_name == "rv_range_agreement"
    stats = check.metadata["by_symbol"].value
    for symbol in SYMBOLS:
        both = stats[symbol]["all"]
        assert both["days"] == 8
        assert np.isfinite(both["log_corr"]) and 0.8 < both["median_ratio"] < 1.5
    assert check.passed == (check.metadata["drifted"].value == [])


def test_a_day_without_minutes_loses_its_stale_row_and_the_check_flags_drift(run, spark):
    from crypto_assets.defs.batch.checks import rv_range_report
    from crypto_assets.lib.partitions import range_tags

    settings = run["settings"]
    spark.sql(f"DELETE FROM delta.`{lt.table_path(settings.lake, lt.RAW_KLINES)}` "
              f"WHERE {lt.rectangle(['ETHUSDT'], LAST, LAST)}")
    history_before = read_realized(settings.lake, "ETHUSDT").query("date < @FIRST").reset_index(drop=True)
    again = run["job"].execute_in_process(instance=run["instance"], tags=range_tags(LAST, LAST, ["ETHUSDT"]))
    assert again.success
    assert minute_days(settings, "ETHUSDT") == [FIRST + dt.timedelta(days=i) for i in range(7)]
    rows = read_realized(settings.lake, "ETHUSDT")  # the history was rewritten, once, unchanged
    pd.testing.assert_frame_equal(rows[rows["date"] < FIRST].reset_index(drop=True), history_before)
    assert len(read_realized(settings.lake, "BTCUSDT")) == (LAST - START).days + 1  # other symbol untouched
    # a realized variance 3x the range estimate on every day is a drift the check must report
    frame = lr.read(settings.lake, VOL_DATASET, ["BTCUSDT"], start=FIRST, end=LAST)
    frame["rv"] = 3 * frame["range_var"]
    lw.replace(spark, settings.lake, VOL_DATASET, frame, symbols=["BTCUSDT"], start=FIRST, end=LAST)
    passed, meta = rv_range_report(settings)
    assert not passed and meta["drifted"].value == ["BTCUSDT"]
