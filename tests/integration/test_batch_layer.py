"""The batch layer through Dagster against the replay exchange: real Spark, real Delta tables, real Dagster
instance. Daily bars must equal Binance's recorded 1d klines (shipped CSVs) for the same dates; a run is one
commit per table, a re-run leaves one copy, and the table's history keeps the version before a repair."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pandas as pd
import pytest

from crypto_lambda.config import (
    SAMPLE_DIR,  # noqa: I001
    load_settings,
)
from crypto_lambda.lake import read as lr
from crypto_lambda.lake import tables as lt
from crypto_lambda.timeutil import DAY_MS, yesterday_utc
from tests.support import recorded_1d, temp_instance

SAMPLE = SAMPLE_DIR
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


def commits_by_run(lake, name: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for entry in lr.history(lake, name):
        run = entry["user_metadata"].get("run_id")
        if run and entry["operation"] != "CREATE TABLE":
            out[run] = out.get(run, 0) + 1
    return out


def test_backfill_is_one_run_and_matches_binance_1d(stack):
    from crypto_assets.backfill import run_backfill

    settings, instance = stack["settings"], stack["instance"]
    outcome = run_backfill(stack["defs"], settings, instance)
    assert outcome.success
    assert len(outcome.runs) == 2  # one minutes run for all days x symbols, one series run
    assert outcome.partitions == MINUTE_DAYS * 2
    assert outcome.checks and all(outcome.checks.values()), outcome.checks
    minutes_run, series_run = outcome.runs
    # one commit per table per run, and the materialization says which version it wrote and its file count
    for name, run in ((lt.RAW_KLINES, minutes_run), (lt.DAILY_OHLCV, minutes_run),
                      (lt.DAILY_HISTORY, series_run), (lt.DAILY_FILLED, series_run)):
        assert commits_by_run(settings.lake, name) == {run: 1}, name
        meta = instance.get_latest_materialization_event(dg.AssetKey(name)).asset_materialization.metadata
        assert meta[f"{name}_version"].value == lr.version(settings.lake, name)
        assert meta[f"{name}_files"].value == lr.file_count(settings.lake, name) > 0
    assert lr.file_count(settings.lake, lt.RAW_KLINES) <= 2 * 2  # symbol x month, not a file per day
    for symbol in settings.symbols:
        assert len(lr.days(settings.lake, lt.DAILY_OHLCV, symbol)) == MINUTE_DAYS
        bars = lr.read(settings.lake, lt.DAILY_OHLCV, [symbol])
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
        series = lr.read(settings.lake, lt.DAILY_FILLED, [symbol])
        assert list(series["date"]) == [settings.start + dt.timedelta(days=i) for i in range(HISTORY_DAYS)]
        assert not series["is_filled"].any()
        assert set(series["source"]) == {"minutes", "exchange_1d"}
        expected_ma7 = series["close"].rolling(7).mean()
        assert (series["ma7"] - expected_ma7).abs().max() < 1e-6
        assert series["ma30"].iloc[:29].isna().all() and series["ma30"].iloc[29:].notna().all()
        ref = recorded_1d(symbol, stack["shift_days"]).set_index("date")["close"]
        assert (series.set_index("date")["close"] == ref.reindex(series["date"]).values).all()


def test_rematerializing_leaves_one_copy(stack):
    from crypto_assets.backfill import run_backfill

    settings = stack["settings"]
    before = {n: (lr.version(settings.lake, n), lr.read(settings.lake, n)) for n in (lt.RAW_KLINES, lt.DAILY_OHLCV)}
    first = yesterday_utc() - dt.timedelta(days=1)
    outcome = run_backfill(stack["defs"], settings, stack["instance"], first=first, only_missing=False)
    assert outcome.success and outcome.partitions == 2 * 2
    for name, (version, rows) in before.items():
        assert lr.version(settings.lake, name) == version + 1  # the re-run is one more commit
        again = lr.read(settings.lake, name)
        key = list(lt.table(name).key)
        assert len(again) == len(rows) and not again.duplicated(key).any()
        pd.testing.assert_frame_equal(again, rows)
    # the run's checks read its 2 days x 2 symbols, not the whole table
    key = dg.AssetCheckKey(dg.AssetKey(lt.RAW_KLINES), "no_duplicate_minutes")
    record = stack["instance"].event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
    meta = record.evaluation.metadata
    assert meta["partitions_checked"].value == 4 and meta["rows"].value == 4 * 1440
    assert meta["duplicate_minutes"].value == 0 and meta["misdated_rows"].value == 0


def test_removed_day_fails_no_gaps_and_backfill_repairs_it(stack, spark):
    from crypto_assets.backfill import run_backfill
    from crypto_assets.defs.batch.jobs import SERIES_JOB
    from crypto_assets.lib.partitions import symbol_range_tags
    from crypto_lambda.coverage import missing_days

    settings, defs, instance = stack["settings"], stack["defs"], stack["instance"]
    victim = yesterday_utc() - dt.timedelta(days=2)
    where = lt.rectangle(["ETHUSDT"], victim, victim)
    for name in (lt.RAW_KLINES, lt.DAILY_OHLCV):  # rows lost by hand (the lake is the truth)
        spark.sql(f"DELETE FROM delta.`{lt.table_path(settings.lake, name)}` WHERE {where}")
    lost_at = lr.version(settings.lake, lt.DAILY_OHLCV)
    assert missing_days(settings, "ETHUSDT") == [victim]
    result = defs.resolve_job_def(SERIES_JOB).execute_in_process(
        instance=instance, tags=symbol_range_tags(settings.symbols), raise_on_error=False)
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["no_gaps"].passed is False
    assert checks["no_gaps"].metadata["filled_days"].value == 1

    outcome = run_backfill(defs, settings, instance)
    assert outcome.success and outcome.checks["daily_filled:no_gaps"] is True
    assert missing_days(settings, "ETHUSDT") == []
    # time travel: the version before the repair still lacks the day, the one before the loss has it
    assert victim not in set(lr.read(settings.lake, lt.DAILY_OHLCV, ["ETHUSDT"], as_of=lost_at)["date"])
    older = lr.read(settings.lake, lt.DAILY_OHLCV, ["ETHUSDT"], start=victim, end=victim, as_of=lost_at - 1)
    now = lr.read(settings.lake, lt.DAILY_OHLCV, ["ETHUSDT"], start=victim, end=victim)
    pd.testing.assert_frame_equal(older, now)


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
