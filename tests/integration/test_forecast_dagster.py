"""The ``forecasts`` asset through a real Dagster instance: serving_daily (written here from the shipped real
Binance 1d bars, in the serving layer's schema, straight into its Delta table) -> forecast_job -> outputs on
disk and in the lake's tables, metadata in the event log, and both asset checks evaluated."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from crypto_lambda.forecast.pipeline import sample_daily
from crypto_lambda.lake import read as lr
from crypto_lambda.lake import write as lw
from crypto_lambda.lake.tables import SERVING_DAILY

FILLED_DAYS = 3  # forward-filled days injected into the series: they must be dropped, not trained on
RUN_CONFIG = {"ops": {"forecasts": {"config": {"cv_days": 240, "period": 30, "use_grid": False,
                                               "include_seeds": True}}}}


def write_serving_daily(spark, lake: Path, symbol: str) -> pd.DataFrame:
    """The serving layer's table: every day, MA7/MA30, a few days forward-filled and today's provisional speed
    bar last. Returns the observed days (what a forecast may train on)."""
    frame = sample_daily(symbol)
    frame["minutes_present"], frame["is_provisional"] = None, False
    idx = frame.index[-200:-200 + FILLED_DAYS]
    frame.loc[idx, "close"] = frame.loc[idx[0] - 1, "close"]
    frame.loc[idx, ["volume", "is_filled", "source"]] = [0.0, True, "filled"]
    today = frame.iloc[[-1]].assign(date=frame["date"].max() + dt.timedelta(days=1), close=1.0,
                                    source="speed", is_provisional=True, minutes_present=600)
    served = pd.concat([frame, today], ignore_index=True)
    served["ma7"] = served["close"].rolling(7).mean()
    served["ma30"] = served["close"].rolling(30).mean()
    lw.replace(spark, lake, SERVING_DAILY, served, symbols=[symbol])
    return frame


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, spark):
    from crypto_assets.definitions import build_defs
    from crypto_assets.defs.forecast.jobs import FORECAST_JOB
    from crypto_lambda.config import load_settings

    home = tmp_path_factory.mktemp("forecast") / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CRYPTO_LAMBDA_HOME", str(home))
        mp.setenv("DAGSTER_HOME", str(home / "dagster"))
        mp.setenv("CRYPTO_LAMBDA_SYMBOLS", "BTCUSDT,ETHUSDT")
        mp.setenv("CRYPTO_LAMBDA_START", "2017-08-17")
        settings = load_settings()
        frame = write_serving_daily(spark, settings.lake, "BTCUSDT")
        (home / "dagster").mkdir(parents=True)
        instance = dg.DagsterInstance.local_temp(str(home / "dagster"), overrides={"telemetry": {"enabled": False}})
        defs = build_defs(settings)
        result = defs.resolve_job_def(FORECAST_JOB).execute_in_process(
            instance=instance, partition_key="BTCUSDT", run_config=RUN_CONFIG)
        yield {"settings": settings, "result": result, "instance": instance, "frame": frame, "defs": defs}


def test_forecast_job_materializes_outputs_for_the_partition(run):
    settings, result = run["settings"], run["result"]
    assert result.success
    [mat] = result.asset_materializations_for_node("forecasts")
    assert mat.partition == "BTCUSDT"
    meta = mat.metadata
    table = meta["metrics"].value
    assert "naive" in table and "prophet_seeds" in table and "(champion)" in table
    for key in ("BTCUSDT/chart_html", "BTCUSDT/chart_png", "BTCUSDT/forecast", "BTCUSDT/vol_chart_html",
                "BTCUSDT/vol_chart_png"):
        assert Path(meta[key].value).exists(), key
    # no realized_vol_daily on disk here: the variance forecasts run on the range estimate of the same bars
    assert meta["BTCUSDT/vol_champion"].value in meta["report"].value
    assert "BTCUSDT volatility champion" in meta["report"].value and "skill vs naive" in meta["report"].value
    pointer = json.loads((settings.home / "forecasts" / "latest" / "BTCUSDT.json").read_text())
    assert pointer["stamp"] == meta["run_stamp"].value and pointer["stamp"].endswith(result.run_id[:8])
    assert pointer["filled_days_dropped"] == FILLED_DAYS + 1  # and the provisional day: not a close yet
    forecast = lr.read(settings.lake, "forecasts", ["BTCUSDT"])
    assert meta["forecasts_version"].value == lr.version(settings.lake, "forecasts")
    assert lr.history(settings.lake, "forecasts", limit=1)[0]["user_metadata"]["run_id"] == result.run_id
    last = run["frame"]["date"].max()
    assert list(forecast["date"]) == [last + dt.timedelta(days=h) for h in range(1, 31)]
    assert (forecast["lower"] <= forecast["yhat"]).all() and (forecast["yhat"] <= forecast["upper"]).all()
    assert not (settings.home / "forecasts" / "latest" / "ETHUSDT.json").exists()  # only the run's partition


def test_both_checks_ran_and_the_champion_beats_naive(run):
    checks = {e.check_name: e for e in run["result"].get_asset_check_evaluations()}
    assert set(checks) == {"mape_vs_naive", "interval_coverage"}
    mape = checks["mape_vs_naive"]
    assert mape.passed, mape.metadata
    row = mape.metadata["by_symbol"].value["BTCUSDT"]
    assert row["champion_mean_mape"] <= row["naive_mean_mape"]
    coverage = checks["interval_coverage"].metadata["by_symbol"].value["BTCUSDT"]["coverage80_by_horizon"]
    assert set(coverage) == {"1", "7", "14", "30"}
    assert checks["interval_coverage"].passed == all(70 <= c <= 90 for c in coverage.values())


def test_status_lists_the_forecast_checks_and_only_errors_make_it_unhealthy(run):
    from crypto_assets.status import collect_status, failed_checks, format_status

    status = collect_status(run["settings"], run["instance"])
    mape, coverage = status["checks"]["forecasts:mape_vs_naive"], status["checks"]["forecasts:interval_coverage"]
    assert mape["passed"] is True and coverage["passed"] is not None
    assert status["last_materialization"]["forecasts"] is not None
    assert failed_checks(status["checks"]) == []  # a WARN (coverage outside 70-90 %) must not make it unhealthy
    assert failed_checks({"a:warn": {"passed": False, "severity": "WARN"},
                          "b:error": {"passed": False, "severity": "ERROR"},
                          "c:ok": {"passed": True, "severity": "ERROR"}}) == ["b:error"]
    text = format_status(status)
    assert "forecasts:mape_vs_naive" in text and ("WARNING" in text) == (coverage["passed"] is False)


def test_a_second_run_keeps_the_first_runs_outputs(run):
    from crypto_assets.defs.forecast.jobs import FORECAST_JOB

    settings = run["settings"]
    first = json.loads((settings.home / "forecasts" / "latest" / "BTCUSDT.json").read_text())
    again = run["defs"].resolve_job_def(FORECAST_JOB).execute_in_process(
        instance=run["instance"], partition_key="BTCUSDT",
        run_config={"ops": {"forecasts": {"config": {**RUN_CONFIG["ops"]["forecasts"]["config"],
                                                     "include_seeds": False}}}})
    assert again.success
    second = json.loads((settings.home / "forecasts" / "latest" / "BTCUSDT.json").read_text())
    assert second["stamp"] != first["stamp"]
    assert Path(first["files"]["chart_html"]).exists() and Path(second["files"]["chart_html"]).exists()
    stamps = sorted(p.name for p in (settings.home / "forecasts").iterdir() if p.name[:2] == "20")
    assert stamps == sorted([first["stamp"], second["stamp"]])


def test_missing_input_fails_with_a_clear_message(run):
    from crypto_assets.defs.forecast.jobs import FORECAST_JOB

    result = run["defs"].resolve_job_def(FORECAST_JOB).execute_in_process(
        instance=run["instance"], partition_key="ETHUSDT", run_config=RUN_CONFIG, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "no serving_daily series for ETHUSDT" in str(failure.step_failure_data.error.message)
