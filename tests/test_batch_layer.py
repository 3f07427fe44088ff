"""The batch layer through Dagster against the replay exchange: real Spark, real Parquet, real Dagster
instance. Daily bars must equal Binance's recorded 1d klines (shipped CSVs) for the same dates."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from crypto_lambda import lake as lk
from crypto_lambda.config import load_settings
from crypto_lambda.timeutil import DAY_MS, yesterday_utc
from tests.conftest import temp_instance

SAMPLE = Path(__file__).resolve().parent.parent / "crypto_lambda" / "sample"
MINUTE_DAYS = 5
HISTORY_DAYS = 40


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, spark, today_server):
    home = tmp_path_factory.mktemp("batch") / "home"
    server, recording = today_server, today_server.recording
    last = yesterday_utc()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CRYPTO_LAMBDA_HOME", str(home))
        mp.setenv("DAGSTER_HOME", str(home / "dagster"))
        mp.setenv("BINANCE_API_URL", server.url)
        mp.setenv("CRYPTO_LAMBDA_SYMBOLS", "BTCUSDT,ETHUSDT")
        mp.setenv("CRYPTO_LAMBDA_START", (last - dt.timedelta(days=HISTORY_DAYS - 1)).isoformat())
        mp.setenv("CRYPTO_LAMBDA_MINUTE_START", (last - dt.timedelta(days=MINUTE_DAYS - 1)).isoformat())
        settings = load_settings()
        from crypto_assets.definitions import build_defs

        instance = temp_instance(home / "dagster")
        yield {"settings": settings, "defs": build_defs(settings), "instance": instance,
               "shift_days": recording.shift_ms // DAY_MS, "server": server}


def recorded_1d(symbol: str, shift_days: int) -> pd.DataFrame:
    frame = pd.read_csv(SAMPLE / "daily" / f"{symbol}_1d.csv")
    frame["date"] = pd.to_datetime(frame["timestamp"]).dt.date + dt.timedelta(days=shift_days)
    return frame


def test_backfill_is_one_run_and_matches_binance_1d(stack):
    from crypto_assets.backfill import run_backfill

    settings = stack["settings"]
    outcome = run_backfill(stack["defs"], settings, stack["instance"])
    assert outcome.success
    assert len(outcome.runs) == 2  # one minutes run for all days x symbols, one series run
    assert outcome.partitions == MINUTE_DAYS * 2
    assert outcome.checks and all(outcome.checks.values()), outcome.checks
    for symbol in settings.symbols:
        days = lk.partition_days(settings.lake, lk.DAILY_OHLCV, symbol)
        assert len(days) == MINUTE_DAYS
        bars = pd.concat([pq.read_table(lk.partition_path(settings.lake, lk.DAILY_OHLCV, symbol, d)).to_pandas()
                          for d in days])
        merged = bars.merge(recorded_1d(symbol, stack["shift_days"]), on="date", suffixes=("", "_binance"))
        assert len(merged) == MINUTE_DAYS
        for col in ("open", "high", "low", "close"):
            assert (merged[col] == merged[f"{col}_binance"]).all(), col
        rel = (merged["volume"] / merged["volume_binance"] - 1).abs().max()
        assert rel <= 1e-9
        assert (merged["minutes_present"] == 1440).all()


def test_daily_filled_is_complete_with_moving_averages(stack):
    settings = stack["settings"]
    for symbol in settings.symbols:
        series = pq.read_table(lk.symbol_path(settings.lake, lk.DAILY_FILLED, symbol)).to_pandas()
        assert list(series["date"]) == [settings.start + dt.timedelta(days=i) for i in range(HISTORY_DAYS)]
        assert not series["is_filled"].any()
        assert set(series["source"]) == {"minutes", "exchange_1d"}
        expected_ma7 = series["close"].rolling(7).mean()
        assert (series["ma7"] - expected_ma7).abs().max() < 1e-6
        assert series["ma30"].iloc[:29].isna().all() and series["ma30"].iloc[29:].notna().all()
        ref = recorded_1d(symbol, stack["shift_days"]).set_index("date")["close"]
        assert (series.set_index("date")["close"] == ref.reindex(series["date"]).values).all()


def test_removed_day_fails_no_gaps_and_backfill_repairs_it(stack):
    from crypto_assets.backfill import missing_days, run_backfill
    from crypto_assets.jobs import SERIES_JOB
    from crypto_assets.partitions import symbol_range_tags

    settings, defs, instance = stack["settings"], stack["defs"], stack["instance"]
    victim = yesterday_utc() - dt.timedelta(days=2)
    for dataset in (lk.RAW_KLINES, lk.DAILY_OHLCV):
        lk.partition_path(settings.lake, dataset, "ETHUSDT", victim).unlink()
    assert missing_days(settings, "ETHUSDT") == [victim]
    result = defs.resolve_job_def(SERIES_JOB).execute_in_process(
        instance=instance, tags=symbol_range_tags(settings.symbols), raise_on_error=False)
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["no_gaps"].passed is False
    assert checks["no_gaps"].metadata["filled_days"].value == 1

    outcome = run_backfill(defs, settings, instance)
    assert outcome.success and outcome.checks["daily_filled:no_gaps"] is True
    assert missing_days(settings, "ETHUSDT") == []


def test_status_reports_healthy(stack):
    from crypto_assets.status import collect_status

    status = collect_status(stack["settings"], stack["instance"])
    assert status["healthy"], status
    assert all(s["missing_days"] == 0 for s in status["symbols"].values())
    batch = ("raw_klines_1m:no_duplicate_minutes", "daily_ohlcv:ohlc_sane", "daily_filled:no_gaps")
    assert all(status["checks"][name]["passed"] for name in batch)
    # the other layers' checks are listed but have not run in a batch-only lake, which is not a failure
    assert {k: v["status"] for k, v in status["checks"].items() if k not in batch} == {
        k: "NEVER_RUN" for k in status["checks"] if k not in batch}
